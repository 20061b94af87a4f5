"""Study configuration: which triple, which prompt sets, which steps with which probe settings.

A :class:`StudyConfig` is validated by pydantic, round-trips through YAML
(:meth:`StudyConfig.to_yaml` / :meth:`StudyConfig.from_yaml`) and is saved as ``study.yaml`` in
the results directory. The models come either from the model organism (``organism: quick``;
every world seed in ``seeds`` is a separately built organism, every SFT seed below
``sft_seeds`` a separately trained set of arms from its base) or from a user triple
(``base``/``short``/``long`` checkpoint directories).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from lensft.atomic import write_text_atomic
from lensft.errors import LensftError

#: Step names in the order they run (and the report's order).
STEP_NAMES: tuple[str, ...] = (
    "short_tasks", "module_grid", "layer_sweep", "attention_spread", "retrieval", "ffn_activations",
    "knowledge", "patching", "benchmarks",
)
#: Prompt-set roles a study fills (from the organism, the built-in sets or ``prompts``).
PROMPT_ROLES: tuple[str, ...] = ("tasks", "needle", "conflict", "spread", "ffn")


class StudyConfigError(LensftError):
    """A study configuration file or option is invalid."""


class StepConfig(BaseModel):
    """One experiment: on/off, the probe's settings (passed to ``Probe.Settings``) and a cap on items."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict, description="probe settings (the probe's Settings fields)")
    max_items: Optional[int] = Field(None, ge=1, description="use at most this many items of each task of a prompt set")


class StatsConfig(BaseModel):
    """How the report computes intervals: a paired bootstrap over items (and over replicates first
    when there are several), ``resamples`` draws from a generator seeded with ``seed``."""

    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(2000, ge=1000, description="bootstrap resamples (at least 1,000)")
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


def _default_steps() -> dict[str, StepConfig]:
    return {
        "short_tasks": StepConfig(),
        "module_grid": StepConfig(),
        "layer_sweep": StepConfig(max_items=40),
        "attention_spread": StepConfig(max_items=24, settings={"max_length": 1024}),
        "retrieval": StepConfig(max_items=24),
        "ffn_activations": StepConfig(),
        "knowledge": StepConfig(settings={"generate": False, "known_rule": "rank"}),  # no decoding: own memory by rank
        "patching": StepConfig(max_items=24),
        "benchmarks": StepConfig(),  # off until its settings name a suite or tasks (lm-eval is an extra)
    }


class StudyConfig(BaseModel):
    """Everything that determines a study's results."""

    model_config = ConfigDict(extra="forbid")

    name: str = "study"
    organism: Optional[str] = Field(None, description="organism preset (tiny, quick, full); exclusive with short/long")
    organism_dir: Optional[str] = Field(None, description="organism build directory (default: the organism cache); "
                                                          "world seed i uses <dir>/seed-<i>")
    seeds: list[int] = Field(default_factory=lambda: [0], description="organism world seeds; each is a separately trained organism")
    sft_seeds: int = Field(1, ge=1, description="organism SFT seeds 0..N-1 of every arm, trained from one base")
    mixes: list[float] = Field(default_factory=list, description="organism mixes (long-data fraction); empty = the preset's")
    base: Optional[str] = None
    short: Optional[str] = None
    long: Optional[str] = None
    prompts: dict[str, str] = Field(default_factory=dict,
                                    description="prompt-set files by role: tasks (comma-separated list), needle, conflict, spread, ffn")
    band: int = Field(1, ge=1, description="layers per band in the per-layer swap sweep")
    steps: dict[str, StepConfig] = Field(default_factory=_default_steps)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    device: str = Field("cpu", description="where models run: cpu, cuda, cuda:N or auto (GPUs, then CPU)")
    dtype: Optional[Literal["float32", "bfloat16", "float16"]] = Field(
        None, description="weights dtype; None keeps each checkpoint's own")
    batch_size: Optional[int] = Field(None, ge=1, description="prompts per forward pass for every probe that batches")
    report: bool = Field(True, description="write the report at the end")
    png: bool = Field(True, description="export PNGs where kaleido + chromium are available")

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: dict[str, StepConfig]) -> dict[str, StepConfig]:
        unknown = sorted(set(v) - set(STEP_NAMES))
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; steps are {', '.join(STEP_NAMES)}")
        return {**_default_steps(), **v}

    @field_validator("steps")
    @classmethod
    def _benchmark_settings(cls, v: dict[str, StepConfig], info: ValidationInfo) -> dict[str, StepConfig]:
        """The benchmarks step's settings and its suite; a stored record (context ``stored``) is not
        held to a suite file that has moved since the study ran."""
        from lensft.study import benchmarks

        try:
            s = benchmarks.parse(v["benchmarks"].settings)
            if not (info.context or {}).get("stored"):
                benchmarks.runs(s)
        except ValidationError as e:
            err = e.errors()[0]
            raise ValueError(f"benchmarks settings: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        except LensftError as e:
            raise ValueError(f"benchmarks settings: {e}") from None
        return v

    @field_validator("prompts")
    @classmethod
    def _known_roles(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(PROMPT_ROLES))
        if unknown:
            raise ValueError(f"unknown prompt role(s) {unknown}; roles are {', '.join(PROMPT_ROLES)}")
        return v

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
            raise ValueError("give either an organism preset or base/short/long checkpoints, not both")
        if not self.organism and not (self.short and self.long):
            raise ValueError("give an organism preset (e.g. quick) or both short and long checkpoint directories")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if not self.organism and (self.seeds != [0] or self.sft_seeds != 1 or self.mixes):
            raise ValueError("seeds, sft_seeds and mixes are organism options; a user triple is one replicate")
        return self

    @property
    def is_organism(self) -> bool:
        return self.organism is not None

    def step(self, name: str) -> StepConfig:
        return self.steps.get(name, StepConfig())


    # --- YAML and option merging -------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, *, where: str = "study config") -> "StudyConfig":
        return cls.validate_dict(_yaml_mapping(text, where), where=where)

    @classmethod
    def validate_dict(cls, data: dict[str, Any], *, where: str = "study config") -> "StudyConfig":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "config"
            raise StudyConfigError(f"{where}: {loc}: {err['msg']}", field=str(err["loc"][0]) if err["loc"] else None) from None

    @classmethod
    def merged(cls, path: Optional[str | os.PathLike[str]], overrides: dict[str, Any]) -> "StudyConfig":
        """A config file's options (if any) with ``overrides`` on top (None values ignored).

        Naming a model source (``organism`` or any of ``base``/``short``/``long``) replaces the
        file's source entirely; ``prompts`` are merged role by role. Without any source the
        quick organism is studied.
        """
        data = cls.read_options(path) if path else {}
        given = {k: v for k, v in overrides.items() if v is not None}
        if any(k in given for k in ("organism", "base", "short", "long")):
            for k in ("organism", "base", "short", "long"):
                data.pop(k, None)
        if "prompts" in given:
            given["prompts"] = {**data.get("prompts", {}), **given["prompts"]}
        data.update(given)
        if not data.get("organism") and not (data.get("short") and data.get("long")):
            data["organism"] = "quick"
        return cls.validate_dict(data, where=str(path) if path else "study options")

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_text_atomic(path, self.to_yaml())

    @staticmethod
    def read_options(path: str | os.PathLike[str]) -> dict[str, Any]:
        """A config file's options as a dict, not yet validated."""
        p = Path(path)
        if not p.is_file():
            raise StudyConfigError(f"study config {p} does not exist", field="config")
        try:
            return _yaml_mapping(p.read_text(encoding="utf-8"), str(p))
        except UnicodeDecodeError:
            raise StudyConfigError(f"study config {p} is not a text file", field="config") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "StudyConfig":
        return cls.validate_dict(cls.read_options(path), where=str(path))


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise StudyConfigError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise StudyConfigError(f"{where} must be a YAML mapping of study options")
    return data
