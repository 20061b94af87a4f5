"""Read a study's results directory into the tables the figures, captions and claims use.

Only files are read (``manifest.json``, ``study.yaml`` and ``results/*.json``); never a model.
Values measured on several organism seeds are kept per seed; :class:`Stat` gives the mean and
the 95% confidence half-width 1.96 * sd / sqrt(n) (the paper's Table 4 convention).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from lensft.errors import LensftError
from lensft.results import ProbeResult, load_result

#: Organism/default task that stands in for each of the paper's benchmarks.
ANALOGUE = {"gsm8k": "arithmetic", "world_capital": "fact_recall", "mmlu": "fact_recall", "lambada": "cloze"}


@dataclass(frozen=True)
class Stat:
    """A value over seeds: ``mean``, 95% CI half-width ``ci`` (0 for one seed), ``n`` seeds."""

    mean: float
    ci: float
    n: int

    @classmethod
    def of(cls, values: Iterable[Optional[float]]) -> Optional["Stat"]:
        v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
        if v.size == 0:
            return None
        ci = 1.96 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else 0.0
        return cls(float(v.mean()), ci, int(v.size))

    def fmt(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        s = f"{self.mean * scale:.{digits}f}{unit}"
        return s + (f" ± {self.ci * scale:.{digits}f}" if self.n > 1 else "")


@dataclass
class Unit:
    step: str
    seed: int
    label: str
    tags: dict[str, Any]
    model: dict[str, Any]
    result: ProbeResult


@dataclass
class StudyData:
    """A loaded results directory."""

    root: Path
    manifest: dict[str, Any]
    config_yaml: str
    units: list[Unit] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> "StudyData":
        root = Path(root)
        mpath = root / "manifest.json"
        if not mpath.is_file():
            raise LensftError(f"{root} is not a study results directory (no manifest.json); run `lensft study` first")
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        cfg = (root / "study.yaml").read_text(encoding="utf-8") if (root / "study.yaml").exists() else ""
        data = cls(root, manifest, cfg)
        for step in manifest.get("steps", []):
            for u in step.get("units", []):
                f = root / u.get("file", "")
                if "file" in u and f.is_file():
                    data.units.append(Unit(step["name"], int(u["seed"]), u["model"]["label"], u["model"].get("tags", {}),
                                           u["model"], load_result(f)))
        return data

    # --- selection ------------------------------------------------------------------------
    @property
    def seeds(self) -> list[int]:
        return list(self.manifest.get("seeds", [0]))

    @property
    def n_layers(self) -> int:
        return int(self.manifest.get("n_layers", 0))

    def step(self, name: str) -> list[Unit]:
        return [u for u in self.units if u.step == name]

    def step_entry(self, name: str) -> dict[str, Any]:
        return next((s for s in self.manifest.get("steps", []) if s["name"] == name), {})

    def labels(self, step: str) -> list[str]:
        """Model labels of a step in run order (no duplicates)."""
        return list(dict.fromkeys(u.label for u in self.step(step)))

    def by_label(self, step: str, label: str) -> list[Unit]:
        return [u for u in self.step(step) if u.label == label]

    def find(self, label: str, *steps: str) -> list[Unit]:
        """Units of ``label`` in the first of ``steps`` that has it."""
        for s in steps:
            us = self.by_label(s, label)
            if us:
                return us
        return []

    def summary(self, step: str, label: str, key: str, *also: str) -> Optional[Stat]:
        """A summary scalar of one model over seeds (searching ``step`` then ``also`` steps)."""
        us = self.find(label, step, *also)
        return Stat.of(u.result.summary.get(key) for u in us)

    def array(self, step: str, label: str, fn: Callable[[ProbeResult], Optional[np.ndarray]], *also: str) -> Optional[np.ndarray]:
        """The seed mean of ``fn(result)`` for one model (searching ``step`` then ``also``)."""
        arrs = []
        for u in self.find(label, step, *also):
            a = fn(u.result)
            if a is not None:
                arrs.append(np.asarray(a, dtype=float))
        if not arrs:
            return None
        return np.nanmean(np.stack(arrs), axis=0) if len(arrs) > 1 else arrs[0]

    def arm_labels(self, step: str) -> list[str]:
        """base, short, mixes (increasing long fraction), long -- those the step has."""
        labels = self.labels(step)
        mixes = sorted((l for l in labels if l.startswith("mix-")), key=lambda l: float(l.split("-")[1]))
        return [l for l in ("base", "short") if l in labels] + mixes + (["long"] if "long" in labels else [])

    def sft_arms(self, step: str) -> list[str]:
        """The arms of ``step`` that have a long-data fraction: short, mixes, long (increasing)."""
        return [l for l in self.arm_labels(step) if self.long_fraction(l) is not None]

    def has_mixes(self, step: str) -> bool:
        """Whether ``step`` ran any hybrid mix arm (organism-only)."""
        return any(l.startswith("mix-") for l in self.labels(step))

    def long_fraction(self, label: str) -> Optional[float]:
        return {"short": 0.0, "long": 1.0}.get(label, float(label.split("-")[1]) if label.startswith("mix-") else None)

    def tasks(self, step: str = "short_tasks") -> list[str]:
        for u in self.step(step):
            return [str(t) for t in u.result.coords.get("task", [])]
        return []

    def task_acc(self, label: str, task: str, *steps: str) -> Optional[Stat]:
        steps = steps or ("short_tasks", "module_grid")
        key = "accuracy" if task == "all" else f"accuracy_{task}"
        return self.summary(steps[0], label, key, *steps[1:])

    def phases(self) -> list[str]:
        for u in self.step("attention_spread"):
            return [str(p) for p in u.result.coords.get("phase", [])]
        return []

    def reasoning_phase(self) -> Optional[str]:
        """``reasoning`` if the spread prompts have it, else ``prompt`` (the context-reading stand-in)."""
        ph = self.phases()
        return "reasoning" if "reasoning" in ph else ("prompt" if "prompt" in ph else None)


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
