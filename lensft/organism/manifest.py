"""The build manifest: what an organism build holds and what every training stage saw.

``manifest.json`` in a build directory is a :class:`BuildManifest`, rewritten (atomically) after
every stage. Paths in it are relative to the build directory, so a build can be moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from lensft.atomic import write_text_atomic
from lensft.variants import ArmRef


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingRecord(_Record):
    """One training stage: what it saw and how fast it ran."""

    tokens: int = Field(description="non-padding tokens seen")
    answer_tokens: int = Field(description="assistant-answer tokens among them (the supervised ones in SFT)")
    steps: int
    seconds: float = Field(description="wall-clock seconds of the training loop")
    tokens_per_s: float
    final_loss: float = Field(description="last step's weighted cross-entropy, nats")


class BaseRecord(_Record):
    """The pretrained base."""

    path: str
    origin: Literal["shipped", "trained"] = Field(description="copied from the package or trained by this build")
    base_key: str = Field(description="hash of the BaseConfig it was trained with")
    seed: int
    params: int
    lensft_version: str = Field(description="lensft version that trained it")
    training: TrainingRecord


class ArmRecord(_Record):
    """One SFT arm."""

    arm: ArmRef
    path: str
    examples: int
    short_examples: int
    long_examples: int
    questions: int = Field(description="question turns (a long example asks several)")
    data_seeds: dict[str, list[int]] = Field(
        description="numpy SeedSequence entropy of the short pool, the long pool and the arm's training order")
    training: TrainingRecord


class BuildManifest(_Record):
    """Everything a build holds: the base, the arms, the prompt sets and the stage wall times."""

    lensft_version: str
    preset: str
    config_key: str
    seed: int
    from_scratch: bool
    base: Optional[BaseRecord] = None
    arms: list[ArmRecord] = Field(default_factory=list)
    prompt_sets: dict[str, str] = Field(default_factory=dict)
    stage_seconds: dict[str, float] = Field(default_factory=dict, description="wall seconds of the other stages")

    def arm(self, ref: ArmRef) -> ArmRecord | None:
        """The record of ``ref`` (None when it is not built)."""
        return next((a for a in self.arms if a.arm == ref), None)

    def put_arm(self, record: ArmRecord) -> None:
        """Add or replace the record of ``record.arm``; arms stay sorted by (sft seed, long fraction)."""
        self.arms = sorted([a for a in self.arms if a.arm != record.arm] + [record],
                           key=lambda a: (a.arm.sft_seed, a.arm.long_fraction))

    def spread(self, field: Literal["tokens", "answer_tokens"]) -> float:
        """(max - min) / max of a training count over the arms (0 when they are equal)."""
        values = [getattr(a.training, field) for a in self.arms]
        return (max(values) - min(values)) / max(values) if values and max(values) > 0 else 0.0

    def write(self, root: Path) -> Path:
        """Write ``root/manifest.json`` atomically."""
        return write_text_atomic(root / "manifest.json", self.model_dump_json(indent=1) + "\n")

    @classmethod
    def read(cls, root: Path) -> BuildManifest:
        """Read ``root/manifest.json``."""
        return cls.model_validate_json((root / "manifest.json").read_text(encoding="utf-8"))
