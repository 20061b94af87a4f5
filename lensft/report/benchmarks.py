"""The benchmarks step in the report: one table per benchmark score, every model's score with its
95% interval, each swap's effect (graft − host) paired over documents, the paper's numbers beside.

Scores and differences come from the per-document metric values lm-eval logs (the ``lm_eval``
result's records), bootstrapped like every other number of the report
(:mod:`lensft.report.measures`): a model's score is the mean over documents (lm-eval's own value
for mean-aggregated metrics, and a group's size-weighted mean), a swap's effect the paired mean
difference on the documents both models were scored on. A score without per-document values
falls back to lm-eval's value ± 1.96 × its standard error (marked in the table).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from lensft.evaluation.convert import metric_rows
from lensft.report.data import SHORT, StudyData, Unit
from lensft.report.measures import Extractor, Items, diff_of_means, interval, mean_of
from lensft.report.stats import Interval
from lensft.study import benchmarks as B
from lensft.study.record import ModelRef
from lensft.variants import Variant

log = logging.getLogger(__name__)
STEPS = (B.STEP,)


@dataclass
class BenchmarkRow:
    """One model on one benchmark score (fractions; ``paper`` in percent)."""

    model: ModelRef
    score: Optional[Interval]
    versus: Optional[str] = None  # the model ``delta`` is taken against
    delta: Optional[Interval] = None
    paper: Optional[float] = None
    paper_delta: Optional[float] = None
    stderr_only: bool = False  # the interval is lm-eval's normal one (no per-document values)


@dataclass
class BenchmarkTable:
    """One benchmark score (``task/metric,filter``) of one run over every model of the step."""

    benchmark: str
    score: str
    rows: list[BenchmarkRow] = field(default_factory=list)
    difference: str = ""
    n_docs: int = 0

    def as_dict(self) -> dict:
        def iv(x: Optional[Interval]) -> Optional[dict]:
            return None if x is None else x.as_dict()

        return {"benchmark": self.benchmark, "score": self.score, "n_docs": self.n_docs, "difference": self.difference,
                "rows": [{"model": r.model.label, "score": iv(r.score), "versus": r.versus, "delta": iv(r.delta),
                          "paper": r.paper, "paper_delta": r.paper_delta, "stderr_only": r.stderr_only} for r in self.rows]}


def per_document(task: str, metric: str, filt: str) -> Extractor:
    """Per-document values of ``metric`` under ``filt`` for ``task`` (or the documents of the group
    ``task``), keyed ``task:doc_id``."""

    def extract(r) -> Optional[Items]:  # noqa: ANN001
        recs = [x for x in r.records if (x.get("task") == task or task in (x.get("groups") or []))
                and str(x.get("filter")) == filt and isinstance(x.get(metric), (int, float, bool))]
        if not recs:
            return None
        return Items([f"{x['task']}:{x['doc_id']}" for x in recs], {"v": np.array([float(x[metric]) for x in recs])})

    return extract


def run_of(d: StudyData) -> list[tuple[B.BenchmarkRun, list[Unit]]]:
    """The step's runs (from the study config) with their units; units of a run the config no longer
    names are grouped by their task names."""
    units = d.step(B.STEP)
    try:
        runs, _ = B.runs(B.parse(d.record.config.step(B.STEP).settings))
    except Exception as e:  # e.g. a suite file that moved since the study ran
        log.warning("benchmark settings could not be read again (%s); tables show lm-eval's task names", e)
        runs = []
    by_key = {r.key: r for r in runs}
    for u in units:
        key = tuple(u.record.settings.get("tasks") or ())
        if key not in by_key:
            by_key[key] = B.BenchmarkRun(",".join(key) or "task prompt set", dict(u.record.settings), organism=not key)
    out = []
    for key, run in by_key.items():
        mine = [u for u in units if tuple(u.record.settings.get("tasks") or ()) == key]
        if mine:
            out.append((run, mine))
    return out


def _scores(run: B.BenchmarkRun, units: list[Unit]) -> list[tuple[str, str, str]]:
    """``(task, metric, filter)`` of the scores a run's table shows: the headline, or every score
    of the requested tasks (every task, for an exported prompt set)."""
    rows = metric_rows(units[0].result)
    if run.score is not None:
        s = run.score
        hit = [r for r in rows if (r.task, r.metric) == (s.task, s.metric) and s.filter in (None, r.filter)]
        return [(hit[0].task, hit[0].metric, hit[0].filter)] if hit else []
    wanted = set(run.key)
    return [(r.task, r.metric, r.filter) for r in rows if not wanted or r.task in wanted]


def _versus(m: ModelRef) -> Optional[ModelRef]:
    """A graft is compared with its host, the long arm and the mixes with the short arm."""
    if m.kind == "graft":
        return ModelRef.of_variant(m.graft.host)  # type: ignore[union-attr]
    if m.kind == "arm" and float(m.long_fraction) > 0:  # type: ignore[arg-type]
        return SHORT
    return None


def _fallback(d: StudyData, m: ModelRef, label: str) -> Optional[Interval]:
    for r in d.results(m, *STEPS).values():
        for row in metric_rows(r):
            if row.label == label and row.ci95 is not None:
                return Interval(row.value, row.ci95[0], row.ci95[1], n_items=row.n or 0)
    return None


def _paper(run: B.BenchmarkRun, m: ModelRef) -> tuple[Optional[float], Optional[float]]:
    if m.kind == "arm" and m.variant in (Variant.SHORT, Variant.LONG):
        return run.paper.get(m.variant.value), None  # type: ignore[union-attr]
    swapped = run.paper_swaps.get(m.label)
    if swapped is None or m.graft is None:
        return None, None
    own = run.paper.get(m.graft.host.value)
    return swapped, None if own is None else round(swapped - own, 2)


def benchmark_tables(d: StudyData) -> list[BenchmarkTable]:
    """Every table of the benchmarks step (empty when it did not run)."""
    out = []
    for run, units in run_of(d):
        d_run = replace(d, units=units)  # a model's result, below, is the one of this run
        models = list({u.model.key: u.model for u in units}.values())
        for task, metric, filt in _scores(run, units):
            ext = per_document(task, metric, filt)
            t = BenchmarkTable(run.name, f"{task}/{metric},{filt}", difference=run.difference)
            for m in models:
                score = interval(d_run, STEPS, [m], ext, mean_of("v"))
                row = BenchmarkRow(m, score, stderr_only=score is None)
                if score is None:
                    row.score = _fallback(d_run, m, t.score)
                other = _versus(m)
                if other is not None and other.key in {x.key for x in models} and not row.stderr_only:
                    row.versus, row.delta = other.label, interval(d_run, STEPS, [other, m], ext, diff_of_means("v"))
                row.paper, row.paper_delta = _paper(run, m)
                t.rows.append(row)
                t.n_docs = max(t.n_docs, row.score.n_items if row.score else 0)
            out.append(t)
    return out
