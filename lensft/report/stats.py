"""Intervals for every number the report compares: a paired, hierarchical bootstrap.

Items are resampled with replacement *once per draw and shared by every model of a replicate*
(the same items in both models: a paired bootstrap). With several replicates (organism world
seeds x SFT seeds), each draw first resamples replicates, then items inside each drawn replicate
independently ("over seeds, then items"); the draw's value is the mean over the drawn replicates.

A resample of ``n`` items is represented by integer weights ``w`` (how often each item was drawn,
summing to ``n``), so every statistic is a function of weighted sums: ``w @ x`` instead of
materialising resampled arrays. A statistic is a callable ``f(w) -> values`` taking weights of
shape ``[draws, n]`` and returning one value per draw (shape ``[draws]``); the point estimate is
``f`` at unit weights. The interval is the percentile interval of the draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from jaxtyping import Float

#: f(weights [draws, items]) -> value per draw [draws]
Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided percentile interval at ``confidence``."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95
    n_items: int = 0
    n_replicates: int = 1

    @property
    def sign(self) -> int:
        """+1 when the interval lies above zero, -1 below zero, 0 when it contains zero."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def scaled(self, k: float | int) -> "Interval":
        lo, hi = sorted((self.low * k, self.high * k))
        return Interval(self.estimate * k, lo, hi, self.confidence, self.n_items, self.n_replicates)

    def fmt(self, scale: float | int = 1.0, digits: int = 1, unit: str = "", signed: bool = False) -> str:
        """``+2.1 pp [−0.4, +4.6]`` (scaled by ``scale``)."""
        s = self.scaled(scale)
        f = f"{{:{'+' if signed else ''}.{digits}f}}"
        return f"{f.format(s.estimate)}{unit} [{f.format(s.low)}, {f.format(s.high)}]"

    def as_dict(self) -> dict[str, float | int]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence,
                "n_items": self.n_items, "n_replicates": self.n_replicates}


@dataclass(frozen=True)
class Band:
    """Pointwise intervals of a vector quantity (e.g. one value per layer)."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    confidence: float = 0.95

    def scaled(self, k: float | int) -> "Band":
        lo, hi = np.minimum(self.low * k, self.high * k), np.maximum(self.low * k, self.high * k)
        return Band(self.estimate * k, lo, hi, self.confidence)


class Bootstrap:
    """Seeded paired bootstrap over items (and replicates); see the module docstring."""

    def __init__(self, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> None:
        if resamples < 1:
            raise ValueError("resamples must be positive")
        self.resamples, self.confidence, self.seed = resamples, confidence, seed

    def weights(self, n: int, draws: int, salt: int = 0) -> Float[np.ndarray, "draws items"]:
        """Multinomial item counts of ``draws`` resamples of ``n`` items (each row sums to ``n``)."""
        rng = np.random.default_rng([self.seed, n, salt])
        return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)

    def interval(self, stats: Sequence[Statistic], n_items: Sequence[int]) -> Optional[Interval]:
        """The interval of the mean over replicates of ``stats[r]`` (one statistic per replicate,
        on that replicate's ``n_items[r]`` aligned items). None when no replicate has items or the
        estimate is undefined (e.g. no item passes the statistic's filter)."""
        pairs = [(f, n) for f, n in zip(stats, n_items) if n > 0]
        if not pairs:
            return None
        point = float(np.mean([f(np.ones((1, n)))[0] for f, n in pairs]))
        if not math.isfinite(point):
            return None
        draws = self._draws(pairs)
        draws = draws[np.isfinite(draws)]
        if draws.size < 0.99 * self.resamples:  # too many resamples left the statistic undefined
            return None
        a = (1.0 - self.confidence) / 2
        lo, hi = np.quantile(draws, [a, 1.0 - a])
        return Interval(point, float(lo), float(hi), self.confidence, int(sum(n for _, n in pairs)), len(pairs))

    def band(self, stats: Sequence[Statistic], n_items: Sequence[int]) -> Optional["Band"]:
        """Pointwise intervals of a vector statistic (``f(w)`` of shape ``[draws, k]``), e.g. one
        value per layer; None when no replicate has items."""
        pairs = [(f, n) for f, n in zip(stats, n_items) if n > 0]
        if not pairs:
            return None
        point = np.mean([np.asarray(f(np.ones((1, n))), dtype=float)[0] for f, n in pairs], axis=0)
        draws = self._draws(pairs)
        a = (1.0 - self.confidence) / 2
        with np.errstate(all="ignore"):
            lo, hi = np.nanquantile(draws, [a, 1.0 - a], axis=0) if np.isfinite(draws).any() else (point * np.nan,) * 2
        return Band(point, np.asarray(lo), np.asarray(hi), self.confidence)

    def distribution(self, stats: Sequence[Statistic], n_items: Sequence[int]) -> np.ndarray:
        """The bootstrap draws themselves (for statistics such as the arg-max of several means)."""
        pairs = [(f, n) for f, n in zip(stats, n_items) if n > 0]
        return self._draws(pairs) if pairs else np.array([])

    def _draws(self, pairs: list[tuple[Statistic, int]]) -> np.ndarray:
        """``[draws, ...]``: the statistic (mean over drawn replicates) of every bootstrap draw."""
        B, R = self.resamples, len(pairs)
        if R == 1:
            f, n = pairs[0]
            return np.asarray(f(self.weights(n, B)), dtype=float)
        # every draw picks R replicates; each slot gets its own item resample of its replicate
        per_slot = []
        for r, (f, n) in enumerate(pairs):
            v = np.asarray(f(self.weights(n, B * R, salt=r + 1)), dtype=float)
            per_slot.append(v.reshape((B, R) + v.shape[1:]))
        stacked = np.stack(per_slot)  # [replicate, draw, slot, ...]
        pick = np.random.default_rng([self.seed, R, 7]).integers(0, R, size=(B, R))
        return stacked[pick, np.arange(B)[:, None], np.arange(R)[None, :]].mean(axis=1)


# --- building blocks for statistics -------------------------------------------------------------
def wmean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weighted mean over items: ``w`` [draws, n], ``x`` [n, ...] -> [draws, ...] (NaN where the
    weights of the non-NaN items sum to 0). NaN items are left out (their weight does not count)."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    flat_x = np.where(ok, x, 0.0).reshape(len(x), -1)
    flat_ok = ok.reshape(len(x), -1).astype(float)
    num, den = w @ flat_x, w @ flat_ok
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out.reshape((w.shape[0],) + x.shape[1:])


def mean_diff(a: np.ndarray, b: np.ndarray) -> Statistic:
    """Statistic: mean(a) − mean(b) over the same items (paired)."""
    return lambda w: wmean(w, a) - wmean(w, b)


def mean_of(x: np.ndarray) -> Statistic:
    """Statistic: mean(x) over items."""
    return lambda w: wmean(w, x)
