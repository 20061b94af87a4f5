"""Running units: build each unit's model(s) from its replicate's checkpoints and call the probe.

A :class:`UnitTask` carries everything a unit needs (its plan, cache key, prompt set and the
replicate's checkpoint paths), so an executor can run it in this process or anywhere else. The
:class:`LocalExecutor` runs tasks one after another, reusing each replicate's loaded triple
through a :class:`ModelCache` (which keeps the two most recent models, so a host/donor pair or
consecutive units on one model are built once, and grafts share the triple's tensors). Other
executors (e.g. :mod:`lensft.study.ray_executor`) implement the same :class:`Executor` protocol.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

from lensft.handle import ModelHandle, load_model
from lensft.prompts import PromptSet
from lensft.results import ProbeResult
from lensft.study.plan import UnitPlan
from lensft.study.record import ModelRef, Replicate
from lensft.study.sources import ReplicateSource, SourcePaths, source_from_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitTask:
    """One unit ready to run anywhere: its plan, cache key, prompt set and its replicate's paths."""

    plan: UnitPlan
    key: str
    prompts: PromptSet
    paths: SourcePaths

    @property
    def where(self) -> str:
        """``step/model (replicate)`` for messages."""
        donor = f" <- {self.plan.donor.label}" if self.plan.donor else ""
        return f"{self.plan.step}/{self.plan.model.label}{donor} ({self.plan.replicate.label})"


@dataclass(frozen=True)
class UnitOutcome:
    """What running a task gave: a result, or the one-line error that stopped it."""

    task: UnitTask
    result: Optional[ProbeResult]
    error: Optional[str]
    seconds: float


class Progress(Protocol):
    """What executors report while they run (the CLI draws it)."""

    def started(self, task: UnitTask) -> None: ...

    def finished(self, outcome: UnitOutcome) -> None: ...


class Executor(Protocol):
    """Runs tasks and calls ``done`` once per task, in any order, from the calling thread."""

    def run(self, tasks: Sequence[UnitTask], sources: dict[Replicate, ReplicateSource],
            done: Callable[[UnitOutcome], None], progress: Optional[Progress] = None) -> None: ...


class ModelCache:
    """Builds the models of one replicate, keeping the ``keep`` most recently used."""

    def __init__(self, src: ReplicateSource, keep: int = 2) -> None:
        self.src, self.keep = src, keep
        self._cache: list[tuple[str, ModelHandle]] = []

    def get(self, model: ModelRef) -> ModelHandle:
        for k, h in self._cache:
            if k == model.key:
                return h
        h = self._build(model)
        self._cache = (self._cache + [(model.key, h)])[-self.keep:]
        return h

    def _build(self, model: ModelRef) -> ModelHandle:
        from lensft.graft import graft_model, variant_model

        opts = self.src.load
        if model.is_mix:
            h = load_model(self.src.mixes[float(model.long_fraction)], opts, label=model.label)  # type: ignore[arg-type]
        elif model.kind == "graft":
            h = graft_model(self.src.triple, model.graft, opts)  # type: ignore[arg-type]
        else:
            h = variant_model(self.src.triple, model.variant, opts)  # type: ignore[arg-type]
        h.provenance.label = model.label
        return h


def run_probe(plan: UnitPlan, prompts: PromptSet, models: ModelCache) -> ProbeResult:
    """Run a unit's probe on its model (a pair probe on the model as host and the donor)."""
    from lensft.probes.registry import get_probe

    probe = get_probe(plan.probe)
    settings = probe.Settings(**plan.settings)
    handle = models.get(plan.model)
    if plan.donor is not None:
        result = probe.run_pair(handle, models.get(plan.donor), prompts, settings)
    else:
        result = probe.run(handle, prompts, settings)
    result.model = handle.provenance.model_copy(deep=True)
    return result


def first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def execute(task: UnitTask, models: ModelCache) -> UnitOutcome:
    """Run one task; a failure becomes the outcome's error (``LENSFT_DEBUG=1`` re-raises it)."""
    t0 = time.perf_counter()
    try:
        result = run_probe(task.plan, task.prompts, models)
    except Exception as e:
        if os.environ.get("LENSFT_DEBUG"):
            raise
        log.error("unit %s failed: %s", task.where, first_line(e))
        return UnitOutcome(task, None, first_line(e), time.perf_counter() - t0)
    return UnitOutcome(task, result, None, time.perf_counter() - t0)


def execute_anywhere(task: UnitTask) -> ProbeResult:
    """Run one task in a fresh process (a remote worker): open its replicate from its paths.

    Raises whatever the probe raises, so the caller (e.g. Ray) can retry and report it.
    """
    src = source_from_paths(task.paths)
    try:
        return run_probe(task.plan, task.prompts, ModelCache(src))
    finally:
        src.triple.release()


@dataclass
class LocalExecutor:
    """Runs tasks one after another in this process (the default executor)."""

    caches: dict[Replicate, ModelCache] = field(default_factory=dict)

    def run(self, tasks: Sequence[UnitTask], sources: dict[Replicate, ReplicateSource],
            done: Callable[[UnitOutcome], None], progress: Optional[Progress] = None) -> None:
        for t in tasks:
            cache = self.caches.setdefault(t.plan.replicate, ModelCache(sources[t.plan.replicate]))
            if progress is not None:
                progress.started(t)
            outcome = execute(t, cache)
            done(outcome)
            if progress is not None:
                progress.finished(outcome)


class StudyProgress:
    """A rich progress line: units done of all, the unit now running, failures; or nothing."""

    def __init__(self, console: Any, total: int) -> None:
        self.bar, self.failed, self.running = None, 0, 0
        if console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.fields[what]}[/]"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=console)
            self.task = self.bar.add_task("study", total=total, what="", state="")

    def __enter__(self) -> "StudyProgress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _state(self) -> str:
        return f"{self.running} running" + (f", [red]{self.failed} failed[/]" if self.failed else "")

    def started(self, task: UnitTask) -> None:
        self.running += 1
        if self.bar is not None:
            self.bar.update(self.task, what=task.where, state=self._state())

    def finished(self, outcome: UnitOutcome) -> None:
        self.running = max(0, self.running - 1)
        self.failed += outcome.error is not None
        if self.bar is not None:
            self.bar.update(self.task, advance=1, state=self._state())

    def skip(self, n: int = 1) -> None:
        """Count cached units as done."""
        if self.bar is not None:
            self.bar.update(self.task, advance=n)
