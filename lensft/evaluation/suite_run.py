"""Run every benchmark of a suite on one model: one lm-eval run each, one result file each, and a
``suite.json`` table that puts each headline score next to the paper's.

A benchmark that cannot run (its dataset is not available offline, it executes model-written code
and that was not allowed) is recorded as *not measured* with its one-line reason; the others still
run. Scores are reported as lm-eval reports them (fractions); ``paper`` holds the paper's percent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, Field

from lensft.atomic import write_json_atomic
from lensft.errors import EvaluationError, OutputExists
from lensft.evaluation.harness import output_paths, run_harness
from lensft.evaluation.suite import Benchmark, BenchmarkSuite
from lensft.handle import ModelHandle

log = logging.getLogger(__name__)


class SuiteRow(BaseModel):
    """One benchmark of a suite run on one model."""

    benchmark: str
    status: Literal["measured", "not measured"]
    reason: str = ""
    score: str = ""
    value: Optional[float] = None
    stderr: Optional[float] = None
    ci95: Optional[tuple[float, float]] = None
    n: Optional[int] = None
    paper: dict[str, Optional[float]] = Field(default_factory=dict, description="arm -> the paper's percent")
    result_file: Optional[str] = None


class SuiteRun(BaseModel):
    suite: str
    model: str
    rows: list[SuiteRow]

    @property
    def not_measured(self) -> list[SuiteRow]:
        return [r for r in self.rows if r.status != "measured"]


def run_suite(handle: ModelHandle, suite: BenchmarkSuite, out_dir: str | Path, *, allow_code: bool = False,
              force: bool = False, on_row: Callable[[SuiteRow], None] | None = None,
              **overrides: Any) -> SuiteRun:
    """Run each benchmark of ``suite`` on ``handle``; write ``<out_dir>/<benchmark>.json`` (plus
    lm-eval's JSON beside it) and ``<out_dir>/suite.json``. ``overrides`` go to every benchmark's
    settings (``limit``, ``batch_size``, ``include_path``; ``data_files`` is given to the
    benchmark whose tasks it names).

    Raises:
        OutputExists: a file of the run exists and ``force`` is false.
    """
    out = Path(out_dir)
    targets = {b.name: out / f"{_slug(b.name)}.json" for b in suite.benchmarks}
    if not force:
        clash = [p for t in [*targets.values()] for p in output_paths(t).values() if p.exists()]
        if clash or (out / "suite.json").exists():
            raise OutputExists(f"{(clash or [out / 'suite.json'])[0]} exists; choose another directory (or force)")
    rows = []
    for b in suite.benchmarks:
        row = _run_one(handle, suite, b, targets[b.name], allow_code, overrides)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    run = SuiteRun(suite=suite.name, model=handle.label, rows=rows)
    write_json_atomic(out / "suite.json", run.model_dump(mode="json"))
    return run


def _run_one(handle: ModelHandle, suite: BenchmarkSuite, b: Benchmark, target: Path, allow_code: bool,
             overrides: dict[str, Any]) -> SuiteRow:
    paper = {arm: suite.paper_score(b, arm) for arm in suite.arms}
    if b.unsafe_code and not allow_code:
        return SuiteRow(benchmark=b.name, status="not measured", paper=paper,
                        reason="executes model-written code; allow it only where that is acceptable (confirm_run_unsafe_code)")
    kw = dict(overrides)
    kw["data_files"] = {t: f for t, f in (overrides.get("data_files") or {}).items() if t in b.tasks}
    try:
        run = run_harness(handle, b.settings(confirm_run_unsafe_code=allow_code, **kw))
    except EvaluationError as e:
        log.info("benchmark %s not measured: %s", b.name, e)
        return SuiteRow(benchmark=b.name, status="not measured", reason=str(e), paper=paper)
    run.save(target, force=True)
    head = b.headline(run.result)
    if head is None:
        return SuiteRow(benchmark=b.name, status="not measured", paper=paper, result_file=target.name,
                        reason=f"lm-eval did not report {b.score.task}/{b.score.metric}")
    return SuiteRow(benchmark=b.name, status="measured", score=head.label, value=head.value, stderr=head.stderr,
                    ci95=head.ci95, n=head.n, paper=paper, result_file=target.name)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
