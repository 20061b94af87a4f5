"""Resolve a study's replicates: the organism (built or cached) or a user triple, with prompt sets.

Each :class:`ReplicateSource` is one triple (base optional, short arm, long arm), the organism's
mixes of that replicate, and the prompt sets by role. Tensors are read lazily and cached on the
triple, so the grafts of a step share the checkpoints' tensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lensft.checkpoints.load import load_triple
from lensft.checkpoints.triple import CheckpointTriple
from lensft.devices import LoadOptions
from lensft.errors import LensftError
from lensft.hashing import sha256_file
from lensft.prompts import PromptSet, combine, read_prompt_set
from lensft.study import defaults
from lensft.study.config import PROMPT_ROLES, StudyConfig
from lensft.study.plan import Available
from lensft.study.record import ArmTraining, ModelRef, Replicate
from lensft.variants import Variant

log = logging.getLogger(__name__)

#: Organism prompt sets that play each role (the organism's data/<name>.jsonl).
ORGANISM_ROLES = {"needle": "needle", "conflict": "conflict", "spread": "arithmetic", "ffn": "fact_recall"}
ORGANISM_TASKS = ("fact_recall", "arithmetic", "cloze", "reading", "fact_recall_seen")


@dataclass(frozen=True)
class SourcePaths:
    """A replicate's checkpoint directories (resolved): enough to rebuild its models anywhere that
    sees the same filesystem (a Ray worker on a shared filesystem)."""

    replicate: Replicate
    short: str
    long: str
    base: Optional[str] = None
    mixes: tuple[tuple[float, str], ...] = ()
    load: LoadOptions = LoadOptions()


def source_from_paths(paths: SourcePaths) -> ReplicateSource:
    """Open a replicate from its paths (no prompt sets: a task carries its own)."""
    triple = load_triple(base=paths.base, short=paths.short, long=paths.long, check=False)
    return ReplicateSource(paths.replicate, triple, {f: Path(p) for f, p in paths.mixes}, load=paths.load)


@dataclass
class ReplicateSource:
    """One replicate's checkpoints (lazily loaded triple plus mixes) and prompt sets by role."""

    replicate: Replicate
    triple: CheckpointTriple
    mixes: dict[float, Path] = field(default_factory=dict)
    prompts: dict[str, PromptSet] = field(default_factory=dict)
    is_organism: bool = False
    organism_dir: Optional[Path] = None
    training: list[ArmTraining] = field(default_factory=list)
    load: LoadOptions = field(default_factory=LoadOptions)

    def paths(self) -> SourcePaths:
        t = self.triple
        base = str(t[Variant.BASE].path.resolve()) if Variant.BASE in t.variants else None
        return SourcePaths(self.replicate, str(t[Variant.SHORT].path.resolve()), str(t[Variant.LONG].path.resolve()), base,
                           tuple((f, str(p.resolve())) for f, p in sorted(self.mixes.items())), self.load)

    def available(self) -> Available:
        return Available(self.replicate, frozenset(self.triple.variants), tuple(sorted(self.mixes)),
                         self.triple.n_layers, self.is_organism)

    def checkpoints(self) -> dict[str, tuple[ModelRef, Path]]:
        """Every checkpoint directory of the replicate: ``{model key: (model, path)}``."""
        out = {ModelRef.of_variant(v).key: (ModelRef.of_variant(v), self.triple[v].path) for v in self.triple.variants}
        out.update({ModelRef.arm(f).key: (ModelRef.arm(f), p) for f, p in self.mixes.items()})
        return out

    def paths_of(self, model: ModelRef) -> list[Path]:
        """The checkpoint directories a model reads."""
        if model.is_mix:
            return [self.mixes[float(model.long_fraction)]]  # type: ignore[arg-type]
        return [self.triple[v].path for v in sorted(model.checkpoints(), key=lambda v: v.value)]


def fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of a checkpoint directory: resolved path and (name, size, mtime) of its files."""
    p = path.resolve()
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".safetensors", ".json", ".bin"))
    return {"path": str(p), "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def weight_hashes(path: Path) -> dict[str, str]:
    """sha256 of every weight file of a checkpoint directory."""
    return {f.name: sha256_file(f) for f in sorted(path.resolve().glob("*.safetensors"))}


def _user_prompts(cfg: StudyConfig, role: str) -> Optional[PromptSet]:
    spec = cfg.prompts.get(role)
    if not spec:
        return None
    sets = [read_prompt_set(p.strip()) for p in spec.split(",") if p.strip()]
    return sets[0] if len(sets) == 1 else combine(role, sets)


def resolve_sources(cfg: StudyConfig, progress: Optional[Callable[..., None]] = None) -> list[ReplicateSource]:
    """The study's replicates: one per (world seed, SFT seed) of the organism, or the user triple."""
    load = LoadOptions.parse(device=cfg.device, dtype=cfg.dtype)
    if cfg.is_organism:
        sources = [src for s in cfg.seeds for src in _organism_sources(cfg, s, progress)]
    else:
        sources = [_triple_source(cfg)]
    for src in sources:
        src.load = load
    return sources


def _organism_prompts(cfg: StudyConfig, prompt_files: dict[str, Path]) -> dict[str, PromptSet]:
    sets = {name: read_prompt_set(p) for name, p in prompt_files.items()}
    prompts: dict[str, PromptSet] = {}
    tasks = [sets[n] for n in ORGANISM_TASKS if n in sets]
    if tasks:
        prompts["tasks"] = combine("organism_tasks", tasks)
    prompts.update({role: sets[name] for role, name in ORGANISM_ROLES.items() if name in sets})
    for role in PROMPT_ROLES:
        user = _user_prompts(cfg, role)
        if user is not None:
            prompts[role] = user
    return prompts


def _organism_sources(cfg: StudyConfig, seed: int, progress: Optional[Callable[..., None]]) -> list[ReplicateSource]:
    """One replicate per SFT seed of the world ``seed``: the one base, that seed's arms and mixes."""
    from lensft import organism

    out = Path(cfg.organism_dir) / f"seed-{seed}" if cfg.organism_dir else None
    b = organism.build(cfg.organism, seed=seed, mixes=cfg.mixes or None, sft_seeds=cfg.sft_seeds, out=out,
                       progress=progress)
    wanted = {round(m, 4) for m in (cfg.mixes or b.config.mixes)}
    prompts = _organism_prompts(cfg, b.prompt_sets)
    sources = []
    for sft in range(cfg.sft_seeds):
        rep = Replicate(seed=seed, sft_seed=sft)
        mixes = {r.long_fraction: p for r, p in b.arms.items()
                 if r.is_mix and r.sft_seed == sft and round(r.long_fraction, 4) in wanted}
        triple = load_triple(base=b.base, short=b.arm(0.0, sft), long=b.arm(1.0, sft))
        sources.append(ReplicateSource(rep, triple, mixes, prompts, True, b.root, _arm_training(b, rep)))
    return sources


def _arm_training(b, rep: Replicate) -> list[ArmTraining]:  # b: OrganismBuild
    """What each arm of ``rep`` trained on, from the build manifest."""
    return [ArmTraining(replicate=rep, model=ModelRef.arm(a.arm.long_fraction), tokens=a.training.tokens,
                        answer_tokens=a.training.answer_tokens, examples=a.examples)
            for a in b.manifest.arms if a.arm.sft_seed == rep.sft_seed]


def _triple_source(cfg: StudyConfig) -> ReplicateSource:
    triple = load_triple(base=cfg.base, short=cfg.short or "", long=cfg.long or "")
    prompts = {role: ps for role in PROMPT_ROLES if (ps := _user_prompts(cfg, role)) is not None}
    prompts.setdefault("tasks", defaults.task_set())
    if "needle" not in prompts:
        from transformers import AutoTokenizer

        prompts["needle"] = defaults.needle_set(AutoTokenizer.from_pretrained(triple["short"].path, local_files_only=True))
    try:
        prompts.setdefault("conflict", defaults.conflict_set())
    except (LensftError, FileNotFoundError) as e:  # the default set ships with the knowledge probe
        log.warning("no default conflict set: %s", e)
    prompts.setdefault("spread", prompts["tasks"])
    prompts.setdefault("ffn", prompts["tasks"])
    return ReplicateSource(Replicate(), triple, {}, prompts, False)

