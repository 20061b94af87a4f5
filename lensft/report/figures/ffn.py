"""FFN figures: relative difference long vs short per layer (Figure 5) and per-layer statistics of
every arm (Figure 10), from per-item moment sums pooled under the bootstrap."""

from __future__ import annotations

from typing import Optional

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lensft.report.data import LONG, SHORT, StudyData
from lensft.report.figures.common import Drawn, band_error, color, index_axis, layout, replicate_note
from lensft.report.measures import band, ffn_moments
from lensft.report.mechanisms import pooled_ffn, relative_delta
from lensft.report.stats import Band
from lensft.study.record import ModelRef

STATS = (("mean", "mean activation (model units)", 1.0), ("var", "activation variance (model units²)", 1.0),
         ("sparsity", "sparsity (% of |a| < threshold)", 100.0))


def _band(d: StudyData, models: list[ModelRef], make) -> Optional[Band]:  # noqa: ANN001
    return band(d, ("ffn_activations",), models, ffn_moments, make)


def ffn_delta(d: StudyData) -> Optional[Drawn]:
    if not d.results(SHORT, "ffn_activations") or not d.results(LONG, "ffn_activations"):
        return None
    fig, notes = go.Figure(), []
    for stat, _, _ in STATS:
        b = _band(d, [SHORT, LONG], lambda t, stat=stat: relative_delta(t, stat))
        if b is None:
            continue
        b = b.scaled(100)
        fig.add_bar(x=list(range(len(b.estimate))), y=b.estimate, error_y=band_error(b), name=stat)
        up = int((b.low > 0).sum())
        down = int((b.high < 0).sum())
        notes.append(f"{stat}: higher in long in {up}, lower in {down} of {len(b.estimate)} layers (interval excludes 0)")
    fig.update_layout(barmode="group")
    fig.add_hline(y=0, line_color="#888", line_width=1)
    index_axis(fig, "x", "layer (index)")
    fig.update_yaxes(title_text="relative difference (long − short)/|short| (%)")
    cap = ("Relative difference of FFN activation statistics, long vs short, per layer (a = act(W_gate x), pooled over "
           "the tokens of the FFN prompt set, special tokens left out). " + "; ".join(notes)
           + ". The paper reports higher mean and variance and lower sparsity after long SFT." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Relative FFN activation difference, long vs short SFT"), cap)


def ffn_layers(d: StudyData) -> Optional[Drawn]:
    arms = d.arms("ffn_activations")
    if not arms:
        return None
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t, _ in STATS], horizontal_spacing=0.08)
    for c, (stat, title, scale) in enumerate(STATS, start=1):
        for k, m in enumerate(arms):
            b = _band(d, [m], lambda t, stat=stat: (lambda w: pooled_ffn(t[0], w)[stat]))
            if b is None:
                continue
            b = b.scaled(scale)
            fig.add_scatter(x=list(range(len(b.estimate))), y=b.estimate, error_y=band_error(b), mode="lines+markers",
                            name=m.label, legendgroup=m.label, showlegend=(c == 1), marker_color=color(m, k), row=1, col=c)
        index_axis(fig, "x", "layer (index)", row=1, col=c)
        fig.update_yaxes(title_text=title, row=1, col=c)
    cap = ("Per-layer FFN activation mean, variance and sparsity of every arm (95% bootstrap intervals over items). "
           "The paper finds mean and variance rising with depth and sparsity rising, then falling." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "FFN activation statistics per layer (a = act(W_gate x))", height=420), cap)
