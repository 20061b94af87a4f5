"""Knowledge-preference figures: conflict accuracy per model (Table 6 / §4), over mixes (Figure 6),
the per-layer logit-lens margin, and cross-checkpoint activation patching."""

from __future__ import annotations

from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lensft.report.data import LONG, SHORT, StudyData
from lensft.report.figures.common import Drawn, band_error, bars_from, color, index_axis, layout, replicate_note
from lensft.report.knowledge import accuracy_on_known, knowledge_check, knowledge_items, yes_rate
from lensft.report.measures import Items, interval, mean_of
from lensft.report.stats import Band
from lensft.study.record import ModelRef


def knowledge_models(d: StudyData) -> list[ModelRef]:
    arms = d.arms("knowledge")
    return arms + [m for m in d.models("knowledge") if m.key not in {a.key for a in arms}]


def knowledge_bars(d: StudyData) -> Optional[Drawn]:
    models = knowledge_models(d)
    if not models:
        return None
    fig = go.Figure()
    keys = [x.key for x in models]

    def own(col: str):  # noqa: ANN202
        return lambda m: interval(d, ("knowledge",), [m], knowledge_items, mean_of(col))

    def on_known(m: ModelRef):  # noqa: ANN202
        i = keys.index(m.key)
        return interval(d, ("knowledge",), models, knowledge_items, lambda t: (lambda w: accuracy_on_known(t, i, w)))

    rows = (("yes/no accuracy vs memorised fact, all items (paper's metric)", own("yn_correct"), "#1f77b4"),
            ("yes/no accuracy, items every model knows", on_known, "#2ca02c"),
            ("answers 'yes'", own("yn_pred"), "#bbbbbb"))
    for name, make, col in rows:
        y, err = bars_from([make(m) for m in models])
        fig.add_bar(x=[m.label for m in models], y=y, error_y=err, name=name, marker_color=col)
    fig.add_hline(y=50, line_dash="dot", line_color="#888", annotation_text="chance (50%)")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="model (arm, mix, or graft host + donor.block)", type="category")
    fig.update_yaxes(title_text="rate (% of conflict items)", range=[0, 105])
    check = knowledge_check(d, models)
    rates = ", ".join(f"{m.label} {100 * r:.0f}%" for m in models if (r := yes_rate(d, m)) is not None)
    cap = ("Conflict items state a counterfactual fact in context and ask, yes or no, about the memorised one; "
           "accuracy against the memorised fact is the paper's metric (high: follows memory). Yes-rates: " + rates + "."
           + (f" Validity check failed: {check}; these accuracies do not measure preference." if check else "")
           + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Knowledge preference under a conflicting context"), cap)


def knowledge_mix(d: StudyData) -> Optional[Drawn]:
    if not d.has_mixes("knowledge"):
        return None
    arms = d.sft_arms("knowledge")
    xs = [100 * float(m.long_fraction) for m in arms]  # type: ignore[arg-type]
    y, err = bars_from([interval(d, ("knowledge",), arms, knowledge_items,
                                 lambda t, i=i: (lambda w: accuracy_on_known(t, i, w))) for i in range(len(arms))])
    fig = go.Figure(go.Scatter(x=xs, y=y, error_y=err, mode="lines+markers", name="yes/no accuracy, items all arms know"))
    fig.update_xaxes(title_text="long-context data in the SFT mix (% of tokens)")
    fig.update_yaxes(title_text="yes/no accuracy vs memorised fact (%)", range=[0, 105])
    cap = ("Yes/no conflict accuracy of every arm on the items all arms know closed-book (claim 7 gives the slope and "
           "its interval). The paper's accuracy falls from 99.8% (short only) to 50% (long only)." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Knowledge preference across the SFT mixes"), cap)


def _lens_band(d: StudyData, m: ModelRef) -> Optional[Band]:
    stats, sizes = [], []
    for r in d.results(m, "knowledge").values():
        recs = [x for x in r.records if x.get("lens_margin")]
        if recs:
            t = Items([str(x["id"]) for x in recs], {"lens": np.array([x["lens_margin"] for x in recs], dtype=float)})
            stats.append(mean_of("lens")([t]))
            sizes.append(len(recs))
    return d.bootstrap.band(stats, sizes)


def lens_margin(d: StudyData) -> Optional[Drawn]:
    fig = go.Figure()
    for k, m in enumerate(knowledge_models(d)):
        b = _lens_band(d, m)
        if b is not None:
            fig.add_scatter(x=list(range(len(b.estimate))), y=b.estimate, error_y=band_error(b), mode="lines+markers",
                            name=m.label, marker_color=color(m, k), line=dict(dash="dot" if m.kind == "graft" else "solid"))
    if not fig.data:
        return None
    fig.add_hline(y=0, line_color="#888", line_width=1)
    index_axis(fig, "x", "layer (index; residual stream after the layer)")
    fig.update_yaxes(title_text="logit-lens margin, context − memory (nats, first answer token)")
    cap = ("Logit-lens margin log p(context answer) − log p(memorised answer) of the first answer token, read from the "
           "residual stream after each layer through the final norm and unembedding: where the preference forms."
           + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Where the preference is decided: per-layer logit-lens margin"), cap)


def _patch_band(d: StudyData, host: ModelRef, donor: ModelRef, comp: str) -> Optional[Band]:
    stats, sizes = [], []
    for r in d.results(host, "patching", donor=donor).values():
        recs = [x for x in r.records if x.get("delta", {}).get(comp) is not None]
        if recs:
            arr = np.array([[np.nan if v is None else v for v in x["delta"][comp]] for x in recs], dtype=float)
            stats.append(mean_of("d")([Items([str(x["id"]) for x in recs], {"d": arr})]))
            sizes.append(len(recs))
    return d.bootstrap.band(stats, sizes)


def patching(d: StudyData) -> Optional[Drawn]:
    pairs = [(h, o) for h, o in ((SHORT, LONG), (LONG, SHORT)) if d.results(h, "patching", donor=o)]
    if not pairs:
        return None
    fig = make_subplots(rows=1, cols=len(pairs), shared_yaxes=True,
                        subplot_titles=[f"host {h.label}, donor {o.label}" for h, o in pairs])
    notes = []
    for c, (h, o) in enumerate(pairs, start=1):
        for comp, col in (("mha", "#1f77b4"), ("ffn", "#d62728")):
            b = _patch_band(d, h, o, comp)
            if b is None:
                continue
            fig.add_bar(x=list(range(len(b.estimate))), y=b.estimate, error_y=band_error(b), name=comp.upper(),
                        marker_color=col, legendgroup=comp, showlegend=(c == 1), row=1, col=c)
            if np.isfinite(b.estimate).any():
                i = int(np.nanargmax(np.abs(b.estimate)))
                notes.append(f"host {h.label}, {comp.upper()}: largest at layer {i} ({b.estimate[i]:+.3f} "
                             f"[{b.low[i]:+.3f}, {b.high[i]:+.3f}] nats)")
        index_axis(fig, "x", "patched layer (index)", row=1, col=c)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="Δ margin log p(context) − log p(memory) (nats)", col=1)
    cap = ("Change in the host's margin log p(context answer) − log p(memorised answer) (nats, mean over conflict items) "
           "when one layer's MHA or FFN output is replaced by the donor arm's on the same tokens. Positive: the donor's "
           "block pushes the host towards the context. " + "; ".join(notes) + "." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Activation patching across checkpoints, one layer and block at a time"), cap)

