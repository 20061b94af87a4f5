"""The typed study record: what a study ran, on which models, and where each result lies.

The runner writes one :class:`StudyRecord` as ``manifest.json`` in the results directory; the
report and the notebooks read it back with :meth:`StudyRecord.load`. Models are described by
:class:`ModelRef` (the base checkpoint, an SFT arm by its long-data fraction, or a graft by its
:class:`~lensft.graft.GraftSpec`) and compared by value, never by parsing a display label.

A study has one or more *replicates* (:class:`Replicate`): an organism world seed and an SFT
seed. Each replicate is one triple (base, short arm, long arm, and for the organism its mixes);
grafts are built from the triple of their replicate.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lensft import __version__
from lensft.atomic import write_text_atomic
from lensft.errors import LensftError
from lensft.graft.spec import GraftSpec
from lensft.hashing import canonical_json
from lensft.study.config import StudyConfig
from lensft.variants import ArmRef, Variant

#: Version of the manifest's layout; a directory written under another one is refused.
RECORD_SCHEMA = 2
MANIFEST = "manifest.json"


class StudyRecordError(LensftError):
    """A results directory is missing, unreadable or written by an incompatible lensft."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Replicate(_Frozen):
    """One independently trained triple: the organism's world ``seed`` and the arms' ``sft_seed``
    (both 0 for a user triple)."""

    seed: int = 0
    sft_seed: int = 0

    @property
    def label(self) -> str:
        return f"seed {self.seed}" + (f", sft seed {self.sft_seed}" if self.sft_seed else "")


class ModelRef(_Frozen):
    """A model of a study, by what determines its weights within one replicate.

    ``kind="base"``: the base checkpoint. ``kind="arm"``: an SFT arm, ``long_fraction`` 0 (short),
    1 (long) or in between (an organism mix). ``kind="graft"``: ``graft`` built from the triple.
    """

    kind: Literal["base", "arm", "graft"]
    long_fraction: Optional[float] = Field(None, ge=0.0, le=1.0)
    graft: Optional[GraftSpec] = None

    @model_validator(mode="after")
    def _fields_match_kind(self) -> "ModelRef":
        if (self.kind == "arm") != (self.long_fraction is not None):
            raise ValueError("long_fraction is set for arms and only for arms")
        if (self.kind == "graft") != (self.graft is not None):
            raise ValueError("graft is set for grafts and only for grafts")
        return self

    @classmethod
    def base(cls) -> "ModelRef":
        return cls(kind="base")

    @classmethod
    def arm(cls, long_fraction: float) -> "ModelRef":
        return cls(kind="arm", long_fraction=float(long_fraction))

    @classmethod
    def of_variant(cls, variant: Variant | str) -> "ModelRef":
        """``base`` -> the base; ``short`` / ``long`` -> the arm with fraction 0 / 1."""
        v = Variant(variant)
        return cls.base() if v is Variant.BASE else cls.arm(0.0 if v is Variant.SHORT else 1.0)

    @classmethod
    def grafted(cls, spec: GraftSpec) -> "ModelRef":
        """A graft; a spec that takes every block from its host is that checkpoint itself."""
        if spec.variants() == {spec.host}:
            return cls.of_variant(spec.host)
        return cls(kind="graft", graft=spec)

    @property
    def variant(self) -> Optional[Variant]:
        """The triple's checkpoint this model is, if it is one (a mix or a graft is not)."""
        if self.kind == "base":
            return Variant.BASE
        return ArmRef(long_fraction=self.long_fraction).variant if self.kind == "arm" else None  # type: ignore[arg-type]

    @property
    def is_mix(self) -> bool:
        return self.kind == "arm" and 0.0 < float(self.long_fraction) < 1.0  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """Display name: ``base``, ``short``, ``mix 0.50``, ``short + long.mha`` ..."""
        if self.kind == "base":
            return "base"
        if self.kind == "arm":
            return ArmRef(long_fraction=self.long_fraction).label  # type: ignore[arg-type]
        return self.graft.label  # type: ignore[union-attr]

    @property
    def key(self) -> str:
        """Canonical JSON of the reference: equal models, equal keys (used in cache keys)."""
        return canonical_json(self.model_dump(mode="json", exclude_none=True))

    def checkpoints(self) -> set[Variant]:
        """The triple's checkpoints the model reads (empty for a mix, which is its own checkpoint)."""
        if self.kind == "graft":
            return set(self.graft.variants())  # type: ignore[union-attr]
        v = self.variant
        return {v} if v is not None else set()


class PromptSetRecord(_Frozen):
    """A prompt set a study used, by role (``tasks``, ``needle``, ``conflict``, ``spread``, ``ffn``)."""

    role: str
    name: str
    version: str
    kind: str
    n_items: int
    description: str = ""


class CheckpointRecord(_Frozen):
    """A checkpoint directory of a replicate, with the sha256 of its weight files."""

    replicate: Replicate
    model: ModelRef
    path: str
    sha256: dict[str, str] = Field(default_factory=dict)


class ArmTraining(_Frozen):
    """How much SFT data an organism arm saw (from the organism's build manifest)."""

    replicate: Replicate
    model: ModelRef
    tokens: int
    answer_tokens: int
    examples: int


class UnitRecord(_Frozen):
    """One unit: ``probe`` on ``model`` (and ``donor``, for a pair probe) with the ``role`` prompt set."""

    step: str
    replicate: Replicate
    model: ModelRef
    donor: Optional[ModelRef] = None
    probe: str
    settings: dict[str, Any] = Field(default_factory=dict)
    role: str
    prompt_set: str = ""
    n_items: int = 0
    key: str = Field(description="cache key; the result is results/<key>.json")
    status: Literal["run", "cached", "failed"]
    error: Optional[str] = None
    seconds: float = 0.0

    @property
    def file(self) -> Optional[str]:
        return None if self.status == "failed" else f"results/{self.key}.json"


class StepRecord(_Frozen):
    """A step's units and why any of it was skipped."""

    name: str
    title: str
    units: list[UnitRecord] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "skipped" if not self.units else "partial" if self.skipped else "done"

    @property
    def n_run(self) -> int:
        return sum(u.status == "run" for u in self.units)

    @property
    def n_cached(self) -> int:
        return sum(u.status == "cached" for u in self.units)


class StudyRecord(BaseModel):
    """Everything a study ran; saved as ``manifest.json``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RECORD_SCHEMA
    lensft_version: str = __version__
    config: StudyConfig
    source: Literal["organism", "triple"]
    replicates: list[Replicate]
    n_layers: int
    checkpoints: list[CheckpointRecord] = Field(default_factory=list)
    training: list[ArmTraining] = Field(default_factory=list)
    organism_dirs: dict[str, str] = Field(default_factory=dict, description="world seed -> organism build directory")
    prompt_sets: list[PromptSetRecord] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    started: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    prepare_seconds: float = 0.0
    total_seconds: float = 0.0

    def step(self, name: str) -> Optional[StepRecord]:
        return next((s for s in self.steps if s.name == name), None)

    def units(self, step: Optional[str] = None) -> Iterator[UnitRecord]:
        for s in self.steps:
            if step is None or s.name == step:
                yield from s.units

    @property
    def skipped(self) -> list[str]:
        return [r for s in self.steps for r in s.skipped]

    # --- disk --------------------------------------------------------------------------
    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write ``manifest.json`` into the results directory ``out`` atomically."""
        return write_text_atomic(Path(out) / MANIFEST, self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, out: str | os.PathLike[str]) -> "StudyRecord":
        """Read the record of a results directory.

        Raises:
            StudyRecordError: no manifest, unreadable JSON, or another lensft's layout.
        """
        p = Path(out) / MANIFEST
        if not p.is_file():
            raise StudyRecordError(f"{out} is not a study results directory (no {MANIFEST}); run a study into it first")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StudyRecordError(f"{p} is not valid JSON ({e}); rerun the study into a new directory") from None
        found = data.get("schema_version") if isinstance(data, dict) else None
        if found != RECORD_SCHEMA:
            by = data.get("lensft_version", "an unknown version") if isinstance(data, dict) else "an unknown version"
            raise StudyRecordError(f"{out} was written by lensft {by} (record schema {found}); this lensft "
                                   f"{__version__} reads schema {RECORD_SCHEMA}: rerun the study into a new directory")
        try:
            return cls.model_validate(data, context={"stored": True})
        except ValidationError as e:
            err = e.errors()[0]
            raise StudyRecordError(f"{p}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
