"""The study's experiments as steps: each step plans *units* (one probe on one model and one
prompt set) and every unit produces one :class:`~lensft.results.ProbeResult`.

Models of a step are described by :class:`ModelSpec` (a checkpoint of the triple, an in-memory
graft of it, or an organism hybrid-mix checkpoint) and built by the runner through
:func:`lensft.graft.variant_model`, :func:`lensft.graft.graft_model` and
:func:`lensft.handle.load_model`, so a sweep reuses the triple's loaded tensors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from lensft.graft import GraftSpec
from lensft.prompts import PromptSet, make_prompt_set

ARMS = ("short", "long")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a study.

    ``kind`` is ``variant`` (a checkpoint of the triple: ``variant`` names it), ``graft`` (``mha``
    and ``ffn`` sources, ``host`` the rest, optional ``layers`` band ``"a:b"``) or ``mix`` (the
    organism's hybrid arm with long-data fraction ``mix``). ``tags`` are what the report groups by.
    """

    kind: str
    label: str
    variant: Optional[str] = None
    mha: Optional[str] = None
    ffn: Optional[str] = None
    host: Optional[str] = None
    layers: Optional[str] = None
    mix: Optional[float] = None
    tags: tuple[tuple[str, Any], ...] = ()

    def identity(self) -> dict[str, Any]:
        """What determines the model's weights (the label and tags excluded)."""
        return {k: getattr(self, k) for k in ("kind", "variant", "mha", "ffn", "host", "layers", "mix")}

    def graft_spec(self) -> GraftSpec:
        return GraftSpec.build(mha=self.mha or "", ffn=self.ffn or "", host=self.host, layers=self.layers)

    def sources(self) -> set[str]:
        """The triple's checkpoints this model reads (empty for a mix)."""
        if self.kind == "variant":
            return {self.variant or ""}
        if self.kind == "graft":
            return {s for s in (self.mha, self.ffn, self.host) if s}
        return set()

    def as_dict(self) -> dict[str, Any]:
        d = {"label": self.label, **{k: v for k, v in self.identity().items() if v is not None}}
        d["tags"] = dict(self.tags)
        return d


def variant(v: str, **tags: Any) -> ModelSpec:
    return ModelSpec(kind="variant", label=v, variant=v, tags=tuple(sorted({"mha": v, "ffn": v, **tags}.items())))


def graft(mha: str, ffn: str, host: Optional[str] = None, layers: Optional[str] = None, **tags: Any) -> ModelSpec:
    if mha == ffn and (host is None or host == mha):
        return variant(mha, **tags)
    spec = GraftSpec.build(mha=mha, ffn=ffn, host=host, layers=layers)
    return ModelSpec(kind="graft", label=spec.label, mha=mha, ffn=ffn, host=str(spec.host), layers=layers,
                     tags=tuple(sorted({"mha": mha, "ffn": ffn, **tags}.items())))


def mix(fraction: float, **tags: Any) -> ModelSpec:
    return ModelSpec(kind="mix", label=f"mix-{fraction:.2f}", mix=fraction, tags=tuple(sorted({"long_fraction": fraction, **tags}.items())))


@dataclass
class StudySource:
    """The models and prompt sets of one seed: a triple's variants, mix checkpoints, prompt sets by role."""

    seed: int
    variants: list[str]
    n_layers: int
    mixes: dict[float, Path] = field(default_factory=dict)
    prompts: dict[str, PromptSet] = field(default_factory=dict)
    is_organism: bool = False


@dataclass
class Unit:
    """One probe run: ``probe`` on ``model`` with prompt set ``role`` (capped at ``max_items``)."""

    step: str
    seed: int
    model: ModelSpec
    probe: str
    role: str
    settings: dict[str, Any]
    max_items: Optional[int] = None
    donor: Optional[ModelSpec] = None


@dataclass
class StepPlan:
    """A step's units, or why it (or part of it) was skipped."""

    name: str
    title: str
    units: list[Unit] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
def arm_models(src: StudySource, *, with_base: bool = True, with_mixes: bool = True) -> list[ModelSpec]:
    """base (when present), short, the mixes in increasing long fraction, long."""
    out = [variant("base", long_fraction=None)] if with_base and "base" in src.variants else []
    out.append(variant("short", long_fraction=0.0))
    if with_mixes:
        out += [mix(m) for m in sorted(src.mixes)]
    out.append(variant("long", long_fraction=1.0))
    return out


def _mix_note(src: StudySource, what: str) -> list[str]:
    if src.is_organism:
        return [] if src.mixes else [f"{what}: no hybrid mixes were built (pass --mix 0.5)"]
    return [f"{what}: hybrid mixes skipped: they are organism-only (a user triple has no mixed-data SFT checkpoints)"]


def bands(n_layers: int, width: int) -> list[str]:
    """Layer bands ``"a:b"`` of ``width`` layers covering ``0 .. n_layers-1``."""
    return [f"{a}:{min(a + width, n_layers)}" for a in range(0, n_layers, width)]


def plan_short_tasks(src: StudySource, cfg: dict[str, Any], max_items: Optional[int]) -> StepPlan:
    p = StepPlan("short_tasks", "Short-task accuracy of every arm (Table 1, Figure 7)")
    p.units = [Unit(p.name, src.seed, m, "short_tasks", "tasks", cfg, max_items) for m in arm_models(src)]
    p.skipped += _mix_note(src, "short-task accuracy")
    return p


def plan_module_grid(src: StudySource, cfg: dict[str, Any], max_items: Optional[int]) -> StepPlan:
    p = StepPlan("module_grid", "2x2 module grid: MHA x FFN from short / long (Figures 1-2)")
    for m in ARMS:
        for f in ARMS:
            p.units.append(Unit(p.name, src.seed, graft(m, f), "short_tasks", "tasks", cfg, max_items))
    return p


def plan_layer_sweep(src: StudySource, cfg: dict[str, Any], max_items: Optional[int], band: int = 1) -> StepPlan:
    p = StepPlan("layer_sweep", "Per-layer swap sweep: the other arm's MHA or FFN in one layer band")
    for host in ARMS:
        other = "long" if host == "short" else "short"
        for block in ("mha", "ffn"):
            for b in bands(src.n_layers, band):
                m, f = (other, host) if block == "mha" else (host, other)
                spec = graft(m, f, host=host, layers=b, sweep_host=host, block=block, band=b)
                p.units.append(Unit(p.name, src.seed, spec, "short_tasks", "tasks", cfg, max_items))
    return p


def _arm_step(name: str, title: str, probe: str, prompts: str, what: str):
    """A step that runs one probe on every arm of the source (base, short, long, mixes)."""

    def plan(src: StudySource, cfg: dict[str, Any], max_items: Optional[int]) -> StepPlan:
        p = StepPlan(name, title)
        p.units = [Unit(p.name, src.seed, m, probe, prompts, cfg, max_items) for m in arm_models(src)]
        p.skipped += _mix_note(src, what)
        return p

    plan.__name__ = f"plan_{name}"
    return plan


plan_attention_spread = _arm_step("attention_spread", "Attention entropy per phase, layer and head (Figures 4, 11, 12)",
                                  "attention_spread", "spread", "attention spread")
plan_retrieval = _arm_step("retrieval", "Retrieval-head scores per layer and head (Figures 3, 9)",
                           "retrieval_heads", "needle", "retrieval heads")
plan_ffn = _arm_step("ffn_activations", "FFN activation mean, variance and sparsity per layer (Figures 5, 10)",
                     "ffn_activations", "ffn", "FFN activations")


def plan_knowledge(src: StudySource, cfg: dict[str, Any], max_items: Optional[int]) -> StepPlan:
    p = StepPlan("knowledge", "Knowledge preference of arms, swap-grid variants and mixes (Table 6, Figure 6)")
    models = arm_models(src) + [graft("long", "short"), graft("short", "long")]
    p.units = [Unit(p.name, src.seed, m, "knowledge_preference", "conflict", cfg, max_items) for m in models]
    p.skipped += _mix_note(src, "knowledge preference")
    return p


class PatchSettings(BaseModel):
    """Settings of the patching step (arguments of :func:`lensft.probes.patching.patch_across`)."""

    model_config = ConfigDict(extra="forbid")

    component: Literal["mha", "ffn", "both"] = "both"
    mode: Literal["each", "all", "both"] = "both"
    metric: Literal["auto", "margin", "answer_logprob"] = "auto"
    batch_size: int = Field(8, ge=1)


def plan_patching(src: StudySource, cfg: dict[str, Any], max_items: Optional[int]) -> StepPlan:
    p = StepPlan("patching", "Cross-checkpoint activation patching on conflict items: where the preference is decided")
    for receiver, donor in (("short", "long"), ("long", "short")):
        p.units.append(Unit(p.name, src.seed, variant(receiver), "patch_across", "conflict", cfg, max_items,
                            donor=variant(donor)))
    return p


PLANNERS: dict[str, Callable[..., StepPlan]] = {
    "short_tasks": plan_short_tasks,
    "module_grid": plan_module_grid,
    "layer_sweep": plan_layer_sweep,
    "attention_spread": plan_attention_spread,
    "retrieval": plan_retrieval,
    "ffn_activations": plan_ffn,
    "knowledge": plan_knowledge,
    "patching": plan_patching,
}


# ------------------------------------------------------------------------------------------
def subset(ps: PromptSet, max_items: Optional[int]) -> PromptSet:
    """At most ``max_items`` items *per task* (items without a task field: per set), in file order."""
    if max_items is None:
        return ps
    counts: dict[str, int] = {}
    items = []
    for it in ps.items:
        t = getattr(it, "task", "") or ""
        if counts.get(t, 0) < max_items:
            counts[t] = counts.get(t, 0) + 1
            items.append(it)
    if len(items) == len(ps.items):
        return ps
    h = ps.header
    return make_prompt_set(h.name, h.version, h.kind, items, description=h.description, chat=h.chat)


def combine(name: str, sets: list[PromptSet]) -> PromptSet:
    """One prompt set holding every item of ``sets`` (all of one kind); version = content hash."""
    kinds = {s.header.kind for s in sets}
    if len(kinds) != 1:
        raise ValueError(f"cannot combine prompt sets of kinds {sorted(kinds)}")
    items = [it for s in sets for it in s.items]
    desc = "; ".join(f"{s.header.name} v{s.header.version}" for s in sets)
    tmp = make_prompt_set(name, "0", kinds.pop(), items, description=desc, chat=sets[0].header.chat)
    return make_prompt_set(name, content_hash(tmp)[:12], tmp.header.kind, items, description=desc, chat=tmp.header.chat)


def content_hash(ps: PromptSet) -> str:
    """sha256 of a prompt set's header and items (its identity for the result cache)."""
    blob = json.dumps(ps.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
