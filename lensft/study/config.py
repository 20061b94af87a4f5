"""Study configuration: which triple, which prompt sets, which steps with which probe settings.

A :class:`StudyConfig` is validated by pydantic, round-trips through YAML
(:meth:`StudyConfig.to_yaml` / :meth:`StudyConfig.from_yaml`) and is saved as ``study.yaml`` in
the results directory. The models come either from the model organism (``organism: quick``;
every seed in ``seeds`` is a separately built organism) or from a user triple
(``base``/``short``/``long`` checkpoint directories).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lensft.errors import LensftError

#: Step names in the order they run (and the report's order).
STEP_NAMES: tuple[str, ...] = (
    "short_tasks", "module_grid", "layer_sweep", "attention_spread", "retrieval", "ffn_activations",
    "knowledge", "patching",
)


class StudyConfigError(LensftError):
    """A study configuration file or option is invalid."""


class StepConfig(BaseModel):
    """One experiment: on/off, the probe's settings (passed to ``Probe.Settings``) and a cap on items."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict, description="probe settings (the probe's Settings fields)")
    max_items: Optional[int] = Field(None, ge=1, description="use at most this many items of each prompt set")


def _default_steps() -> dict[str, StepConfig]:
    return {
        "short_tasks": StepConfig(),
        "module_grid": StepConfig(),
        "layer_sweep": StepConfig(max_items=40),
        "attention_spread": StepConfig(max_items=24, settings={"max_length": 1024}),
        "retrieval": StepConfig(max_items=24),
        "ffn_activations": StepConfig(),
        "knowledge": StepConfig(settings={"generate": False}),
        "patching": StepConfig(max_items=24),
    }


class StudyConfig(BaseModel):
    """Everything that determines a study's results."""

    model_config = ConfigDict(extra="forbid")

    name: str = "study"
    organism: Optional[str] = Field(None, description="organism preset (tiny/test, quick, full); exclusive with short/long")
    organism_dir: Optional[str] = Field(None, description="organism build directory (default: the organism cache); seed i uses <dir>/seed-<i>")
    seeds: list[int] = Field(default_factory=lambda: [0], description="organism seeds; each is a separately trained organism")
    mixes: list[float] = Field(default_factory=list, description="organism hybrid mixes (long-data fraction); empty = the preset's")
    base: Optional[str] = None
    short: Optional[str] = None
    long: Optional[str] = None
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="prompt-set files by role: tasks (comma-separated list), needle, conflict, spread, ffn")
    band: int = Field(1, ge=1, description="layers per band in the per-layer swap sweep")
    steps: dict[str, StepConfig] = Field(default_factory=_default_steps)
    report: bool = Field(True, description="write the report at the end")
    png: bool = Field(True, description="export PNGs where kaleido + chromium are available")

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: dict[str, StepConfig]) -> dict[str, StepConfig]:
        unknown = sorted(set(v) - set(STEP_NAMES))
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; steps are {', '.join(STEP_NAMES)}")
        return {**_default_steps(), **v}

    @field_validator("mixes")
    @classmethod
    def _mix_range(cls, v: list[float]) -> list[float]:
        for m in v:
            if not 0.0 < m < 1.0:
                raise ValueError(f"mix {m} must be a fraction of long data strictly between 0 and 1")
        return sorted(set(v))

    @model_validator(mode="after")
    def _source(self) -> "StudyConfig":
        if self.organism and (self.short or self.long or self.base):
            raise ValueError("give either organism or base/short/long checkpoints, not both")
        if not self.organism and not (self.short and self.long):
            raise ValueError("give organism (e.g. quick) or both short and long checkpoint directories")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        return self

    @property
    def is_organism(self) -> bool:
        return self.organism is not None

    def step(self, name: str) -> StepConfig:
        return self.steps.get(name, StepConfig())

    # --- YAML ---------------------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, *, where: str = "study config") -> "StudyConfig":
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise StudyConfigError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise StudyConfigError(f"{where} must be a YAML mapping of study options")
        return cls.validate_dict(data, where=where)

    @classmethod
    def validate_dict(cls, data: dict[str, Any], *, where: str = "study config") -> "StudyConfig":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "config"
            raise StudyConfigError(f"{where}: {loc}: {err['msg']}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        os.replace(tmp, p)
        return p

    @staticmethod
    def read_options(path: str | os.PathLike[str]) -> dict[str, Any]:
        """A config file's options as a dict, not yet validated (so the CLI can add to them)."""
        p = Path(path)
        if not p.is_file():
            raise StudyConfigError(f"study config {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise StudyConfigError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise StudyConfigError(f"{p} must be a YAML mapping of study options")
        return data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "StudyConfig":
        p = Path(path)
        if not p.is_file():
            raise StudyConfigError(f"study config {p} does not exist")
        return cls.from_yaml(p.read_text(encoding="utf-8"), where=str(p))


SourceKind = Literal["organism", "triple"]
