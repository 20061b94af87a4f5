"""Short-task figures: accuracy per arm (Table 1), over mixes (Figure 7), the module swaps
(Figures 1-2) and the per-layer swap sweep."""

from __future__ import annotations

from typing import Optional

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lensft.report.data import ANALOGUE, LONG, SHORT, StudyData
from lensft.report.figures.common import Drawn, bars_from, color, fmt_iv, layout, replicate_note
from lensft.report.measures import diff_of_means, interval, mean_of, task_correct
from lensft.report.stats import Interval
from lensft.study.plan import BLOCKS, bands, swap
from lensft.study.record import ModelRef
from lensft.variants import Variant

ARM_STEPS = ("short_tasks",)
GRID_STEPS = ("module_grid", "short_tasks")


def accuracy(d: StudyData, model: ModelRef, task: Optional[str], steps: tuple[str, ...] = ARM_STEPS) -> Optional[Interval]:
    """A model's accuracy (fraction) on one task (or all) with its bootstrap interval."""
    return interval(d, steps, [model], task_correct(task), mean_of("correct"))


def gain(d: StudyData, host: ModelRef, other: ModelRef, task: Optional[str], steps: tuple[str, ...]) -> Optional[Interval]:
    """Paired accuracy change other − host (fraction)."""
    return interval(d, steps, [host, other], task_correct(task), diff_of_means("correct"))


def task_accuracy(d: StudyData) -> Optional[Drawn]:
    tasks, arms = d.tasks(), d.arms("short_tasks")
    if not tasks or not arms:
        return None
    fig = go.Figure()
    cols = tasks + ["all"]
    overall = {}
    for i, m in enumerate(arms):
        ivs = [accuracy(d, m, t) for t in cols]
        overall[m.label] = ivs[-1]
        y, err = bars_from(ivs)
        fig.add_bar(name=m.label, x=tasks + ["all tasks"], y=y, error_y=err, marker_color=color(m, i))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="short task (organism analogue of the paper's benchmarks)")
    fig.update_yaxes(title_text="accuracy (% of items, greedy exact match)", range=[0, 105])
    g = gain(d, SHORT, LONG, None, ARM_STEPS)
    cap = (f"Greedy exact-match accuracy of each arm on the held-out short tasks ({_items(d)}); 'all tasks' pools "
           f"every item. Overall: " + ", ".join(f"{k} {fmt_iv(v)}" for k, v in overall.items())
           + f". Long − short, paired over the same items: {fmt_iv(g, unit=' pp', signed=True)} "
           "(paper: +2.68 pp)." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Short-task accuracy by SFT arm"), cap)


def _items(d: StudyData) -> str:
    u = d.first("short_tasks")
    ps = u.result.prompt_set if u else None
    return f"{ps.n_items} items of '{ps.name}'" if ps else "no items"


def mix_curve(d: StudyData) -> Optional[Drawn]:
    if not d.has_mixes("short_tasks"):
        return None
    arms = d.sft_arms("short_tasks")
    xs = [100 * float(m.long_fraction) for m in arms]  # type: ignore[arg-type]
    fig = go.Figure()
    peaks = []
    for t in d.tasks() + ["all"]:
        ivs = [accuracy(d, m, t) for m in arms]
        y, err = bars_from(ivs)
        fig.add_scatter(x=xs, y=y, error_y=err, mode="lines+markers", name=t if t != "all" else "all tasks",
                        line=dict(width=3 if t == "all" else 1.5))
        best = max((v, x) for v, x in zip(y, xs) if v is not None) if any(v is not None for v in y) else None
        if best and t != "all":
            peaks.append(f"{t} highest at {best[1]:.0f}% long data ({best[0]:.1f}%)")
    fig.update_xaxes(title_text="long-context data in the SFT mix (% of tokens)")
    fig.update_yaxes(title_text="accuracy (% of items)", range=[0, 105])
    g = ANALOGUE["gsm8k"]
    cap = ("Accuracy of the arms trained on mixes of short and long SFT data (0% = short arm, 100% = long arm). "
           + "; ".join(peaks) + f" (point estimates; claim 8 gives the bootstrap probability of each peak). The paper "
           f"finds GSM8K (here {g}) best at a 50/50 mix and MMLU best with long-only data." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Short-task accuracy across the SFT mixes"), cap)


def module_grid(d: StudyData) -> Optional[Drawn]:
    tasks = d.tasks("module_grid")
    if not tasks:
        return None
    cols = tasks + ["all"]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=["host: short arm", "host: long arm"])
    notes = []
    for c, (host, donor) in enumerate(((Variant.SHORT, Variant.LONG), (Variant.LONG, Variant.SHORT)), start=1):
        hm = ModelRef.of_variant(host)
        for k, m in enumerate([hm] + [swap(host, donor, b) for b in BLOCKS]):
            y, err = bars_from([accuracy(d, m, t, GRID_STEPS) for t in cols])
            fig.add_bar(name=m.label, x=tasks + ["all tasks"], y=y, error_y=err, row=1, col=c,
                        marker_color=["#1f77b4", "#2ca02c", "#ff7f0e"][k] if host is Variant.SHORT else
                        ["#d62728", "#9467bd", "#8c564b"][k])
            if m.kind == "graft":
                notes.append(f"{m.label} − {hm.label}: {fmt_iv(gain(d, hm, m, None, GRID_STEPS), unit=' pp', signed=True)}")
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="accuracy (% of items)", range=[0, 105], col=1)
    cap = ("The paper's module swaps: each arm as host keeps everything but one block (MHA: q/k/v/o; FFN: gate/up/down), "
           "which comes from the other arm. Paired accuracy changes, all tasks: " + "; ".join(notes)
           + f". Claims 2 and 3 use the {ANALOGUE['gsm8k']} and {ANALOGUE['world_capital']} tasks (GSM8K and World "
           "Capital analogues)." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Module swaps: accuracy of each host with the other arm's MHA or FFN", height=440), cap)


def layer_sweep(d: StudyData) -> Optional[Drawn]:
    if not d.step("layer_sweep"):
        return None
    band_list = bands(d.n_layers, d.record.config.band)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=["host short, blocks from long", "host long, blocks from short"])
    largest = []
    for c, (host, donor) in enumerate(((Variant.SHORT, Variant.LONG), (Variant.LONG, Variant.SHORT)), start=1):
        hm = ModelRef.of_variant(host)
        for block, dash in zip(BLOCKS, ("solid", "dash")):
            ivs = [gain(d, hm, swap(host, donor, block, b), None, ("layer_sweep", "module_grid", "short_tasks"))
                   for b in band_list]
            y, err = bars_from(ivs)
            fig.add_scatter(x=band_list, y=y, error_y=err, mode="lines+markers", name=f"{block.value.upper()} from {donor.value}",
                            line=dict(dash=dash), row=1, col=c)
            best = max(((abs(iv.estimate), b, iv) for b, iv in zip(band_list, ivs) if iv), default=None, key=lambda x: x[0])
            if best:
                largest.append(f"{hm.label} + {donor.value}.{block.value}: largest in layers {best[1]} "
                               f"({fmt_iv(best[2], unit=' pp', signed=True)})")
        fig.update_xaxes(title_text="grafted layer band (a:b, b exclusive)", type="category", row=1, col=c)
    fig.add_hline(y=0, line_color="#888", line_width=1)
    fig.update_yaxes(title_text="Δ accuracy vs host (percentage points, all tasks)", col=1)
    cap = ("Paired accuracy change (all tasks) when one layer band of the host takes the other arm's MHA or FFN block. "
           + "; ".join(largest) + ". The paper swapped all layers at once; this sweep localises the effect."
           + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Per-layer swap sweep: which layers carry the effect", height=440), cap)
