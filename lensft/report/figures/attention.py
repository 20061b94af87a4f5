"""Attention figures: retrieval heads (Figures 3 and 9) and attention entropy (Figures 4, 11, 12)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lensft.report.data import LONG, SHORT, StudyData
from lensft.report.figures.common import (Drawn, band_error, color, colorbar, index_axis, layout, not_measured_panel,
                                          replicate_note)
from lensft.report.measures import band, per_prompt, retrieval_items
from lensft.report.mechanisms import (MIN_COPIED, RETRIEVAL_THRESHOLD, head_scores, late_layers, n_copied,
                                      retrieval_check, spread_phases)
from lensft.report.stats import Band, wmean
from lensft.study.record import ModelRef

SPACING = 0.1


def score_map(d: StudyData, model: ModelRef) -> Optional[np.ndarray]:
    """``[layer, head]`` retrieval scores over copied needles, averaged over replicates."""
    maps = []
    for r in d.results(model, "retrieval").values():
        t = retrieval_items(r)
        if t is not None:
            maps.append(head_scores(t, np.ones((1, len(t.ids))))[0])
    return np.nanmean(np.stack(maps), axis=0) if maps else None


def _heat(fig: go.Figure, m: np.ndarray, row: int, col: int, n_rows: int, diff: bool, title: str, vmax: float) -> None:
    lim = float(np.nanmax(np.abs(m))) if diff and np.isfinite(m).any() else vmax
    fig.add_heatmap(z=m, x=list(range(m.shape[1])), y=list(range(m.shape[0])), colorscale="RdBu_r" if diff else "Viridis",
                    zmin=-(lim or 1.0) if diff else 0, zmax=(lim or 1.0), row=row, col=col,
                    colorbar=colorbar(title, col, 3, row, n_rows, SPACING),
                    hovertemplate="layer %{y}, head %{x}: %{z:.3f}<extra></extra>")
    index_axis(fig, "x", "head (index)", row=row, col=col)
    index_axis(fig, "y", "layer (index)", row=row, col=col)


def retrieval_heatmaps(d: StudyData) -> Optional[Drawn]:
    if not d.results(SHORT, "retrieval") or not d.results(LONG, "retrieval"):
        return None
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=SPACING,
                        subplot_titles=["long SFT", "short SFT", "long − short (red: long higher)"])
    check = retrieval_check(d, [SHORT, LONG])
    copied = f"short copied {n_copied(d, SHORT)}, long {n_copied(d, LONG)} needles"
    if check:
        for c in (1, 2, 3):
            not_measured_panel(fig, check, 1, c)
        cap = (f"Not measured: {check}. Wu et al.'s retrieval score counts only needles the model copies; with fewer "
               f"than {MIN_COPIED} copied needles an arm's head scores say nothing about retrieval.")
        return Drawn(layout(fig, "Retrieval score per head", height=380), cap)
    lo, sh = score_map(d, LONG), score_map(d, SHORT)
    vmax = float(np.nanmax([np.nanmax(lo), np.nanmax(sh)])) or 1.0  # type: ignore[arg-type]
    for c, (m, diff, t) in enumerate(((lo, False, "score"), (sh, False, "score"), (lo - sh, True, "Δ score")), start=1):  # type: ignore[operator]
        _heat(fig, m, 1, c, 1, diff, t, vmax)
    n_ret = int(((lo > RETRIEVAL_THRESHOLD) | (sh > RETRIEVAL_THRESHOLD)).sum())  # type: ignore[operator]
    cap = (f"Retrieval score per head (Wu et al. 2024: fraction of the needle's tokens a head copies by attending to "
           f"them, averaged over the needles the model copied; {copied}). {n_ret} heads score above "
           f"{RETRIEVAL_THRESHOLD} in either arm. Claim 4 gives the intervals of the overall difference.")
    return Drawn(layout(fig, "Retrieval score per head (0-1)", height=380), cap)


def retrieval_mixes(d: StudyData) -> Optional[Drawn]:
    arms = d.sft_arms("retrieval")
    if len(arms) < 2 or retrieval_check(d, arms):
        return None
    maps = {m.key: score_map(d, m) for m in arms}
    stack = np.stack([v for v in maps.values() if v is not None])
    heads = [tuple(map(int, ij)) for ij in np.argwhere((stack > RETRIEVAL_THRESHOLD).all(0))]
    if not heads:
        heads = [tuple(map(int, np.unravel_index(i, stack.shape[1:]))) for i in np.argsort(-stack.max(0), axis=None)[:8]]
    x = [f"L{i}.H{j}" for i, j in heads]
    fig = go.Figure()
    for k, m in enumerate(arms):
        b = _head_band(d, m, heads)
        if b is not None:
            fig.add_scatter(x=x, y=b.estimate, error_y=band_error(b), mode="lines+markers", name=m.label,
                            marker_color=color(m, k))
    fig.update_xaxes(title_text="head (layer.head index)", type="category")
    fig.update_yaxes(title_text="retrieval score (fraction of needle tokens copied)")
    cap = (f"Retrieval score of the heads above {RETRIEVAL_THRESHOLD} in every arm (or the top heads when none is) "
           "across the SFT arms, with 95% bootstrap intervals over needles." + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Retrieval score of the retrieval heads across SFT arms"), cap)


def _head_band(d: StudyData, m: ModelRef, heads: list[tuple[int, int]]) -> Optional[Band]:
    stats, sizes = [], []
    for r in d.results(m, "retrieval").values():
        t = retrieval_items(r)
        if t is not None:
            ii, jj = np.array(heads).T
            stats.append(lambda w, t=t: head_scores(t, w)[:, ii, jj])
            sizes.append(len(t.ids))
    return d.bootstrap.band(stats, sizes)


def entropy_band(d: StudyData, phase: str) -> Optional[Band]:
    """Per-layer Δ entropy short − long (the paper's UltraChat − ChatQA2), mean over heads, paired."""
    return band(d, ("attention_spread",), (SHORT, LONG), per_prompt("entropy", phase),
                lambda ts: lambda w, s=ts[0], lo=ts[1]: (wmean(w, s["entropy"]) - wmean(w, lo["entropy"])).mean(-1))


def entropy_layers(d: StudyData) -> Optional[Drawn]:
    u = d.first("attention_spread")
    if u is None:
        return None
    phases = [str(p) for p in u.result.coords.get("phase", [])]
    fig, notes = go.Figure(), []
    sl = late_layers(d.n_layers)
    for ph in phases:
        b = entropy_band(d, ph)
        if b is None:
            continue
        fig.add_scatter(x=list(range(len(b.estimate))), y=b.estimate, error_y=band_error(b), mode="lines+markers",
                        name=f"{ph} phase")
        sig = [i for i in range(sl.start, len(b.estimate)) if b.low[i] > 0 or b.high[i] < 0]
        notes.append(f"{ph}: interval excludes 0 in {len(sig)} of {len(b.estimate) - sl.start} middle-to-late layers")
    if not fig.data:
        return None
    fig.add_hline(y=0, line_color="#888", line_width=1)
    index_axis(fig, "x", "layer (index)")
    fig.update_yaxes(title_text="Δ entropy, short − long (nats, mean over heads)")
    rp, note = spread_phases(d)
    cap = ("Per-layer attention-entropy difference short − long (the paper's UltraChat − ChatQA2 sign), per phase; "
           "the answer phase is the queries that generate the answer tokens. " + "; ".join(notes) + "."
           + (f" Note: {note}." if note else "") + replicate_note(len(d.replicates)))
    return Drawn(layout(fig, "Attention entropy difference per layer (negative: long SFT spreads attention more)"), cap)


def entropy_heatmaps(d: StudyData) -> Optional[Drawn]:
    u = d.first("attention_spread")
    if u is None or not d.results(LONG, "attention_spread") or not d.results(SHORT, "attention_spread"):
        return None
    phases = [str(p) for p in u.result.coords.get("phase", [])]
    fig = make_subplots(rows=len(phases), cols=3, horizontal_spacing=SPACING, vertical_spacing=0.12,
                        subplot_titles=[f"{ph}: {w}" for ph in phases for w in ("long SFT", "short SFT", "long − short")])
    notes = []
    for r, ph in enumerate(phases, start=1):
        ms = [_entropy_map(d, m, ph) for m in (LONG, SHORT)]
        if ms[0] is None or ms[1] is None:
            continue
        vmax = float(np.nanmax(ms))
        diff = ms[0] - ms[1]
        for c, (m, is_diff) in enumerate(((ms[0], False), (ms[1], False), (diff, True)), start=1):
            _heat(fig, m, r, c, len(phases), is_diff, "Δ nats" if is_diff else "nats", vmax)
        i, j = np.unravel_index(int(np.nanargmax(np.abs(diff))), diff.shape)
        notes.append(f"{ph}: mean {np.nanmean(ms[0]):.3f} (long) vs {np.nanmean(ms[1]):.3f} nats (short), largest "
                     f"difference at layer {i} head {j} ({diff[i, j]:+.3f} nats)")
    cap = ("Attention entropy (nats) per layer and head for each phase: long, short and long − short (red: long "
           "higher). " + "; ".join(notes) + ". Per-layer intervals are in the figure above.")
    return Drawn(layout(fig, "Attention entropy per head (nats) by phase", height=330 * len(phases) + 80), cap)


def _entropy_map(d: StudyData, m: ModelRef, phase: str) -> Optional[np.ndarray]:
    maps = []
    for r in d.results(m, "attention_spread").values():
        t = per_prompt("entropy", phase)(r)
        if t is not None:
            maps.append(np.nanmean(t["entropy"], axis=0))
    return np.mean(np.stack(maps), axis=0) if maps else None
