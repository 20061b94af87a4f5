"""The study's experiments as steps: each step plans *units* (one probe on one model, or on a
host/donor pair, with one prompt set) for one replicate.

Models are :class:`~lensft.study.record.ModelRef` values. The module grid follows the paper's
swap definition: a swapped model keeps everything but the swapped block from its *host*
(``short + long.mha`` is the short checkpoint with long's attention; ``short + long.ffn`` the
short checkpoint with long's feed-forward blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from lensft.graft.spec import GraftSpec
from lensft.study import benchmarks as B
from lensft.study.config import StudyConfig
from lensft.study.record import ModelRef, Replicate
from lensft.variants import Role, Variant

BLOCKS = (Role.MHA, Role.FFN)


@dataclass(frozen=True)
class UnitPlan:
    """One unit to run: ``probe`` on ``model`` (with ``donor`` for a pair probe), prompt set ``role``."""

    step: str
    replicate: Replicate
    model: ModelRef
    probe: str
    role: str
    settings: dict[str, Any] = field(default_factory=dict)
    max_items: Optional[int] = None
    donor: Optional[ModelRef] = None
    identity: dict[str, Any] = field(default_factory=dict)  # more of what determines the result (cache key)


@dataclass
class StepPlan:
    """A step's units, or why it (or part of it) was skipped."""

    name: str
    title: str
    units: list[UnitPlan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Available:
    """What one replicate offers: the triple's checkpoints, the mixes, the layer count."""

    replicate: Replicate
    variants: frozenset[Variant]
    mixes: tuple[float, ...]
    n_layers: int
    is_organism: bool


def swap(host: Variant, donor: Variant, block: Role, layers: Optional[str] = None) -> ModelRef:
    """``host + donor.block``: the host checkpoint with ``block`` (in ``layers``) from ``donor``."""
    blocks = {b.value: (donor if b is block else host).value for b in BLOCKS}
    return ModelRef.grafted(GraftSpec.build(host=host.value, layers=layers, **blocks))


def arm_models(av: Available, *, with_mixes: bool = True) -> list[ModelRef]:
    """base (when present), the short arm, the mixes by increasing long fraction, the long arm."""
    out = [ModelRef.base()] if Variant.BASE in av.variants else []
    out.append(ModelRef.arm(0.0))
    out += [ModelRef.arm(m) for m in sorted(av.mixes)] if with_mixes else []
    return out + [ModelRef.arm(1.0)]


def grid_models() -> list[ModelRef]:
    """The paper's four swaps (each arm as host, the other arm's MHA or FFN) and the two arms."""
    out = [ModelRef.arm(0.0), ModelRef.arm(1.0)]
    for host, donor in ((Variant.SHORT, Variant.LONG), (Variant.LONG, Variant.SHORT)):
        out += [swap(host, donor, b) for b in BLOCKS]
    return out


def bands(n_layers: int, width: int) -> list[str]:
    """Layer bands ``"a:b"`` of ``width`` layers covering ``0 .. n_layers-1``."""
    return [f"{a}:{min(a + width, n_layers)}" for a in range(0, n_layers, width)]


def _mix_note(av: Available, what: str) -> list[str]:
    if av.is_organism:
        return [] if av.mixes else [f"{what}: no mixes were built (build the organism with a mix, e.g. 0.5)"]
    return [f"{what}: mixes skipped: they are organism-only (a user triple has no mixed-data SFT checkpoints)"]


def _units(step: str, av: Available, models: list[ModelRef], probe: str, role: str, cfg: dict[str, Any],
           max_items: Optional[int]) -> list[UnitPlan]:
    return [UnitPlan(step, av.replicate, m, probe, role, cfg, max_items) for m in models]


def plan_short_tasks(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
    p = StepPlan("short_tasks", "Short-task accuracy of every arm (Table 1, Figure 7)")
    p.units = _units(p.name, av, arm_models(av), "short_tasks", "tasks", cfg, max_items)
    p.skipped += _mix_note(av, "short-task accuracy")
    return p


def plan_module_grid(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
    p = StepPlan("module_grid", "Module swaps: each arm as host with the other arm's MHA or FFN (Figures 1-2)")
    p.units = _units(p.name, av, grid_models(), "short_tasks", "tasks", cfg, max_items)
    return p


def plan_layer_sweep(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
    p = StepPlan("layer_sweep", "Per-layer swap sweep: the other arm's MHA or FFN in one layer band")
    models = [swap(host, donor, block, b)
              for host, donor in ((Variant.SHORT, Variant.LONG), (Variant.LONG, Variant.SHORT))
              for block in BLOCKS for b in bands(av.n_layers, study.band)]
    p.units = _units(p.name, av, models, "short_tasks", "tasks", cfg, max_items)
    return p


def _arm_step(name: str, title: str, probe: str, role: str, what: str) -> Callable[..., StepPlan]:
    """A step that runs one probe on every arm (base, short, mixes, long)."""

    def plan(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
        p = StepPlan(name, title)
        p.units = _units(name, av, arm_models(av), probe, role, cfg, max_items)
        p.skipped += _mix_note(av, what)
        return p

    plan.__name__ = f"plan_{name}"
    return plan


def plan_knowledge(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
    p = StepPlan("knowledge", "Knowledge preference of the arms, the module swaps and the mixes (Table 6, Figure 6)")
    models = arm_models(av) + grid_models()[2:]
    p.units = _units(p.name, av, models, "knowledge_preference", "conflict", cfg, max_items)
    p.skipped += _mix_note(av, "knowledge preference")
    return p


def plan_patching(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
    p = StepPlan("patching", "Activation patching across checkpoints on conflict items: where the preference is decided")
    for host, donor in ((0.0, 1.0), (1.0, 0.0)):
        p.units.append(UnitPlan(p.name, av.replicate, ModelRef.arm(host), "patching", "conflict", cfg, max_items,
                                donor=ModelRef.arm(donor)))
    return p


def benchmark_models(av: Available, groups: list[str], band: int) -> list[ModelRef]:
    """The models the benchmarks step scores: the arms, the module grid's swaps, the layer sweep's."""
    out = arm_models(av) if "arms" in groups else []
    out += grid_models()[2:] if "grid" in groups else []
    out += [swap(host, donor, block, b) for host, donor in ((Variant.SHORT, Variant.LONG), (Variant.LONG, Variant.SHORT))
            for block in BLOCKS for b in bands(av.n_layers, band)] if "sweep" in groups else []
    return list({m.key: m for m in out}.values())


def plan_benchmarks(av: Available, cfg: dict[str, Any], max_items: Optional[int], study: StudyConfig) -> StepPlan:
    """lm-evaluation-harness runs (a suite's benchmarks, lm-eval tasks, the organism's task sets) on
    every arm and swap; off (not measured, with the reason) until the settings name something."""
    p = StepPlan(B.STEP, "Standard benchmarks through lm-evaluation-harness (Table 1, Figure 1)")
    s = B.parse(cfg)
    if not s.asks:
        p.skipped.append(f"{B.STEP}: not measured: no benchmarks configured (set steps.benchmarks.settings.suite, "
                         "e.g. paper, or tasks)")
        return p
    missing = B.lm_eval_missing()
    if missing:
        p.skipped.append(missing)
        return p
    runs, p.skipped = B.runs(s)
    models = benchmark_models(av, s.models, study.band)
    for run in runs:
        if run.organism and not av.is_organism:
            p.skipped.append(f"{B.STEP}: organism tasks not measured: a user triple has no organism task sets "
                             "(score your own with tasks and include_path)")
            continue
        ident = {"inputs": B.input_identity(run)}
        p.units += [UnitPlan(p.name, av.replicate, m, "lm_eval", "tasks", run.settings,
                             max_items if run.organism else None, identity=ident) for m in models]
    p.skipped += _mix_note(av, "benchmarks") if "arms" in s.models else []
    return p


PLANNERS: dict[str, Callable[..., StepPlan]] = {
    "short_tasks": plan_short_tasks,
    "module_grid": plan_module_grid,
    "layer_sweep": plan_layer_sweep,
    "attention_spread": _arm_step("attention_spread", "Attention entropy per phase, layer and head (Figures 4, 11, 12)",
                                  "attention_spread", "spread", "attention spread"),
    "retrieval": _arm_step("retrieval", "Retrieval-head scores per layer and head (Figures 3, 9)",
                           "retrieval_heads", "needle", "retrieval heads"),
    "ffn_activations": _arm_step("ffn_activations", "FFN activation mean, variance and sparsity per layer (Figures 5, 10)",
                                 "ffn_activations", "ffn", "FFN activations"),
    "knowledge": plan_knowledge,
    "patching": plan_patching,
    "benchmarks": plan_benchmarks,
}
