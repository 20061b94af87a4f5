"""Run a study: plan the steps, run each unit (or take its cached result), write the manifest.

Layout of a results directory::

    study.yaml           the validated StudyConfig
    manifest.json        models (paths, sha256), steps (units, skips, wall time), lensft version
    results/<key>.json   one ProbeResult per unit; <key> hashes (probe, settings, model identity
                         and checkpoint fingerprints, prompt-set content), so an interrupted
                         study resumes and a changed step reruns alone
    hashes.json          sha256 of checkpoint weight files, cached by file fingerprint
    report.html, figures/ (written by :func:`lensft.report.render.write_report`)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from lensft import __version__
from lensft.errors import LensftError
from lensft.graft import graft_model, variant_model
from lensft.handle import ModelHandle, load_model
from lensft.results import RESULT_SCHEMA_VERSION, ProbeResult, load_result, save_result
from lensft.study.config import STEP_NAMES, StudyConfig
from lensft.study.sources import LoadedSource, fingerprint, resolve_sources, weight_hashes
from lensft.study.steps import PLANNERS, ModelSpec, StepPlan, Unit, content_hash, subset

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass
class StudyOutcome:
    """What a study run produced."""

    out: Path
    manifest: dict[str, Any]
    report: Optional[Path] = None
    failures: list[str] = field(default_factory=list)

    @property
    def step_seconds(self) -> dict[str, float]:
        return {s["name"]: s["seconds"] for s in self.manifest["steps"]}

    @property
    def skipped(self) -> list[str]:
        return [r for s in self.manifest["steps"] for r in s["skipped"]]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


class _Progress:
    """A rich progress line (step, model variant, prompt count) or nothing."""

    def __init__(self, console: Any, total: int):
        self.bar = None
        if console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.fields[step]}[/]"), TextColumn("{task.fields[model]}"),
                                TextColumn("[dim]{task.fields[prompts]}[/]"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=False)
            self.task = self.bar.add_task("study", total=total, step="", model="", prompts="")

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def show(self, step: str, model: str, n: int, seed: int, n_seeds: int) -> None:
        if self.bar is not None:
            label = f"{model} (seed {seed})" if n_seeds > 1 else model
            self.bar.update(self.task, step=step, model=label, prompts=f"{n} prompts")

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)


class _Models:
    """Builds study models from a source, keeping the last one (grafts share the triple's tensors)."""

    def __init__(self, src: LoadedSource, hashes: dict[str, dict[str, str]]):
        self.src, self.hashes = src, hashes
        self._cache: list[tuple[Any, ModelHandle]] = []  # the two most recent models

    def checkpoint(self, spec: ModelSpec) -> list[Path]:
        if spec.kind == "mix":
            return [self.src.source.mixes[spec.mix]]  # type: ignore[index]
        return [self.src.triple[v].path for v in sorted(spec.sources())]

    def get(self, spec: ModelSpec) -> ModelHandle:
        key = spec.identity()
        for k, h in self._cache:
            if k == key:
                return h
        self._cache = self._cache[-1:]
        if spec.kind == "variant":
            h = variant_model(self.src.triple, spec.variant or "")
        elif spec.kind == "graft":
            h = graft_model(self.src.triple, spec.graft_spec())
        else:
            h = load_model(self.src.source.mixes[spec.mix], label=spec.label)  # type: ignore[index]
        h.provenance.label = spec.label
        for p in self.checkpoint(spec):
            for f, d in self.hashes.get(str(p.resolve()), {}).items():
                h.provenance.file_hashes[f"{p.name}/{f}"] = d
        self._cache.append((key, h))
        return h


def plan_steps(cfg: StudyConfig, src: LoadedSource, only: Optional[set[str]] = None) -> list[StepPlan]:
    """The steps of one source, each with its units and skip reasons."""
    from lensft.probes.registry import get_probe

    plans = []
    for name in STEP_NAMES:
        sc = cfg.step(name)
        if only is not None and name not in only:
            continue
        if name not in PLANNERS:
            plans.append(StepPlan(name, _TITLES.get(name, name),
                                  skipped=[f"{name}: not run: this lensft has no study step for it yet"]))
            continue
        if not sc.enabled:
            plans.append(StepPlan(name, name, skipped=[f"{name}: disabled in the study config"]))
            continue
        kw: dict[str, Any] = {"band": cfg.band} if name == "layer_sweep" else {}
        plan = PLANNERS[name](src.source, dict(sc.settings), sc.max_items, **kw)
        keep, reasons = [], []
        for u in plan.units:
            try:
                probe = _PatchProbe() if u.probe == "patch_across" else get_probe(u.probe)
            except (LensftError, ImportError) as e:
                reasons.append(f"{name}: probe {u.probe!r} is not available ({e})")
                continue
            ps = src.source.prompts.get(u.role)
            if ps is None:
                reasons.append(f"{name}: no {u.role!r} prompt set (pass --prompts {u.role}=FILE)")
                continue
            if ps.header.kind not in probe.kinds:
                reasons.append(f"{name}: the {u.role!r} set is of kind {ps.header.kind}, {u.probe} takes {probe.kinds}")
                continue
            if u.model.kind != "mix" and not u.model.sources() <= set(src.source.variants):
                reasons.append(f"{name}: {u.model.label} needs a checkpoint the triple lacks")
                continue
            keep.append(u)
        plan.units = keep
        plan.skipped += list(dict.fromkeys(reasons))
        plans.append(plan)
    return plans


class _PatchProbe:
    """Adapter: :func:`lensft.probes.patching.patch_across` (receiver, donor) as a study probe."""

    kinds = ("conflict", "task")

    def __init__(self) -> None:
        from lensft.probes.patching import patch_across  # ImportError: patching is not available

        from lensft.study.steps import PatchSettings

        self.fn, self.Settings = patch_across, PatchSettings

    def run_pair(self, receiver: ModelHandle, donor: ModelHandle, prompts: Any, s: Any) -> ProbeResult:
        return self.fn(receiver, donor, prompts, s.component, metric=s.metric, mode=s.mode, batch_size=s.batch_size)


_TITLES = {"patching": "Cross-checkpoint activation patching: where the knowledge preference is decided"}


def unit_key(u: Unit, src: LoadedSource, models: _Models) -> tuple[str, Any]:
    """The cache key of a unit and the prompt set it runs on."""
    from lensft.probes.registry import get_probe

    probe = _PatchProbe() if u.probe == "patch_across" else get_probe(u.probe)
    settings = probe.Settings(**u.settings).model_dump(mode="json")
    ps = subset(src.source.prompts[u.role], u.max_items)
    key = _hash({
        "schema": RESULT_SCHEMA_VERSION, "probe": u.probe, "settings": settings, "model": u.model.identity(),
        "checkpoints": [fingerprint(p) for p in models.checkpoint(u.model)], "prompts": content_hash(ps),
        **({"donor": {"model": u.donor.identity(), "checkpoints": [fingerprint(p) for p in models.checkpoint(u.donor)]}}
           if u.donor is not None else {}),
    })
    return key[:24], (probe, probe.Settings(**u.settings), ps)


def run(config: StudyConfig, out: str | os.PathLike[str], *, console: Any = None,
        only: Optional[set[str]] = None, organism_progress: Optional[Callable[..., None]] = None) -> StudyOutcome:
    """Run (or resume) a study into ``out``; return the manifest and, if configured, the report path.

    Args:
        config: the study.
        out: results directory (created; an existing one is resumed, cached units are not rerun).
        console: a rich Console for the progress display (None = no display).
        only: run only these steps (others keep whatever results the manifest already lists).
        organism_progress: passed to :func:`lensft.organism.build` as ``progress``.
    """
    out = Path(out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    config.save(out / "study.yaml")
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    t0 = time.perf_counter()
    sources = resolve_sources(config, organism_progress)
    prep_seconds = time.perf_counter() - t0
    hashes = _checkpoint_hashes(out, sources)

    plans = {s.source.seed: plan_steps(config, s, only) for s in sources}
    total = sum(len(p.units) for ps in plans.values() for p in ps)
    old = _read_manifest(out)
    steps_out: list[dict[str, Any]] = []
    failures: list[str] = []
    n_seeds = len(sources)
    models = {s.source.seed: _Models(s, hashes) for s in sources}
    by_seed = {s.source.seed: s for s in sources}
    with _Progress(console, total) as prog:
        for i, name in enumerate(n for n in STEP_NAMES if only is None or n in only):
            t_step = time.perf_counter()
            entry: dict[str, Any] = {"name": name, "title": "", "units": [], "skipped": [], "seconds": 0.0,
                                     "n_run": 0, "n_cached": 0}
            for seed, seed_plans in plans.items():
                plan = next(p for p in seed_plans if p.name == name)
                entry["title"] = plan.title
                entry["skipped"] += [r for r in plan.skipped if r not in entry["skipped"]]
                for u in plan.units:
                    rec = _run_unit(u, by_seed[seed], models[seed], out, prog, n_seeds, failures)
                    entry["units"].append(rec)
                    entry["n_cached" if rec.get("cached") else "n_run"] += 1
                    prog.advance()
            entry["status"] = ("skipped" if not entry["units"] else "partial" if entry["skipped"] else "done")
            entry["seconds"] = round(time.perf_counter() - t_step, 3)
            steps_out.append(entry)
            log.info("step %s: %d run, %d cached, %.1f s", name, entry["n_run"], entry["n_cached"], entry["seconds"])
    if only is not None and old:  # keep the other steps' entries from the previous run
        kept = [s for s in old.get("steps", []) if s["name"] not in only]
        order = {n: k for k, n in enumerate(STEP_NAMES)}
        steps_out = sorted(kept + steps_out, key=lambda s: order.get(s["name"], 99))

    manifest = {
        "lensft_version": __version__,
        "study": config.name,
        "source": "organism" if config.is_organism else "triple",
        "organism": config.organism,
        "config": config.model_dump(mode="json"),
        "seeds": [s.source.seed for s in sources],
        "n_layers": sources[0].source.n_layers,
        "models": {str(s.source.seed): {name: {"path": str(p.resolve()), "sha256": hashes.get(str(p.resolve()), {})}
                                        for name, p in s.checkpoints.items()} for s in sources},
        "organism_dirs": {str(s.source.seed): str(s.organism_root) for s in sources if s.organism_root},
        "prompt_sets": {role: {"name": ps.header.name, "version": ps.header.version, "kind": ps.header.kind,
                               "n_items": len(ps.items), "description": ps.header.description}
                        for role, ps in sources[0].source.prompts.items()},
        "steps": steps_out,
        "prepare_seconds": round(prep_seconds, 3),
        "started": started,
        "total_seconds": round(time.perf_counter() - t_start, 3),
        "failures": failures,
    }
    _write_json(out / MANIFEST, manifest)
    outcome = StudyOutcome(out, manifest, failures=failures)
    for s in sources:
        s.triple.release()
    return outcome


def _run_unit(u: Unit, src: LoadedSource, models: _Models, out: Path, prog: _Progress, n_seeds: int,
              failures: list[str]) -> dict[str, Any]:
    rec: dict[str, Any] = {"seed": u.seed, "model": u.model.as_dict(), "probe": u.probe, "role": u.role}
    if u.donor is not None:
        rec["donor"] = u.donor.as_dict()
    try:
        key, (probe, settings, ps) = unit_key(u, src, models)
    except Exception as e:  # bad settings for the probe
        msg = f"{u.step}/{u.model.label}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        failures.append(msg)
        return {**rec, "error": msg}
    path = out / "results" / f"{key}.json"
    rec.update({"file": f"results/{key}.json", "prompt_set": ps.header.name, "n_items": len(ps.items)})
    prog.show(u.step, u.model.label, len(ps.items), u.seed, n_seeds)
    if path.exists():
        try:
            load_result(path)
            return {**rec, "cached": True, "seconds": 0.0}
        except LensftError:
            log.warning("cached result %s is unreadable; rerunning", path)
    t0 = time.perf_counter()
    try:
        handle = models.get(u.model)
        if u.donor is not None:
            result = probe.run_pair(handle, models.get(u.donor), ps, settings)
        else:
            result = probe.run(handle, ps, settings)
    except Exception as e:
        if os.environ.get("LENSFT_DEBUG"):
            raise
        msg = f"{u.step}/{u.model.label} (seed {u.seed}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.error("unit failed: %s", msg)
        failures.append(msg)
        return {**rec, "error": msg}
    result.model = handle.provenance.model_copy(deep=True)
    save_result(result, path)
    return {**rec, "cached": False, "seconds": round(time.perf_counter() - t0, 3)}


def _checkpoint_hashes(out: Path, sources: list[LoadedSource]) -> dict[str, dict[str, str]]:
    path = out / "hashes.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    result: dict[str, dict[str, str]] = {}
    for s in sources:
        for p in s.checkpoints.values():
            fp = _hash(fingerprint(p))
            key = str(p.resolve())
            if key not in cache or cache[key].get("fingerprint") != fp:
                cache[key] = {"fingerprint": fp, "sha256": weight_hashes(p)}
            result[key] = cache[key]["sha256"]
    _write_json(path, cache)
    return result


def _read_manifest(out: Path) -> dict[str, Any]:
    p = out / MANIFEST
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except json.JSONDecodeError:
        return {}


def iter_results(out: str | os.PathLike[str]) -> Iterator[tuple[dict[str, Any], dict[str, Any], ProbeResult]]:
    """``(step entry, unit record, result)`` for every unit with a result in a results directory."""
    out = Path(out)
    manifest = _read_manifest(out)
    for step in manifest.get("steps", []):
        for u in step["units"]:
            if "file" in u and (out / u["file"]).exists():
                yield step, u, load_result(out / u["file"])
