"""Run a study: plan every replicate's steps, run each unit (or take its cached result), write the record.

Layout of a results directory::

    study.yaml           the validated StudyConfig
    manifest.json        the typed study record (lensft.study.record.StudyRecord)
    results/<key>.json   one ProbeResult per unit; <key> hashes the probe, its settings, the model
                         (and donor), their checkpoints' fingerprints and the prompt set's content,
                         so an interrupted study resumes and a changed step reruns alone
    hashes.json          sha256 of checkpoint weight files, cached by file fingerprint
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from lensft.atomic import remove_stale, write_json_atomic
from lensft.checkpoints.outputs import refuse_inside_inputs
from lensft.errors import LensftError
from lensft.hashing import sha256_json
from lensft.locks import locked
from lensft.prompts import PromptSet, cap_per_task, content_hash
from lensft.results import RESULT_SCHEMA_VERSION, ProbeResult, load_result, save_result
from lensft.study.config import STEP_NAMES, StudyConfig
from lensft.study.execute import Executor, LocalExecutor, StudyProgress, UnitOutcome, UnitTask, first_line
from lensft.study.plan import PLANNERS, StepPlan, UnitPlan
from lensft.study.record import (CheckpointRecord, PromptSetRecord, StepRecord, StudyRecord, StudyRecordError,
                                 UnitRecord, MANIFEST)
from lensft.study.sources import ReplicateSource, fingerprint, resolve_sources, weight_hashes

log = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    """What a study run produced: its record and, once written, the report's path."""

    out: Path
    record: StudyRecord
    report: Optional[Path] = None

    @property
    def failures(self) -> list[str]:
        return self.record.failures

    @property
    def step_seconds(self) -> dict[str, float]:
        return {s.name: s.seconds for s in self.record.steps}


def _check_plan(plan: StepPlan, src: ReplicateSource) -> StepPlan:
    """Drop units whose probe, prompt set or checkpoints are missing; say why in ``skipped``."""
    from lensft.probes.registry import get_probe

    keep, reasons = [], []
    for u in plan.units:
        try:
            probe = get_probe(u.probe)
        except (LensftError, ImportError) as e:
            reasons.append(f"{plan.name}: probe {u.probe!r} is not available ({e})")
            continue
        ps = src.prompts.get(u.role)
        if ps is None:
            reasons.append(f"{plan.name}: no {u.role!r} prompt set (give one for the {u.role!r} role)")
        elif ps.header.kind not in probe.kinds:
            reasons.append(f"{plan.name}: the {u.role!r} set is of kind {ps.header.kind}; {u.probe} takes {probe.kinds}")
        elif not all(m.checkpoints() <= set(src.triple.variants) for m in (u.model, u.donor) if m is not None):
            reasons.append(f"{plan.name}: {u.model.label} needs a checkpoint the triple lacks")
        else:
            keep.append(u)
    plan.units = keep
    plan.skipped += list(dict.fromkeys(reasons))
    return plan


def plan_steps(cfg: StudyConfig, src: ReplicateSource, only: Optional[set[str]] = None) -> list[StepPlan]:
    """The steps of one replicate, each with its units and skip reasons."""
    plans = []
    for name in STEP_NAMES:
        if only is not None and name not in only:
            continue
        sc = cfg.step(name)
        if not sc.enabled:
            plans.append(StepPlan(name, name, skipped=[f"{name}: disabled in the study config"]))
            continue
        plans.append(_check_plan(PLANNERS[name](src.available(), dict(sc.settings), sc.max_items, cfg), src))
    for p in plans:  # the study-wide batch size, where a probe takes one
        p.units = [_with_batch_size(u, cfg) for u in p.units]
    return plans


def _with_batch_size(u: UnitPlan, cfg: StudyConfig) -> UnitPlan:
    from dataclasses import replace

    from lensft.probes.registry import get_probe

    if cfg.batch_size is None:
        return u
    try:
        fields = set(get_probe(u.probe).Settings.model_fields)
    except LensftError:
        return u
    return replace(u, settings={**({"batch_size": cfg.batch_size} if "batch_size" in fields else {}), **u.settings})


def prepare(u: UnitPlan, src: ReplicateSource) -> tuple[str, PromptSet]:
    """Validate a unit's settings; return its cache key and its (capped) prompt set."""
    from lensft.probes.registry import get_probe

    settings = get_probe(u.probe).Settings(**u.settings)
    ps = cap_per_task(src.prompts[u.role], u.max_items)
    models = [m for m in (u.model, u.donor) if m is not None]
    ident = {
        "schema": RESULT_SCHEMA_VERSION, "probe": u.probe, "settings": settings.model_dump(mode="json"),
        "models": [m.key for m in models], "checkpoints": [[fingerprint(p) for p in src.paths_of(m)] for m in models],
        "prompts": content_hash(ps), "load": src.load.model_dump(mode="json", exclude={"tokens_per_batch", "check_memory"}),
    }
    key = sha256_json({**ident, "identity": u.identity} if u.identity else ident)
    return key[:24], ps


def _unit(u: UnitPlan, key: str, ps: Optional[PromptSet], status: str, seconds: float = 0.0,
          error: Optional[str] = None) -> UnitRecord:
    return UnitRecord(step=u.step, replicate=u.replicate, model=u.model, donor=u.donor, probe=u.probe,
                      settings=u.settings, role=u.role, prompt_set=ps.name if ps else "",
                      n_items=len(ps.items) if ps else 0, key=key, status=status, error=error, seconds=round(seconds, 3))


def _cached(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        load_result(path)
        return True
    except LensftError:
        log.warning("cached result %s is unreadable; rerunning", path)
        return False


def triage(plans: list[tuple[ReplicateSource, UnitPlan]], out: Path) -> tuple[list[Optional[UnitRecord]], list[UnitTask]]:
    """Per unit (in plan order): its record if it is cached or cannot start, else a task to run."""
    records: list[Optional[UnitRecord]] = []
    tasks: list[UnitTask] = []
    for src, u in plans:
        try:
            key, ps = prepare(u, src)
        except Exception as e:  # bad settings for the probe
            records.append(_unit(u, "", None, "failed", error=f"{u.step}/{u.model.label}: {first_line(e)}"))
            continue
        if _cached(out / "results" / f"{key}.json"):
            records.append(_unit(u, key, ps, "cached"))
        else:
            records.append(None)
            tasks.append(UnitTask(u, key, ps, src.paths()))
    return records, tasks


def _checkpoint_records(out: Path, sources: list[ReplicateSource]) -> list[CheckpointRecord]:
    """sha256 of every checkpoint's weight files, cached in ``hashes.json`` by file fingerprint."""
    path = out / "hashes.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    records = []
    for s in sources:
        for model, p in s.checkpoints().values():
            fp, key = sha256_json(fingerprint(p)), str(p.resolve())
            if cache.get(key, {}).get("fingerprint") != fp:
                cache[key] = {"fingerprint": fp, "sha256": weight_hashes(p)}
            records.append(CheckpointRecord(replicate=s.replicate, model=model, path=key, sha256=cache[key]["sha256"]))
    write_json_atomic(path, cache)
    return records


def _previous(out: Path) -> Optional[StudyRecord]:
    if not (out / MANIFEST).exists():
        return None
    return StudyRecord.load(out)  # refuses another lensft's layout with a clear line


def run(config: StudyConfig, out: str | os.PathLike[str], *, console: Any = None, only: Optional[set[str]] = None,
        organism_progress: Optional[Callable[..., None]] = None, executor: Optional[Executor] = None) -> StudyOutcome:
    """Run (or resume) a study into ``out``; return its record.

    Args:
        config: the study.
        out: results directory (created; an existing one is resumed: cached units are not rerun).
        console: a rich Console for the progress display (None: no display).
        only: run only these steps (the others keep what the previous record lists).
        organism_progress: passed to :func:`lensft.organism.build` as ``progress``.
        executor: runs the units that are not cached (default: :class:`LocalExecutor`, one after
            another in this process). Every result is written here, atomically, as it arrives.

    Raises:
        StudyRecordError: ``out`` holds a study written by an incompatible lensft.
        DirectoryBusy: another process is writing ``out``.
        OutputInsideInput: ``out`` is inside (or holds) a checkpoint of the study.
    """
    out = Path(out)
    refuse_inside_inputs(out, {k: v for k in ("base", "short", "long", "organism_dir") if (v := getattr(config, k))})
    with locked(out, "lensft study"):
        remove_stale(out, recursive=True)  # temporaries of a killed run (none of them was installed)
        return _run(config, out, console, only, organism_progress, executor)


def _run(config: StudyConfig, out: Path, console: Any, only: Optional[set[str]],
         organism_progress: Optional[Callable[..., None]], executor: Optional[Executor]) -> StudyOutcome:
    old = _previous(out)
    t_start = time.perf_counter()
    sources = resolve_sources(config, organism_progress)  # inputs are checked before anything is written
    prepare_seconds = time.perf_counter() - t_start
    (out / "results").mkdir(parents=True, exist_ok=True)
    config.save(out / "study.yaml")
    checkpoints = _checkpoint_records(out, sources)
    plans = [(s, p) for s in sources for p in plan_steps(config, s, only)]
    units = [(s, u) for name in STEP_NAMES for s, p in plans if p.name == name for u in p.units]
    _export_task_sets(out, units)
    records, tasks = triage(units, out)
    unique = list({t.key: t for t in reversed(tasks)}.values())[::-1]  # a unit planned twice runs once
    ran = _run_tasks(unique, {s.replicate: s for s in sources}, out, executor or LocalExecutor(), console, len(units))
    firsts = {t.key: t for t in unique}
    pending = iter(tasks)
    for i, r in enumerate(records):
        if r is None:
            t = next(pending)
            rec = ran[t.key]
            records[i] = rec if firsts[t.key] is t else _unit(t.plan, t.key, t.prompts, "cached" if rec.status == "run"
                                                               else "failed", error=rec.error)
    steps = _step_records(plans, records, only, old)  # type: ignore[arg-type]
    record = StudyRecord(
        config=config, source="organism" if config.is_organism else "triple",
        replicates=[s.replicate for s in sources], n_layers=sources[0].triple.n_layers, checkpoints=checkpoints,
        training=[t for s in sources for t in s.training],
        organism_dirs={str(s.replicate.seed): str(s.organism_dir) for s in sources if s.organism_dir},
        prompt_sets=[PromptSetRecord(role=r, name=ps.name, version=ps.version, kind=ps.kind, n_items=len(ps.items),
                                     description=ps.header.description) for r, ps in sources[0].prompts.items()],
        steps=steps, failures=[u.error for s in steps for u in s.units if u.error],
        prepare_seconds=round(prepare_seconds, 3), total_seconds=round(time.perf_counter() - t_start, 3))
    record.save(out)
    for s in sources:
        s.triple.release()
    return StudyOutcome(out, record)


def _export_task_sets(out: Path, units: list[tuple[ReplicateSource, UnitPlan]]) -> None:
    """Write the task prompt set that ``lm_eval`` units score (the organism's task sets, asked for
    with ``organism`` in the benchmarks step) as an lm-eval task directory,
    ``lm_eval_tasks/seed-<seed>/``: the same export the probe scores, for ``lensft eval`` on other
    models (``--include-path`` that directory, ``--tasks`` its group)."""
    from lensft.evaluation.export import export_task_dir

    done: set[int] = set()
    for src, u in units:
        if u.probe != "lm_eval" or u.settings.get("tasks") or src.replicate.seed in done:
            continue
        done.add(src.replicate.seed)
        (out / "lm_eval_tasks").mkdir(exist_ok=True)
        export_task_dir([cap_per_task(src.prompts[u.role], u.max_items)], out / "lm_eval_tasks" / f"seed-{src.replicate.seed}",
                        force=True)


def _run_tasks(tasks: list[UnitTask], sources: dict, out: Path, executor: Executor, console: Any,
               total: int) -> dict[str, UnitRecord]:
    """Run the tasks; save each result as it arrives; return their records by cache key."""
    done: dict[str, UnitRecord] = {}

    def save(o: UnitOutcome) -> None:
        u = o.task.plan
        if o.result is not None:
            save_result(o.result, out / "results" / f"{o.task.key}.json")
            done[o.task.key] = _unit(u, o.task.key, o.task.prompts, "run", o.seconds)
        else:
            done[o.task.key] = _unit(u, o.task.key, o.task.prompts, "failed", o.seconds, f"{o.task.where}: {o.error}")

    with StudyProgress(console, total) as prog:
        prog.skip(total - len(tasks))
        executor.run(tasks, sources, save, prog)
    return done


def _step_records(plans: list, records: list[UnitRecord], only: Optional[set[str]],
                  old: Optional[StudyRecord]) -> list[StepRecord]:
    """Group unit records by step (plan order), keeping the previous run's other steps with ``only``."""
    steps, it = [], iter(records)
    for name in STEP_NAMES:
        step_plans = [p for _, p in plans if p.name == name]
        if not step_plans:
            continue
        units = [next(it) for p in step_plans for _ in p.units]
        skipped = list(dict.fromkeys(r for p in step_plans for r in p.skipped))
        steps.append(StepRecord(name=name, title=step_plans[0].title, units=units, skipped=skipped,
                                seconds=round(sum(u.seconds for u in units), 3)))
    if only is not None and old is not None:
        order = {n: k for k, n in enumerate(STEP_NAMES)}
        steps = sorted([s for s in old.steps if s.name not in only] + steps, key=lambda s: order.get(s.name, 99))
    return steps


def iter_results(out: str | os.PathLike[str]):  # -> Iterator[tuple[UnitRecord, ProbeResult]]
    """``(unit, result)`` for every unit of a results directory that has a result file."""
    out = Path(out)
    for u in StudyRecord.load(out).units():
        if u.file and (out / u.file).exists():
            yield u, load_result(out / u.file)


__all__ = ["StudyOutcome", "StudyRecordError", "iter_results", "plan_steps", "prepare", "run", "triage"]
