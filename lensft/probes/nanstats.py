"""Means over values where NaN marks "not measured" (a prompt without a phase, an item the logit
lens skipped): the one place probes average such tensors.

NaN is the only missing marker; an infinite value is a value (it propagates, as it should).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def nanmean(x: Tensor, dim: int) -> Tensor:
    """Mean of ``x`` along ``dim`` over the non-NaN values; NaN where a slice has none.

    Shape: ``x``'s shape without ``dim``; dtype: ``x``'s (float).
    """
    ok = ~torch.isnan(x)
    n = ok.sum(dim)
    total = torch.where(ok, x, torch.zeros_like(x)).sum(dim)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, math.nan))


def mean_or_none(x: Tensor) -> Optional[float]:
    """Mean of every non-NaN value of ``x`` (in float64), or ``None`` when there is none."""
    v = float(torch.nanmean(x.double())) if x.numel() else math.nan
    return None if math.isnan(v) else v


def floats_or_none(x: Tensor) -> list[Optional[float]]:
    """The values of a 1-d tensor as Python floats, NaN as ``None`` (JSON-ready)."""
    return [None if math.isnan(v) else float(v) for v in x.tolist()]
