"""Shared pieces of the report's figures: layout, colours, error bars from intervals, integer
axes for layers and heads, and the "not measured" panel.

Every figure function in this package takes a :class:`~lensft.report.data.StudyData` and returns
a :class:`Drawn` (the plotly figure and a caption computed from the same numbers), or None when
the study has no data for it. Every bar and line carries 95% bootstrap intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from lensft.report.stats import Band, Interval
from lensft.study.record import ModelRef

COLORS = {"base": "#7f7f7f", "short": "#1f77b4", "long": "#d62728"}
_MIX_COLORS = ["#9467bd", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class Drawn:
    """A figure and its caption."""

    figure: go.Figure
    caption: str


def color(model: ModelRef, i: int = 0) -> str:
    return COLORS.get(model.label, _MIX_COLORS[i % len(_MIX_COLORS)])


def layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01), template="plotly_white", height=height,
                      margin=dict(l=70, r=40, t=80, b=70), legend=dict(orientation="h", y=-0.22))
    return fig


def bars_from(ivs: Sequence[Optional[Interval]], scale: float = 100.0) -> tuple[list[Optional[float]], dict]:
    """(values, error_y) for bars or points from intervals (asymmetric 95% error bars)."""
    vals = [None if iv is None else iv.estimate * scale for iv in ivs]
    plus = [0.0 if iv is None else (iv.high - iv.estimate) * scale for iv in ivs]
    minus = [0.0 if iv is None else (iv.estimate - iv.low) * scale for iv in ivs]
    return vals, dict(type="data", symmetric=False, array=plus, arrayminus=minus, visible=True, thickness=1.2)


def band_error(b: Band, scale: float = 1.0) -> dict:
    """error_y for a line from a :class:`Band`."""
    s = b.scaled(scale)
    return dict(type="data", symmetric=False, array=np.nan_to_num(s.high - s.estimate).tolist(),
                arrayminus=np.nan_to_num(s.estimate - s.low).tolist(), visible=True, thickness=1.0)


def index_axis(fig: go.Figure, axis: str, title: str, **where: int) -> None:
    """A layer or head axis: integer ticks, one per index."""
    upd = fig.update_xaxes if axis == "x" else fig.update_yaxes
    upd(title_text=title, tickmode="linear", dtick=1, tick0=0, tickformat="d", **where)


def not_measured_panel(fig: go.Figure, reason: str, row: int = 1, col: int = 1) -> None:
    """Say, inside the panel, why it holds no data (instead of drawing an all-zero map)."""
    fig.add_annotation(text=f"not measured:<br>{reason}", showarrow=False, xref="x domain", yref="y domain",
                       x=0.5, y=0.5, font=dict(size=13, color="#8a5300"), row=row, col=col)
    fig.update_xaxes(visible=False, row=row, col=col)
    fig.update_yaxes(visible=False, row=row, col=col)


def colorbar(title: str, col: int, n_cols: int, row: int = 1, n_rows: int = 1, spacing: float = 0.1) -> dict:
    """A colour bar placed right of its own panel (not over the next one)."""
    width = (1.0 - spacing * (n_cols - 1)) / n_cols
    x = (col - 1) * (width + spacing) + width + 0.01
    height = 1.0 / n_rows
    return dict(title=dict(text=title, side="right"), x=x, xanchor="left", thickness=10,
                len=0.85 * height, y=1.0 - (row - 0.5) * height, yanchor="middle")


def fmt_iv(iv: Optional[Interval], scale: float = 100.0, unit: str = "%", digits: int = 1, signed: bool = False) -> str:
    return "n/a" if iv is None else iv.fmt(scale, digits, unit, signed=signed)


def replicate_note(n: int) -> str:
    return (f" Intervals are 95% paired bootstrap intervals over items within each of {n} replicates, "
            "resampling replicates first." if n > 1 else " Intervals are 95% paired bootstrap intervals over items.")
