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

from lensft.atomic import write_json_atomic
from lensft.errors import LensftError
from lensft.hashing import sha256_json
from lensft.prompts import PromptSet, cap_per_task, content_hash
from lensft.results import RESULT_SCHEMA_VERSION, ProbeResult, load_result, save_result
from lensft.study.config import STEP_NAMES, StudyConfig
from lensft.study.execute import ModelCache, StudyProgress, run_probe
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


@dataclass(frozen=True)
class Prepared:
    """A unit ready to run: its plan, cache key, probe, validated settings and (capped) prompt set."""

    plan: UnitPlan
    key: str
    probe: Any
    settings: Any
    prompts: PromptSet


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
    return plans


def prepare(u: UnitPlan, src: ReplicateSource) -> Prepared:
    """Validate a unit's settings and compute its cache key."""
    from lensft.probes.registry import get_probe

    probe = get_probe(u.probe)
    settings = probe.Settings(**u.settings)
    ps = cap_per_task(src.prompts[u.role], u.max_items)
    models = [m for m in (u.model, u.donor) if m is not None]
    key = sha256_json({
        "schema": RESULT_SCHEMA_VERSION, "probe": u.probe, "settings": settings.model_dump(mode="json"),
        "models": [m.key for m in models], "checkpoints": [[fingerprint(p) for p in src.paths_of(m)] for m in models],
        "prompts": content_hash(ps),
    })
    return Prepared(u, key[:24], probe, settings, ps)


def _unit(u: UnitPlan, key: str, ps: Optional[PromptSet], status: str, seconds: float = 0.0,
          error: Optional[str] = None) -> UnitRecord:
    return UnitRecord(step=u.step, replicate=u.replicate, model=u.model, donor=u.donor, probe=u.probe,
                      settings=u.settings, role=u.role, prompt_set=ps.name if ps else "",
                      n_items=len(ps.items) if ps else 0, key=key, status=status, error=error, seconds=round(seconds, 3))


def run_unit(u: UnitPlan, src: ReplicateSource, models: ModelCache, out: Path, failures: list[str]) -> UnitRecord:
    """Take a unit's cached result or run it and save the result; a failure is recorded, not raised."""
    where = f"{u.step}/{u.model.label} ({u.replicate.label})"
    try:
        p = prepare(u, src)
    except Exception as e:  # bad settings for the probe
        failures.append(msg := f"{where}: {type(e).__name__}: {_first_line(e)}")
        return _unit(u, "", None, "failed", error=msg)
    path = out / "results" / f"{p.key}.json"
    if path.exists():
        try:
            load_result(path)
            return _unit(u, p.key, p.prompts, "cached")
        except LensftError:
            log.warning("cached result %s is unreadable; rerunning", path)
    t0 = time.perf_counter()
    try:
        result = run_probe(p.probe, p.settings, p.prompts, models, u.model, u.donor)
    except Exception as e:
        if os.environ.get("LENSFT_DEBUG"):
            raise
        failures.append(msg := f"{where}: {type(e).__name__}: {_first_line(e)}")
        log.error("unit failed: %s", msg)
        return _unit(u, p.key, p.prompts, "failed", error=msg)
    save_result(result, path)
    return _unit(u, p.key, p.prompts, "run", time.perf_counter() - t0)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


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


def run(config: StudyConfig, out: str | os.PathLike[str], *, console: Any = None,
        only: Optional[set[str]] = None, organism_progress: Optional[Callable[..., None]] = None) -> StudyOutcome:
    """Run (or resume) a study into ``out``; return its record.

    Args:
        config: the study.
        out: results directory (created; an existing one is resumed: cached units are not rerun).
        console: a rich Console for the progress display (None: no display).
        only: run only these steps (the others keep what the previous record lists).
        organism_progress: passed to :func:`lensft.organism.build` as ``progress``.

    Raises:
        StudyRecordError: ``out`` holds a study written by an incompatible lensft.
    """
    out = Path(out)
    old = _previous(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    config.save(out / "study.yaml")
    t_start = time.perf_counter()
    sources = resolve_sources(config, organism_progress)
    prepare_seconds = time.perf_counter() - t_start
    checkpoints = _checkpoint_records(out, sources)
    plans = {s.replicate: plan_steps(config, s, only) for s in sources}
    failures: list[str] = []
    steps: list[StepRecord] = []
    models = {s.replicate: ModelCache(s) for s in sources}
    with StudyProgress(console, sum(len(p.units) for ps in plans.values() for p in ps)) as prog:
        for name in (n for n in STEP_NAMES if only is None or n in only):
            t_step, units, skipped, title = time.perf_counter(), [], [], name
            for s in sources:
                plan = next(p for p in plans[s.replicate] if p.name == name)
                title = plan.title
                skipped += [r for r in plan.skipped if r not in skipped]
                for u in plan.units:
                    prog.show(u, len(sources) > 1)
                    units.append(run_unit(u, s, models[s.replicate], out, failures))
                    prog.advance()
            steps.append(StepRecord(name=name, title=title, units=units, skipped=skipped,
                                    seconds=round(time.perf_counter() - t_step, 3)))
            log.info("step %s: %d run, %d cached, %.1f s", name, steps[-1].n_run, steps[-1].n_cached, steps[-1].seconds)
    if only is not None and old is not None:  # keep the other steps of the previous run
        order = {n: k for k, n in enumerate(STEP_NAMES)}
        steps = sorted([s for s in old.steps if s.name not in only] + steps, key=lambda s: order.get(s.name, 99))
    first = sources[0]
    record = StudyRecord(
        config=config, source="organism" if config.is_organism else "triple",
        replicates=[s.replicate for s in sources], n_layers=first.triple.n_layers, checkpoints=checkpoints,
        training=[t for s in sources for t in s.training],
        organism_dirs={str(s.replicate.seed): str(s.organism_dir) for s in sources if s.organism_dir},
        prompt_sets=[PromptSetRecord(role=r, name=ps.name, version=ps.version, kind=ps.kind, n_items=len(ps.items),
                                     description=ps.header.description) for r, ps in first.prompts.items()],
        steps=steps, failures=failures, prepare_seconds=round(prepare_seconds, 3),
        total_seconds=round(time.perf_counter() - t_start, 3))
    record.save(out)
    for s in sources:
        s.triple.release()
    return StudyOutcome(out, record)


def iter_results(out: str | os.PathLike[str]):  # -> Iterator[tuple[UnitRecord, ProbeResult]]
    """``(unit, result)`` for every unit of a results directory that has a result file."""
    out = Path(out)
    for u in StudyRecord.load(out).units():
        if u.file and (out / u.file).exists():
            yield u, load_result(out / u.file)


__all__ = ["StudyOutcome", "StudyRecordError", "iter_results", "plan_steps", "prepare", "run", "run_unit"]
