"""Per-item values out of probe results, aligned across models, and their bootstrap intervals.

Every comparison in the report is paired: two models are compared on the items they were both
measured on (ids present in both results, in the first result's order). An *extractor* turns a
result into an :class:`Items` table (item ids and named per-item arrays); a *statistic builder*
turns the aligned tables of the compared models into a :data:`~lensft.report.stats.Statistic`.
:func:`interval` runs that over every replicate and bootstraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from lensft.report.data import StudyData
from lensft.report.stats import Band, Interval, Statistic, wmean
from lensft.results import ProbeResult
from lensft.study.record import ModelRef


@dataclass
class Items:
    """Per-item values of one result: ``ids`` and arrays with a leading item axis."""

    ids: list[str]
    cols: dict[str, np.ndarray]

    def take(self, ids: Sequence[str]) -> "Items":
        pos = {i: k for k, i in enumerate(self.ids)}
        idx = np.array([pos[i] for i in ids], dtype=int)
        return Items(list(ids), {k: v[idx] for k, v in self.cols.items()})

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]


Extractor = Callable[[ProbeResult], Optional[Items]]
#: builds a statistic from the aligned items of the compared models (in the order given)
Builder = Callable[[list[Items]], Statistic]


def align(tables: Sequence[Items]) -> list[Items]:
    """The tables restricted to the item ids all of them have (first table's order)."""
    common = set(tables[0].ids)
    for t in tables[1:]:
        common &= set(t.ids)
    ids = [i for i in tables[0].ids if i in common]
    return [t.take(ids) for t in tables]


def replicate_stats(d: StudyData, steps: Sequence[str], models: Sequence[ModelRef], extract: Extractor,
                    build: Builder, donor: Optional[ModelRef] = None) -> tuple[list[Statistic], list[int]]:
    """``build`` of the aligned tables, and the number of aligned items, of every replicate where
    every model has a result with items (the input of the bootstrap)."""
    stats: list[Statistic] = []
    sizes: list[int] = []
    for rep in d.replicates:
        tables = []
        for m in models:
            r = d.results(m, *steps, donor=donor).get(rep)
            t = extract(r) if r is not None else None
            if t is None:
                break
            tables.append(t)
        else:
            aligned = align(tables)
            if aligned[0].ids:
                stats.append(build(aligned))
                sizes.append(len(aligned[0].ids))
    return stats, sizes


def interval(d: StudyData, steps: Sequence[str], models: Sequence[ModelRef], extract: Extractor, build: Builder,
             donor: Optional[ModelRef] = None) -> Optional[Interval]:
    """Bootstrap interval of ``build`` over the replicates where every model has a result."""
    return d.bootstrap.interval(*replicate_stats(d, steps, models, extract, build, donor))


def band(d: StudyData, steps: Sequence[str], models: Sequence[ModelRef], extract: Extractor, build: Builder,
         donor: Optional[ModelRef] = None) -> Optional[Band]:
    """Pointwise bootstrap intervals of a vector statistic (one value per layer, head ...)."""
    return d.bootstrap.band(*replicate_stats(d, steps, models, extract, build, donor))


def distribution(d: StudyData, steps: Sequence[str], models: Sequence[ModelRef], extract: Extractor,
                 build: Builder) -> np.ndarray:
    """Bootstrap draws of ``build`` (empty when no replicate has every model)."""
    return d.bootstrap.distribution(*replicate_stats(d, steps, models, extract, build))


# --- extractors ---------------------------------------------------------------------------------
def task_correct(task: Optional[str] = None) -> Extractor:
    """Per-item correctness (0/1) of ``short_tasks``, on one task or all (``None`` / ``"all"``)."""

    def extract(r: ProbeResult) -> Optional[Items]:
        recs = [x for x in r.records if "correct" in x and (task in (None, "all") or x.get("task") == task)]
        if not recs:
            return None
        return Items([str(x["id"]) for x in recs], {"correct": np.array([float(bool(x["correct"])) for x in recs])})

    return extract


def per_prompt(name: str, phase: str) -> Extractor:
    """A ``<name>_per_prompt`` array of ``attention_spread`` at one phase: ``[item, layer, head]``."""

    def extract(r: ProbeResult) -> Optional[Items]:
        arr, dims = r.arrays.get(f"{name}_per_prompt"), r.dims.get(f"{name}_per_prompt")
        phases = [str(p) for p in r.coords.get("phase", [])]
        if arr is None or phase not in phases or dims is None:
            return None
        a = np.take(r.array(f"{name}_per_prompt"), phases.index(phase), axis=dims.index("phase"))
        return Items([str(i) for i in r.coords["prompt"]], {name: a})

    return extract


def ffn_moments(r: ProbeResult) -> Optional[Items]:
    """Per-item ``act`` moment sums of ``ffn_activations``: ``[item, layer, 4]`` (count, sum, sum², below)."""
    recs = [x for x in r.records if x.get("act_moments") is not None]
    if not recs:
        return None
    return Items([str(x["id"]) for x in recs], {"moments": np.array([x["act_moments"] for x in recs], dtype=float)})


def retrieval_items(r: ProbeResult) -> Optional[Items]:
    """Per-item head scores ``[item, layer, head]`` and whether the item's needle was copied."""
    if "score_per_item" not in r.arrays:
        return None
    copied = {str(x["id"]): float(bool(x.get("copied"))) for x in r.records}
    ids = [str(i) for i in r.coords.get("item", [])]
    return Items(ids, {"score": r.array("score_per_item"), "copied": np.array([copied.get(i, 0.0) for i in ids])})


def record_fields(*fields: str, where: Optional[Callable[[dict], bool]] = None) -> Extractor:
    """Numeric per-item record fields (None -> NaN), optionally only records passing ``where``."""

    def extract(r: ProbeResult) -> Optional[Items]:
        recs = [x for x in r.records if where is None or where(x)]
        if not recs:
            return None
        cols = {f: np.array([np.nan if x.get(f) is None else float(x[f]) for x in recs]) for f in fields}
        return Items([str(x["id"]) for x in recs], cols)

    return extract


# --- statistic builders --------------------------------------------------------------------------
def diff_of_means(col: str) -> Builder:
    """mean(second model) − mean(first model) of one column (paired)."""
    return lambda t: (lambda w: wmean(w, t[1][col]) - wmean(w, t[0][col]))


def mean_of(col: str, reduce: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> Builder:
    """mean of one column of the first model (``reduce`` maps [draws, ...] to [draws])."""
    return lambda t: (lambda w: reduce(wmean(w, t[0][col])))


# --- validity ------------------------------------------------------------------------------------
def ceiling_check(d: StudyData, steps: Sequence[str], models: Sequence[ModelRef], task: Optional[str]) -> Optional[str]:
    """Why a comparison of ``models``' accuracies on ``task`` cannot move, or None.

    When every model answers every item right (a ceiling) or every item wrong (a floor), in every
    replicate, each bootstrap draw of any difference is 0: the interval [0, 0] says the items
    cannot tell the models apart, not that they are equal.
    """
    ivs = [interval(d, steps, [m], task_correct(task), mean_of("correct")) for m in models]
    if not ivs or any(iv is None for iv in ivs):
        return None
    for level, word, kind in ((1.0, "right", "ceiling"), (0.0, "wrong", "floor")):
        if all(iv.low == iv.high == level for iv in ivs):  # type: ignore[union-attr]
            return (f"{kind}: every model compared answers every {task or 'task'} item {word}, "
                    "so these items cannot show a difference")
    return None
