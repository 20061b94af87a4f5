"""Resolve a study's models and prompt sets: the organism (built or cached) or a user triple."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lensft.checkpoints.load import load_triple
from lensft.checkpoints.triple import CheckpointTriple
from lensft.errors import LensftError
from lensft.prompts import PromptSet, read_prompt_set
from lensft.study import defaults
from lensft.study.config import StudyConfig
from lensft.study.steps import StudySource, combine

log = logging.getLogger(__name__)

#: Organism prompt sets that play each role (the organism's data/<name>.jsonl).
ORGANISM_ROLES = {"needle": "needle", "conflict": "conflict", "spread": "arithmetic", "ffn": "fact_recall"}
ORGANISM_TASKS = ("fact_recall", "arithmetic", "cloze", "reading", "fact_recall_seen")


@dataclass
class LoadedSource:
    """A seed's triple (tensors loaded lazily, cached) and its :class:`StudySource` description."""

    source: StudySource
    triple: CheckpointTriple
    checkpoints: dict[str, Path] = field(default_factory=dict)
    organism_root: Optional[Path] = None


def fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of a checkpoint directory: resolved path and (name, size, mtime) of its files."""
    p = path.resolve()
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".safetensors", ".json", ".bin"))
    return {"path": str(p), "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def weight_hashes(path: Path) -> dict[str, str]:
    """sha256 of every weight file of a checkpoint directory."""
    out = {}
    for f in sorted(path.resolve().glob("*.safetensors")):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        out[f.name] = h.hexdigest()
    return out


def _read_role(cfg: StudyConfig, role: str) -> Optional[PromptSet]:
    spec = cfg.prompts.get(role)
    if not spec:
        return None
    sets = [read_prompt_set(p.strip()) for p in spec.split(",") if p.strip()]
    return sets[0] if len(sets) == 1 else combine(role, sets)


def resolve_sources(cfg: StudyConfig, progress: Any = None) -> list[LoadedSource]:
    """One :class:`LoadedSource` per seed (organism) or a single one (user triple)."""
    if cfg.is_organism:
        return [_organism_source(cfg, s, progress) for s in cfg.seeds]
    return [_triple_source(cfg)]


def _organism_source(cfg: StudyConfig, seed: int, progress: Any) -> LoadedSource:
    from lensft import organism

    out = Path(cfg.organism_dir) / f"seed-{seed}" if cfg.organism_dir else None
    mixes = cfg.mixes or None
    b = organism.build(cfg.organism, seed=seed, mixes=mixes, out=out, progress=progress)
    triple = load_triple(base=b.base, short=b.short, long=b.long)
    wanted = set(cfg.mixes) if cfg.mixes else set(b.config.mixes)
    mix_paths = {f: p for f, p in b.arms().items() if 0.0 < f < 1.0 and round(f, 4) in {round(m, 4) for m in wanted}}
    sets = {name: read_prompt_set(p) for name, p in b.prompt_sets.items()}
    prompts: dict[str, PromptSet] = {}
    tasks = [sets[n] for n in ORGANISM_TASKS if n in sets]
    if tasks:
        prompts["tasks"] = combine("organism_tasks", tasks)
    for role, name in ORGANISM_ROLES.items():
        if name in sets:
            prompts[role] = sets[name]
    for role in ("tasks", *ORGANISM_ROLES):
        user = _read_role(cfg, role)
        if user is not None:
            prompts[role] = user
    src = StudySource(seed=seed, variants=[str(v) for v in triple.variants], n_layers=triple.n_layers,
                      mixes=mix_paths, prompts=prompts, is_organism=True)
    cps = {"base": b.base, "short": b.short, "long": b.long, **{f"mix-{f:.2f}": p for f, p in mix_paths.items()}}
    return LoadedSource(src, triple, cps, organism_root=b.root)


def _triple_source(cfg: StudyConfig) -> LoadedSource:
    triple = load_triple(base=cfg.base, short=cfg.short or "", long=cfg.long or "")
    prompts: dict[str, PromptSet] = {}
    for role in ("tasks", "needle", "conflict", "spread", "ffn"):
        user = _read_role(cfg, role)
        if user is not None:
            prompts[role] = user
    if "tasks" not in prompts:
        prompts["tasks"] = defaults.task_set()
    prompts.setdefault("needle", defaults.needle_set())
    try:
        prompts.setdefault("conflict", defaults.conflict_set())
    except (LensftError, FileNotFoundError) as e:  # the default set ships with the knowledge probe
        log.warning("no default conflict set: %s", e)
    prompts.setdefault("spread", prompts["tasks"])
    prompts.setdefault("ffn", prompts["tasks"])
    src = StudySource(seed=0, variants=[str(v) for v in triple.variants], n_layers=triple.n_layers,
                      prompts=prompts, is_organism=False)
    cps = {str(v): triple[v].path for v in triple.variants}
    return LoadedSource(src, triple, cps)
