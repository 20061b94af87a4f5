"""Pure functions: a loaded study (:class:`~lensft.report.data.StudyData`) -> plotly Figures.

Every function returns ``None`` when the study has no data for it. Axis titles carry units;
accuracies are in percent, entropies in nats, layer and head axes are indices (0-based).
Error bars are 95% confidence intervals over organism seeds when there are several.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lensft.report.data import Stat, StudyData, select

COLORS = {"base": "#7f7f7f", "short": "#1f77b4", "long": "#d62728"}
_MIX_COLORS = ["#9467bd", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#17becf"]


def color(label: str, i: int = 0) -> str:
    return COLORS.get(label, _MIX_COLORS[i % len(_MIX_COLORS)])


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01), template="plotly_white", height=height,
                      margin=dict(l=70, r=30, t=70, b=60), legend=dict(orientation="h", y=-0.2))
    return fig


def _err(stats: list[Optional[Stat]], scale: float = 100.0) -> Optional[dict]:
    if all(s is None or s.n <= 1 for s in stats):
        return None
    return dict(type="data", array=[(s.ci * scale if s else 0.0) for s in stats], visible=True)


def _val(s: Optional[Stat], scale: float = 100.0) -> Optional[float]:
    return None if s is None else s.mean * scale


# ------------------------------------------------------------------------------ short tasks
def task_accuracy(d: StudyData) -> Optional[go.Figure]:
    """Table 1 analogue: accuracy of every arm on every short task (grouped bars)."""
    tasks, labels = d.tasks(), d.arm_labels("short_tasks")
    if not tasks or not labels:
        return None
    fig = go.Figure()
    for i, lab in enumerate(labels):
        stats = [d.task_acc(lab, t, "short_tasks") for t in tasks + ["all"]]
        fig.add_bar(name=lab, x=tasks + ["all tasks"], y=[_val(s) for s in stats], error_y=_err(stats),
                    marker_color=color(lab, i))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="short task (organism analogue of the paper's benchmarks)")
    fig.update_yaxes(title_text="accuracy (% of items, greedy exact match)", range=[0, 105])
    return _layout(fig, "Short-task accuracy by SFT arm")


def mix_curve(d: StudyData) -> Optional[go.Figure]:
    """Figure 7 analogue: accuracy vs long-data fraction of the SFT mix."""
    if not d.has_mixes("short_tasks"):
        return None
    labels = d.sft_arms("short_tasks")
    xs = [100 * d.long_fraction(l) for l in labels]  # type: ignore[operator]
    fig = go.Figure()
    for i, t in enumerate(d.tasks() + ["all"]):
        stats = [d.task_acc(l, t, "short_tasks") for l in labels]
        fig.add_scatter(x=xs, y=[_val(s) for s in stats], error_y=_err(stats), mode="lines+markers",
                        name=t if t != "all" else "all tasks", line=dict(width=3 if t == "all" else 1.5))
    fig.update_xaxes(title_text="long-context data in the SFT mix (% of tokens)")
    fig.update_yaxes(title_text="accuracy (% of items)", range=[0, 105])
    return _layout(fig, "Short-task accuracy vs SFT mixing ratio")


# ------------------------------------------------------------------------------ module grid
def module_grid(d: StudyData) -> Optional[go.Figure]:
    """Figures 1-2 in full: accuracy of MHA in {short, long} x FFN in {short, long} on every task."""
    tasks = d.tasks("module_grid")
    if not tasks:
        return None
    cols = tasks + ["all"]
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=[t if t != "all" else "all tasks" for t in cols],
                        horizontal_spacing=0.04)
    arms = ["short", "long"]
    for j, t in enumerate(cols, start=1):
        z, text = [], []
        for mha in arms:
            row, trow = [], []
            for ffn in arms:
                s = _grid_stat(d, mha, ffn, t)
                row.append(_val(s))
                trow.append("n/a" if s is None else s.fmt(100, 1))
            z.append(row)
            text.append(trow)
        fig.add_heatmap(z=z, x=[f"FFN {a}" for a in arms], y=[f"MHA {a}" for a in arms], text=text,
                        texttemplate="%{text}", zmin=0, zmax=100, colorscale="Viridis", showscale=(j == len(cols)),
                        colorbar=dict(title="accuracy (%)"), row=1, col=j)
        if j > 1:
            fig.update_yaxes(showticklabels=False, row=1, col=j)
    fig.update_xaxes(title_text="FFN source (checkpoint)")
    fig.update_yaxes(title_text="MHA source (checkpoint; host = FFN source)", col=1)
    return _layout(fig, "2x2 module grid: accuracy (%) by MHA source x FFN source", height=360)


def grid_label(mha: str, ffn: str) -> str:
    return mha if mha == ffn else f"{ffn}+{mha}.mha"


def _grid_stat(d: StudyData, mha: str, ffn: str, task: str) -> Optional[Stat]:
    return d.task_acc(grid_label(mha, ffn), task, "module_grid", "short_tasks")


# ------------------------------------------------------------------------------ layer sweep
def sweep_deltas(d: StudyData, host: str, block: str, task: str = "all") -> tuple[list[str], list[Optional[Stat]]]:
    """Bands and the accuracy change (host with the other arm's ``block`` in that band - host)."""
    us = [u for u in d.step("layer_sweep") if u.tags.get("sweep_host") == host and u.tags.get("block") == block]
    bands = list(dict.fromkeys(u.tags.get("band") for u in us))
    key = "accuracy" if task == "all" else f"accuracy_{task}"
    base = {u.seed: u.result.summary.get(key) for u in d.find(host, "module_grid", "short_tasks")}
    out = []
    for b in bands:
        vals = []
        for u in us:
            if u.tags.get("band") == b:
                v, h = u.result.summary.get(key), base.get(u.seed)
                if v is not None and h is not None:
                    vals.append(v - h)
        out.append(Stat.of(vals))
    return [str(b) for b in bands], out


def layer_sweep(d: StudyData) -> Optional[go.Figure]:
    """Per-layer swap sweep: accuracy change from grafting the other arm's MHA / FFN into one band."""
    if not d.step("layer_sweep"):
        return None
    tasks = ["all"] + d.tasks("layer_sweep")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["host short, blocks from long", "host long, blocks from short"],
                        shared_yaxes=True)
    for c, host in enumerate(("short", "long"), start=1):
        for block, dash in (("mha", "solid"), ("ffn", "dash")):
            for t in tasks:
                bands, stats = sweep_deltas(d, host, block, t)
                if not bands:
                    continue
                fig.add_scatter(x=bands, y=[_val(s) for s in stats], error_y=_err(stats), mode="lines+markers",
                                name=f"{block.upper()} {'all tasks' if t == 'all' else t}", legendgroup=f"{block}{t}",
                                showlegend=(c == 1), visible=True if t == "all" else "legendonly",
                                line=dict(dash=dash, color="#1f77b4" if block == "mha" else "#d62728",
                                          width=3 if t == "all" else 1), row=1, col=c)
        fig.update_xaxes(title_text="grafted layer band (layer indices a:b, b exclusive)", type="category", row=1, col=c)
    fig.update_yaxes(title_text="Δ accuracy vs host (percentage points)", col=1)
    fig.add_hline(y=0, line_color="#888", line_width=1)
    return _layout(fig, "Per-layer swap sweep: which layers carry the effect", height=440)


# ------------------------------------------------------------------------------ retrieval
def _heat_row(fig: go.Figure, mats: list[Optional[np.ndarray]], row: int, titles: list[str], cbar: str,
              diff_cbar: str, n_rows: int) -> None:
    vmax = max((np.nanmax(np.abs(m)) for m in mats[:2] if m is not None and np.isfinite(m).any()), default=1.0) or 1.0
    for j, m in enumerate(mats, start=1):
        if m is None:
            continue
        diff = j == 3
        dmax = float(np.nanmax(np.abs(m))) if diff and np.isfinite(m).any() else 1.0
        y_off = 1 - (row - 0.5) / n_rows
        fig.add_heatmap(z=m, x=list(range(m.shape[1])), y=list(range(m.shape[0])),
                        colorscale="RdBu_r" if diff else "Viridis",
                        zmin=-(dmax or 1.0) if diff else 0, zmax=(dmax or 1.0) if diff else vmax,
                        colorbar=dict(title=diff_cbar if diff else cbar, len=0.9 / n_rows, y=y_off,
                                      x=1.0 if diff else 0.64, thickness=12),
                        row=row, col=j, hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>")
        fig.update_xaxes(title_text="head (index)", row=row, col=j)
        fig.update_yaxes(title_text="layer (index)", row=row, col=j)


def retrieval_heatmaps(d: StudyData) -> Optional[go.Figure]:
    """Figure 3: retrieval score per layer x head for long, short and long - short."""
    f = lambda r: select(r, "score")  # noqa: E731
    lo, sh = d.array("retrieval", "long", f), d.array("retrieval", "short", f)
    if lo is None or sh is None:
        return None
    fig = make_subplots(rows=1, cols=3, subplot_titles=["long SFT", "short SFT", "long − short (red: long higher)"],
                        horizontal_spacing=0.1)
    _heat_row(fig, [lo, sh, lo - sh], 1, [], "score", "Δ score", 1)
    return _layout(fig, "Retrieval score per head (fraction of needle tokens copied, 0-1)", height=380)


def retrieval_heads(d: StudyData) -> tuple[list[tuple[int, int]], bool]:
    """Heads scoring above the threshold in every arm (the paper's common retrieval heads); if
    none, the heads above it in any arm; if none, the 8 top-scoring heads. Second value: found."""
    labels = d.arm_labels("retrieval")
    mats = {l: d.array("retrieval", l, lambda r: select(r, "score")) for l in labels}
    mats = {l: m for l, m in mats.items() if m is not None}
    if not mats:
        return [], False
    thr = next((float(u.result.settings.get("threshold", 0.1)) for u in d.step("retrieval")), 0.1)
    above = [m > thr for m in mats.values()]
    common = np.logical_and.reduce(above)
    anyh = np.logical_or.reduce(above)
    sel = common if common.any() else anyh
    if sel.any():
        return [tuple(map(int, ij)) for ij in np.argwhere(sel)], True  # type: ignore[misc]
    top = np.argsort(-np.nanmax(np.stack(list(mats.values())), axis=0), axis=None)[:8]
    shape = next(iter(mats.values())).shape
    return [tuple(map(int, np.unravel_index(i, shape))) for i in sorted(top)], False  # type: ignore[misc]


def retrieval_mixes(d: StudyData) -> Optional[go.Figure]:
    """Figure 9: retrieval score of the common retrieval heads for every arm."""
    heads, _ = retrieval_heads(d)
    labels = d.arm_labels("retrieval")
    if not heads or len(labels) < 2:
        return None
    fig = go.Figure()
    x = [f"L{i}.H{j}" for i, j in heads]
    for k, l in enumerate(labels):
        m = d.array("retrieval", l, lambda r: select(r, "score"))
        if m is None:
            continue
        fig.add_scatter(x=x, y=[m[i, j] for i, j in heads], mode="lines+markers", name=l, marker_color=color(l, k))
    fig.update_xaxes(title_text="head (layer.head index)", type="category")
    fig.update_yaxes(title_text="retrieval score (fraction of needle tokens copied)")
    return _layout(fig, "Retrieval score of the retrieval heads across SFT arms")


# ------------------------------------------------------------------------------ attention spread
def entropy(d: StudyData, label: str, phase: str, name: str = "entropy") -> Optional[np.ndarray]:
    return d.array("attention_spread", label, lambda r: select(r, name, phase=phase))


def entropy_layers(d: StudyData) -> Optional[go.Figure]:
    """Figure 4: per-layer entropy difference (short − long, the paper's UltraChat − ChatQA2) per phase."""
    phases = d.phases()
    if not phases or entropy(d, "short", phases[0]) is None or entropy(d, "long", phases[0]) is None:
        return None
    fig = go.Figure()
    for ph in phases:
        per_seed = []
        for s_u, l_u in _paired(d, "attention_spread"):
            a, b = select(s_u.result, "entropy", phase=ph), select(l_u.result, "entropy", phase=ph)
            if a is not None and b is not None:
                per_seed.append(np.nanmean(a - b, axis=-1))
        if not per_seed:
            continue
        arr = np.stack(per_seed)
        stats = [Stat.of(arr[:, i]) for i in range(arr.shape[1])]
        fig.add_scatter(x=list(range(arr.shape[1])), y=[_val(s, 1.0) for s in stats], error_y=_err(stats, 1.0),
                        mode="lines+markers", name=f"{ph} phase")
    fig.add_hline(y=0, line_color="#888", line_width=1)
    fig.update_xaxes(title_text="layer (index)", dtick=1)
    fig.update_yaxes(title_text="Δ entropy, short − long (nats, mean over heads)")
    return _layout(fig, "Attention entropy difference per layer (negative: long SFT spreads attention more)")


def _paired(d: StudyData, step: str) -> list[tuple]:
    s = {u.seed: u for u in d.by_label(step, "short")}
    l = {u.seed: u for u in d.by_label(step, "long")}
    return [(s[k], l[k]) for k in sorted(set(s) & set(l))]


def entropy_heatmaps(d: StudyData) -> Optional[go.Figure]:
    """Figures 11-12: layer x head entropy for long, short and long − short, one row per phase."""
    phases = d.phases()
    if not phases or entropy(d, "long", phases[0]) is None or entropy(d, "short", phases[0]) is None:
        return None
    fig = make_subplots(rows=len(phases), cols=3, horizontal_spacing=0.1, vertical_spacing=0.12,
                        subplot_titles=[f"{ph}: {w}" for ph in phases for w in ("long SFT", "short SFT", "long − short")])
    for r, ph in enumerate(phases, start=1):
        lo, sh = entropy(d, "long", ph), entropy(d, "short", ph)
        _heat_row(fig, [lo, sh, None if lo is None or sh is None else lo - sh], r, [], "nats", "Δ nats", len(phases))
    return _layout(fig, "Attention entropy per head (nats) by phase", height=330 * len(phases) + 60)


# ------------------------------------------------------------------------------ FFN
FFN_STATS = (("mean", "mean activation (model units)"), ("var", "activation variance (model units²)"),
             ("sparsity", "sparsity (% of |a| < threshold)"))


def ffn_stat(d: StudyData, label: str, stat: str, *, site: str = "act", phase: str = "all") -> Optional[np.ndarray]:
    def f(r):  # noqa: ANN001
        a = select(r, stat, site=site, phase=phase)
        if a is not None and stat == "sparsity":
            a = a[..., 0]
        return a
    return d.array("ffn_activations", label, f)


def ffn_layers(d: StudyData) -> Optional[go.Figure]:
    """Figure 10: per-layer FFN activation mean, variance and sparsity for every arm."""
    labels = d.arm_labels("ffn_activations")
    if not labels:
        return None
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in FFN_STATS], horizontal_spacing=0.08)
    for c, (stat, title) in enumerate(FFN_STATS, start=1):
        for k, l in enumerate(labels):
            a = ffn_stat(d, l, stat)
            if a is None:
                continue
            scale = 100.0 if stat == "sparsity" else 1.0
            fig.add_scatter(x=list(range(len(a))), y=a * scale, mode="lines+markers", name=l, legendgroup=l,
                            showlegend=(c == 1), marker_color=color(l, k))
        fig.update_xaxes(title_text="layer (index)", dtick=1, row=1, col=c)
        fig.update_yaxes(title_text=title, row=1, col=c)
    return _layout(fig, "FFN activation statistics per layer (a = act(W_gate x))", height=400)


def ffn_delta(d: StudyData) -> Optional[go.Figure]:
    """Figure 5: relative difference (long − short) / |short| per layer, in percent."""
    if ffn_stat(d, "short", "mean") is None or ffn_stat(d, "long", "mean") is None:
        return None
    fig = go.Figure()
    for stat, _ in FFN_STATS:
        s, l = ffn_stat(d, "short", stat), ffn_stat(d, "long", stat)
        if s is None or l is None:
            continue
        rel = 100 * (l - s) / np.where(np.abs(s) > 0, np.abs(s), np.nan)
        fig.add_bar(x=list(range(len(rel))), y=rel, name=stat)
    fig.update_layout(barmode="group")
    fig.add_hline(y=0, line_color="#888", line_width=1)
    fig.update_xaxes(title_text="layer (index)", dtick=1)
    fig.update_yaxes(title_text="relative difference (long − short)/|short| (%)")
    return _layout(fig, "Relative FFN activation difference, long vs short SFT")


# ------------------------------------------------------------------------------ knowledge
def knowledge_labels(d: StudyData) -> list[str]:
    arms = d.arm_labels("knowledge")
    return arms + [l for l in d.labels("knowledge") if l not in arms]


def knowledge_bars(d: StudyData) -> Optional[go.Figure]:
    """Table 6 / the 99.8% vs 50% finding: yes/no conflict accuracy and context preference per model."""
    labels = knowledge_labels(d)
    if not labels:
        return None
    fig = go.Figure()
    for key, name, col in (("yn_accuracy", "yes/no accuracy vs memorised fact (paper's metric)", "#1f77b4"),
                           ("ctx_pref_rate", "items where context answer is more likely", "#ff7f0e")):
        stats = [d.summary("knowledge", l, key) for l in labels]
        fig.add_bar(x=labels, y=[_val(s) for s in stats], error_y=_err(stats), name=name, marker_color=col)
    fig.add_hline(y=50, line_dash="dot", line_color="#888", annotation_text="chance (50%)")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="model (arm, graft host+donor.block, or mix)", type="category")
    fig.update_yaxes(title_text="rate (% of conflict items)", range=[0, 105])
    return _layout(fig, "Knowledge preference under a conflicting context")


def knowledge_mix(d: StudyData) -> Optional[go.Figure]:
    """Figure 6: yes/no conflict accuracy vs long-data fraction."""
    if not d.has_mixes("knowledge"):
        return None
    labels = d.sft_arms("knowledge")
    xs = [100 * d.long_fraction(l) for l in labels]  # type: ignore[operator]
    fig = go.Figure()
    for key, name in (("yn_accuracy", "yes/no accuracy (follows memory)"), ("ctx_pref_rate", "context preferred (margin > 0)")):
        stats = [d.summary("knowledge", l, key) for l in labels]
        fig.add_scatter(x=xs, y=[_val(s) for s in stats], error_y=_err(stats), mode="lines+markers", name=name)
    fig.update_xaxes(title_text="long-context data in the SFT mix (% of tokens)")
    fig.update_yaxes(title_text="rate (% of conflict items)", range=[0, 105])
    return _layout(fig, "Knowledge preference vs SFT mixing ratio")


def lens_margin(d: StudyData) -> Optional[go.Figure]:
    """Per-layer preference view: logit-lens margin log p(context) − log p(memory) at each layer."""
    labels = knowledge_labels(d)
    fig = go.Figure()
    for k, l in enumerate(labels):
        a = d.array("knowledge", l, lambda r: select(r, "lens_margin", subset="all"))
        if a is None:
            continue
        fig.add_scatter(x=list(range(len(a))), y=a, mode="lines+markers", name=l, marker_color=color(l, k),
                        line=dict(dash="solid" if l in ("short", "long", "base") or l.startswith("mix") else "dot"))
    if not fig.data:
        return None
    fig.add_hline(y=0, line_color="#888", line_width=1)
    fig.update_xaxes(title_text="layer (index; residual stream after the layer)", dtick=1)
    fig.update_yaxes(title_text="logit-lens margin, context − memory (nats, first answer token)")
    return _layout(fig, "Where the preference is decided: per-layer logit-lens margin")


# ------------------------------------------------------------------------------ patching
def patching(d: StudyData) -> Optional[go.Figure]:
    """Cross-checkpoint activation patching: change of the receiver's context-vs-memory margin when one
    layer's MHA or FFN output is replaced by the other arm's."""
    recv = [l for l in ("short", "long") if d.by_label("patching", l)]
    if not recv:
        return None
    fig = make_subplots(rows=1, cols=len(recv), shared_yaxes=True,
                        subplot_titles=[f"receiver {r}, donor {'long' if r == 'short' else 'short'}" for r in recv])
    for c, r in enumerate(recv, start=1):
        for comp, col in (("mha", "#1f77b4"), ("ffn", "#d62728")):
            a = d.array("patching", r, lambda res, comp=comp: select(res, "delta", component=comp))
            if a is None:
                continue
            fig.add_bar(x=list(range(len(a))), y=a, name=comp.upper(), marker_color=col, legendgroup=comp, showlegend=(c == 1),
                        row=1, col=c)
        fig.update_xaxes(title_text="patched layer (index)", dtick=1, row=1, col=c)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="Δ margin log p(context) − log p(memory) (nats)", col=1)
    return _layout(fig, "Activation patching across checkpoints, one layer and block at a time")
