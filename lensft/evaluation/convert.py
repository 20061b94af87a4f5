"""lm-eval's results and logged samples as a lensft :class:`~lensft.results.ProbeResult`.

lm-eval reports each score under ``results[task]["<metric>,<filter>"]`` with its standard error
under ``"<metric>_stderr,<filter>"`` (``"N/A"`` where it has none). The result keeps those names:

- ``summary``: ``"<task>/<metric>,<filter>"`` and ``"<task>/<metric>_stderr,<filter>"`` for every
  task and group lm-eval reports, plus ``n_items`` (documents scored, all tasks);
- ``arrays`` over the axis ``score`` (coords: the same ``"<task>/<metric>,<filter>"`` labels):
  ``value``, ``stderr``, ``ci95_low`` / ``ci95_high`` (value ∓ 1.96 stderr, the normal interval
  lm-eval's stderr implies; NaN where there is no stderr), ``n`` (documents of that task) and
  ``higher_is_better`` (1/0);
- ``records``: one per logged document and filter: ``task``, ``groups`` (the lm-eval groups that
  contain the task, e.g. ``["mmlu", "mmlu_stem"]``), ``doc_id``, ``filter``, ``id`` (the
  document's own id when it has one, as exported lensft prompt sets do; else
  ``"<task>:<doc_id>"``), ``target``, the model's raw ``response`` and its ``filtered`` answer
  (generation tasks) or ``choice_logprobs`` and ``pred_index`` (multiple choice), and every
  per-item metric.

:func:`metric_rows` reads those arrays back as typed rows (for tables and reports).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from lensft.evaluation.settings import HarnessSettings
from lensft.hashing import sha256_json
from lensft.prompts import PromptSet
from lensft.provenance import Provenance
from lensft.results import ProbeResult, PromptSetRef

PROBE_NAME = "lm_eval"
Z95 = 1.959963984540054
_NOT_SCORES = {"alias", "name", "sample_len", " ", ""}


@dataclass(frozen=True)
class MetricRow:
    """One reported score: ``task``, ``metric``, ``filter``, value, stderr, 95% interval, documents."""

    task: str
    metric: str
    filter: str
    value: float
    stderr: Optional[float]
    n: Optional[int]
    higher_is_better: Optional[bool]

    @property
    def label(self) -> str:
        return f"{self.task}/{self.metric},{self.filter}"

    @property
    def ci95(self) -> tuple[float, float] | None:
        if self.stderr is None:
            return None
        return self.value - Z95 * self.stderr, self.value + Z95 * self.stderr


def harness_result(provenance: Provenance, settings: HarnessSettings, raw: dict[str, Any],
                   samples: dict[str, list[dict[str, Any]]], *, prompts: Optional[PromptSet] = None,
                   chat: bool = False) -> ProbeResult:
    """The :class:`ProbeResult` of one lm-eval run (format in the module docstring)."""
    rows = list(_rows(raw))
    n_total = sum(int(v.get("effective", 0)) for v in (raw.get("n-samples") or {}).values())
    res = ProbeResult(probe=PROBE_NAME, model=provenance, settings={**settings.model_dump(), "chat_applied": chat},
                      prompt_set=_prompt_ref(settings, raw, prompts, n_total))
    for r in rows:
        res.summary[r.label] = r.value
        res.summary[f"{r.task}/{r.metric}_stderr,{r.filter}"] = r.stderr
    res.summary["n_items"] = float(n_total)
    nan = math.nan
    res.set_array("value", [r.value for r in rows], ["score"])
    res.set_array("stderr", [nan if r.stderr is None else r.stderr for r in rows], ["score"])
    res.set_array("ci95_low", [nan if r.ci95 is None else r.ci95[0] for r in rows], ["score"])
    res.set_array("ci95_high", [nan if r.ci95 is None else r.ci95[1] for r in rows], ["score"])
    res.set_array("n", [nan if r.n is None else r.n for r in rows], ["score"])
    res.set_array("higher_is_better", [nan if r.higher_is_better is None else float(r.higher_is_better) for r in rows],
                  ["score"])
    res.coords["score"] = [r.label for r in rows]
    groups = _parent_groups(raw.get("group_subtasks") or {})
    res.records = [{**rec, "groups": groups.get(task, [])} for task in sorted(samples)
                   for rec in _records(task, samples[task])]
    return res


def _parent_groups(group_subtasks: dict[str, list[str]]) -> dict[str, list[str]]:
    """task -> every group that contains it, directly or through subgroups (sorted)."""
    parents: dict[str, set[str]] = {}
    for group, children in group_subtasks.items():
        for child in children:
            parents.setdefault(child, set()).add(group)

    def up(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for g in parents.get(name, ()):
            if g not in seen:
                out |= {g} | up(g, seen | {g})
        return out

    return {t: sorted(up(t)) for t in parents}


def metric_rows(result: ProbeResult) -> list[MetricRow]:
    """The scores of an ``lm_eval`` result as rows (inverse of the arrays written above)."""
    labels = result.coords.get("score", [])
    cols = {k: result.array(k) for k in ("value", "stderr", "n", "higher_is_better")}
    out = []
    for i, label in enumerate(labels):
        task, _, rest = str(label).partition("/")
        metric, _, filt = rest.partition(",")
        se, n, hib = (cols[k][i] for k in ("stderr", "n", "higher_is_better"))
        out.append(MetricRow(task, metric, filt, float(cols["value"][i]), None if math.isnan(se) else float(se),
                             None if math.isnan(n) else int(n), None if math.isnan(hib) else bool(hib)))
    return out


def _rows(raw: dict[str, Any]):
    results = raw.get("results") or {}
    n_samples = raw.get("n-samples") or {}
    hib = raw.get("higher_is_better") or {}
    for task in results:
        entry = results[task]
        for key, value in entry.items():
            metric, _, filt = key.partition(",")
            if key in _NOT_SCORES or metric.endswith("_stderr") or not isinstance(value, (int, float)) \
                    or isinstance(value, bool):
                continue
            se = entry.get(f"{metric}_stderr,{filt}")
            n = (n_samples.get(task) or {}).get("effective")
            better = (hib.get(task) or {}).get(metric)
            yield MetricRow(task, metric, filt, float(value), float(se) if isinstance(se, (int, float)) else None,
                            int(n) if n is not None else None, bool(better) if better is not None else None)


def _records(task: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in rows:
        doc = s.get("doc") or {}
        rec: dict[str, Any] = {"task": task, "doc_id": s.get("doc_id"), "filter": s.get("filter"), "target": s.get("target")}
        rec["id"] = str(doc["id"]) if isinstance(doc, dict) and "id" in doc else f"{task}:{s.get('doc_id')}"
        resp = s.get("filtered_resps") or []
        if resp and isinstance(resp[0], (list, tuple)) and len(resp[0]) == 2 and isinstance(resp[0][0], (int, float)):
            lps = [float(r[0]) for r in resp]
            rec["choice_logprobs"] = lps
            rec["pred_index"] = max(range(len(lps)), key=lps.__getitem__)
        elif resp:
            raw = (s.get("resps") or [[None]])[0]
            rec["response"] = raw[0] if isinstance(raw, list) and raw else raw
            rec["filtered"] = resp[0] if isinstance(resp[0], str) else str(resp[0])
        for m in s.get("metrics") or []:
            if m in s:
                rec[m] = s[m]
        out.append(rec)
    return out


def plain_json(obj: Any) -> Any:
    """lm-eval's objects as plain JSON values (numpy scalars, sets ... as lm-eval writes them;
    NaN and infinities as None, which JSON lacks)."""
    from lm_eval.utils import handle_non_serializable

    def finite(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, list):
            return [finite(v) for v in x]
        if isinstance(x, dict):
            return {k: finite(v) for k, v in x.items()}
        return x

    return finite(json.loads(json.dumps(obj, default=handle_non_serializable, allow_nan=True)))


def task_hashes(samples: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """lm-eval's per-task hash of the logged samples (as its own results files carry)."""
    from lm_eval.utils import hash_string

    return {t: hash_string("".join(x.get("doc_hash", "") + x.get("prompt_hash", "") + x.get("target_hash", "")
                                   for x in rows)) for t, rows in samples.items()}


def _prompt_ref(settings: HarnessSettings, raw: dict[str, Any], prompts: Optional[PromptSet], n: int) -> PromptSetRef:
    if not settings.tasks and prompts is not None:
        return PromptSetRef(name=prompts.name, version=prompts.version, n_items=n)
    ident = {"versions": raw.get("versions"), "n-shot": raw.get("n-shot"), "lm_eval": raw.get("lm_eval_version"),
             "hashes": raw.get("task_hashes")}
    return PromptSetRef(name="lm-eval:" + ",".join(settings.tasks), version=sha256_json(ident)[:12], n_items=n)
