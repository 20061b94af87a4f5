"""Paired differences between two models scored on the same lm-eval documents.

Two ``lm_eval`` results over the same tasks (same documents, same few-shot contexts: lm-eval's
few-shot sampling is seeded) can be compared document by document. :func:`paired_difference`
takes the per-document metric values of one task or group from each result's records, pairs
them by ``(task, doc_id)`` and returns the mean difference ``a - b`` with the paired standard
error ``sd(a_i - b_i) / sqrt(n)`` and the normal 95% interval it implies. Pairing removes the
between-document variance that two separate standard errors would double count, which is what
makes a swap's effect on a few hundred GSM8K problems measurable. A group's value is the mean
over all its documents (lm-eval's ``weight_by_size`` aggregate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from lensft.errors import EvaluationError
from lensft.results import ProbeResult

Z95 = 1.959963984540054


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` on ``n`` paired documents: mean difference, paired stderr, 95% interval."""

    task: str
    metric: str
    filter: str
    delta: float
    stderr: float
    n: int

    @property
    def ci95(self) -> tuple[float, float]:
        return self.delta - Z95 * self.stderr, self.delta + Z95 * self.stderr


def per_document(result: ProbeResult, task: str, metric: str, filter: Optional[str] = None) -> dict[tuple[str, int], float]:
    """``(task, doc_id) -> value`` of ``metric`` for the documents of ``task`` (or of the group
    ``task``) under lm-eval's ``filter`` (None: the only filter the records carry).

    Raises:
        EvaluationError: the result holds no records for it (run with samples logged), or
            several filters and none chosen.
    """
    rows = [r for r in result.records if (r.get("task") == task or task in (r.get("groups") or [])) and metric in r]
    filters = sorted({str(r.get("filter")) for r in rows})
    if filter is None and len(filters) > 1:
        raise EvaluationError(f"{task}/{metric} has filters {filters}; choose one")
    rows = [r for r in rows if filter is None or r.get("filter") == filter]
    if not rows:
        raise EvaluationError(f"result {result.model.label!r} has no per-document {metric!r} of {task!r}; "
                              "run it with samples logged")
    return {(str(r["task"]), int(r["doc_id"])): float(r[metric]) for r in rows}


def paired_difference(a: ProbeResult, b: ProbeResult, task: str, metric: str,
                      filter: Optional[str] = None) -> PairedDifference:
    """Mean of ``a - b`` over the documents both results scored (see the module docstring).

    Raises:
        EvaluationError: no shared documents, or fewer than two.
    """
    va, vb = per_document(a, task, metric, filter), per_document(b, task, metric, filter)
    shared = sorted(set(va) & set(vb))
    if len(shared) < 2:
        raise EvaluationError(f"{a.model.label!r} and {b.model.label!r} share {len(shared)} documents of {task!r}; "
                              "a paired difference needs two or more")
    d = [va[k] - vb[k] for k in shared]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    filt = filter or str(next(r.get("filter") for r in a.records if r.get("task") == shared[0][0]))
    return PairedDifference(task, metric, filt, mean, math.sqrt(var / n), n)
