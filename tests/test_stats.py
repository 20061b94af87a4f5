"""The bootstrap behind every interval: coverage near nominal on synthetic data with a known truth,
pairing, replicates, and the verdict rules."""

from __future__ import annotations

import numpy as np
import pytest

from lensft.report.stats import Bootstrap, Interval, mean_diff, mean_of, wmean
from lensft.report.verdicts import Claim, Part


def test_weights_are_resamples_of_n_items() -> None:
    w = Bootstrap(1000, seed=3).weights(25, 1000)
    assert w.shape == (1000, 25) and (w.sum(1) == 25).all() and (w >= 0).all()
    assert w.mean() == pytest.approx(1.0, abs=0.02)  # each item drawn once per resample on average


def test_wmean_skips_nan_items_and_matches_numpy() -> None:
    x = np.array([1.0, np.nan, 3.0, 5.0])
    assert wmean(np.ones((1, 4)), x)[0] == pytest.approx(3.0)
    w = np.array([[2.0, 1.0, 0.0, 1.0]])
    assert wmean(w, x)[0] == pytest.approx((2 * 1 + 5) / 3)


@pytest.mark.parametrize("n_items, p_a, p_b", [(40, 0.5, 0.6), (120, 0.3, 0.3)])
def test_paired_interval_covers_the_truth_near_nominally(n_items: int, p_a: float, p_b: float) -> None:
    """Oracle: the true difference p_b - p_a of the generating process. Over 300 simulated studies the
    95% interval must contain it 90-99% of the time (percentile bootstrap is slightly liberal at small n)."""
    rng = np.random.default_rng(0)
    boot = Bootstrap(1000, seed=1)
    hits = 0
    for _ in range(300):
        u = rng.random(n_items)  # item difficulty, shared: both models see the same items
        a = (u < p_a).astype(float)
        tied = rng.random(n_items) < 0.7  # most items: b follows the same difficulty
        b = np.where(tied, u < p_b, rng.random(n_items) < p_b).astype(float)  # E[b] = p_b, E[a] = p_a
        truth = p_b - p_a
        iv = boot.interval([mean_diff(b, a)], [n_items])
        hits += iv.low <= truth <= iv.high
    assert 0.90 <= hits / 300 <= 0.99, hits / 300


def test_interval_of_a_mean_has_the_right_width() -> None:
    """Oracle: the normal approximation 1.96 * sd / sqrt(n) of a mean of n iid values."""
    x = np.random.default_rng(5).normal(size=400)
    iv = Bootstrap(4000, seed=2).interval([mean_of(x)], [400])
    half = 1.96 * x.std(ddof=1) / np.sqrt(400)
    assert iv.estimate == pytest.approx(x.mean())
    assert (iv.high - iv.low) / 2 == pytest.approx(half, rel=0.1)


def test_replicates_widen_the_interval_when_they_disagree() -> None:
    """Two replicates whose means differ by 1: resampling replicates must cover both."""
    boot = Bootstrap(2000, seed=0)
    x0, x1 = np.zeros(50), np.ones(50)
    iv = boot.interval([mean_of(x0), mean_of(x1)], [50, 50])
    assert iv.estimate == pytest.approx(0.5) and iv.n_replicates == 2
    assert iv.low <= 0.05 and iv.high >= 0.95  # draws that pick one replicate twice reach 0 and 1
    same = boot.interval([mean_of(x0 + 0.5), mean_of(x0 + 0.5)], [50, 50])
    assert same.low == same.high == pytest.approx(0.5)


def test_undefined_statistic_gives_no_interval() -> None:
    assert Bootstrap(1000).interval([mean_of(np.full(5, np.nan))], [5]) is None


def _part(lo: float, hi: float, direction: int) -> Part:
    return Part("q", direction, Interval((lo + hi) / 2, lo, hi))


@pytest.mark.parametrize("parts, verdict", [
    ([_part(0.1, 0.3, +1)], "holds"),
    ([_part(-0.3, -0.1, +1)], "contradicted"),
    ([_part(-0.1, 0.3, +1)], "inconclusive"),
    ([_part(0.1, 0.3, +1), _part(-0.3, -0.1, -1)], "holds"),
    ([_part(0.1, 0.3, +1), _part(-0.1, 0.1, -1)], "inconclusive"),
    ([_part(0.1, 0.3, +1), _part(0.1, 0.2, -1)], "contradicted"),
    ([Part("p", +1, support=0.97)], "holds"),
    ([Part("p", +1, support=0.5)], "inconclusive"),
    ([Part("p", +1, support=0.02)], "contradicted"),
    ([Part("p", +1)], "not measured"),
])
def test_verdict_rules(parts: list[Part], verdict: str) -> None:
    assert Claim(1, "c", "p", parts).verdict == verdict


def test_failed_validity_check_is_not_measured_whatever_the_interval() -> None:
    c = Claim(1, "c", "p", [_part(0.1, 0.3, +1)], check="too few copied needles")
    assert c.verdict == "not measured" and c.as_dict()["check"] == "too few copied needles"
