"""A study's results directory loaded for the report: the typed record plus every unit's result.

Only files are read (``manifest.json``, ``study.yaml`` and ``results/*.json``); never a model.
Units are found by value (step, :class:`~lensft.study.record.ModelRef`, replicate), never by
parsing labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lensft.report.stats import Bootstrap
from lensft.results import ProbeResult, load_result
from lensft.study.record import ModelRef, Replicate, StudyRecord, UnitRecord

#: Organism/default task that stands in for each of the paper's benchmarks.
ANALOGUE = {"gsm8k": "arithmetic", "world_capital": "fact_recall", "mmlu": "fact_recall", "lambada": "cloze"}


@dataclass
class Unit:
    """One unit of the record with its loaded result."""

    record: UnitRecord
    result: ProbeResult

    @property
    def model(self) -> ModelRef:
        return self.record.model

    @property
    def replicate(self) -> Replicate:
        return self.record.replicate


@dataclass
class StudyData:
    """A loaded results directory."""

    root: Path
    record: StudyRecord
    config_yaml: str
    units: list[Unit] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> "StudyData":
        root = Path(root)
        record = StudyRecord.load(root)
        cfg = (root / "study.yaml").read_text(encoding="utf-8") if (root / "study.yaml").exists() else ""
        data = cls(root, record, cfg)
        for u in record.units():
            if u.file and (root / u.file).is_file():
                data.units.append(Unit(u, load_result(root / u.file)))
        return data

    @property
    def bootstrap(self) -> Bootstrap:
        s = self.record.config.stats
        return Bootstrap(s.resamples, s.confidence, s.seed)

    @property
    def replicates(self) -> list[Replicate]:
        return list(self.record.replicates)

    @property
    def n_layers(self) -> int:
        return self.record.n_layers

    # --- selection ------------------------------------------------------------------------
    def step(self, name: str) -> list[Unit]:
        return [u for u in self.units if u.record.step == name]

    def models(self, step: str) -> list[ModelRef]:
        """Models of a step in run order, without duplicates (one per replicate)."""
        seen: dict[str, ModelRef] = {}
        for u in self.step(step):
            seen.setdefault(u.model.key + (u.record.donor.key if u.record.donor else ""), u.model)
        return list(seen.values())

    def results(self, model: ModelRef, *steps: str, donor: Optional[ModelRef] = None) -> dict[Replicate, ProbeResult]:
        """The model's result per replicate, from the first of ``steps`` that has the model."""
        for s in steps:
            found = {u.replicate: u.result for u in self.step(s) if u.model.key == model.key
                     and (donor is None or (u.record.donor is not None and u.record.donor.key == donor.key))}
            if found:
                return found
        return {}

    def arms(self, step: str) -> list[ModelRef]:
        """The base (if run) and the arms of ``step`` by increasing long fraction (short, mixes, long)."""
        ms = [m for m in self.models(step) if m.kind in ("base", "arm")]
        return sorted(ms, key=lambda m: -1.0 if m.kind == "base" else float(m.long_fraction))  # type: ignore[arg-type]

    def sft_arms(self, step: str) -> list[ModelRef]:
        return [m for m in self.arms(step) if m.kind == "arm"]

    def has_mixes(self, step: str) -> bool:
        return any(m.is_mix for m in self.models(step))

    def tasks(self, step: str = "short_tasks") -> list[str]:
        for u in self.step(step):
            return [str(t) for t in u.result.coords.get("task", [])]
        return []

    def first(self, step: str) -> Optional[Unit]:
        units = self.step(step)
        return units[0] if units else None

    def skipped(self, step: str) -> list[str]:
        s = self.record.step(step)
        return list(s.skipped) if s else []


SHORT, LONG, BASE = ModelRef.arm(0.0), ModelRef.arm(1.0), ModelRef.base()


def select(result: ProbeResult, name: str, **sel: Any) -> Optional[np.ndarray]:
    """Array ``name`` of a result with named axes fixed, e.g. ``select(r, "mean", site="act", phase="all")``.

    None when the array or a requested label is absent.
    """
    if name not in result.arrays:
        return None
    arr = result.array(name)
    dims = list(result.dims.get(name, []))
    for axis, label in sel.items():
        if axis not in dims:
            return None
        labels = [str(x) for x in result.coords.get(axis, [])]
        if str(label) not in labels:
            return None
        i = dims.index(axis)
        arr = np.take(arr, labels.index(str(label)), axis=i)
        dims.pop(i)
    return arr
