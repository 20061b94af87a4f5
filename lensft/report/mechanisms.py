"""Claims 4-6: what long SFT changes inside the model (retrieval heads, attention entropy, FFN
activations), with the per-model statistics the figures plot.

- Retrieval (Wu et al. 2024): a head's score is averaged over the items whose needle the model
  copied (the probe's ``copied`` flag); a claim needs at least :data:`MIN_COPIED` copied needles
  in each compared arm, else it is not measured.
- Entropy (Zhang et al. 2024): per-prompt mean entropy of a phase's queries, averaged over the
  middle-to-late layers (the last two thirds) and every head.
- FFN: statistics pooled over the tokens of the resampled items from per-item moment sums.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lensft.report.data import LONG, SHORT, StudyData
from lensft.report.measures import Items, ffn_moments, interval, per_prompt, retrieval_items
from lensft.report.stats import wmean
from lensft.report.verdicts import Claim, Part, not_measured

#: the fewest copied needles per arm a retrieval comparison is judged on (issue: Wu et al. keep
#: only items the model retrieved)
MIN_COPIED = 10
RETRIEVAL_THRESHOLD = 0.1


# --- retrieval ----------------------------------------------------------------------------------
def head_scores(t: Items, w: np.ndarray) -> np.ndarray:
    """``[draws, layer, head]``: head scores averaged over the (resampled) copied items."""
    c = t["copied"]
    return wmean(w, np.where(c[:, None, None] > 0, t["score"], np.nan))


def n_copied(d: StudyData, model) -> int:
    """Copied needles of a model, summed over replicates."""
    return int(sum(sum(bool(x.get("copied")) for x in r.records) for r in d.results(model, "retrieval").values()))


def retrieval_check(d: StudyData, models) -> Optional[str]:
    """The failed validity check of a retrieval comparison, or None."""
    low = [(m.label, n_copied(d, m)) for m in models if n_copied(d, m) < MIN_COPIED]
    if low:
        return "too few copied needles: " + ", ".join(f"{lab} copied {k}" for lab, k in low) + f" (need {MIN_COPIED})"
    return None


def retrieval_claim(d: StudyData) -> Claim:
    text = "Long SFT has higher retrieval scores (more retrieval heads improved)"
    paper = "16.94 vs 15.39; 35 vs 11 heads"
    if not d.results(SHORT, "retrieval") or not d.results(LONG, "retrieval"):
        return not_measured(4, text, paper, "the retrieval step did not run on both arms")
    check = retrieval_check(d, [SHORT, LONG])

    def mean_diff(t: list[Items]):
        return lambda w: (head_scores(t[1], w) - head_scores(t[0], w)).mean((1, 2))

    def improved(t: list[Items]):
        def f(w: np.ndarray) -> np.ndarray:
            s, lo = head_scores(t[0], w), head_scores(t[1], w)
            ret = (s > RETRIEVAL_THRESHOLD) | (lo > RETRIEVAL_THRESHOLD)
            return ((lo > s) & ret).sum((1, 2)) - ((lo < s) & ret).sum((1, 2)).astype(float)
        return f

    parts = [Part("mean head score ×100 (long − short), copied needles", +1,
                  interval(d, ("retrieval",), [SHORT, LONG], retrieval_items, mean_diff), scale=100, digits=2),
             Part(f"retrieval heads (score > {RETRIEVAL_THRESHOLD}) improved − worsened", +1,
                  interval(d, ("retrieval",), [SHORT, LONG], retrieval_items, improved), digits=0)]
    return Claim(4, text, paper, parts, check=check,
                 note="head scores follow Wu et al. 2024: averaged over items whose needle the model copied")


# --- entropy ------------------------------------------------------------------------------------
def late_layers(n: int) -> slice:
    """The middle-to-late layers the paper's entropy claim is about: the last two thirds."""
    return slice(n // 3, n)


def spread_phases(d: StudyData) -> tuple[Optional[str], str]:
    """(phase standing for the paper's reasoning period, note) from the spread results."""
    u = d.first("attention_spread")
    phases = [str(p) for p in u.result.coords.get("phase", [])] if u else []
    if "reasoning" in phases:
        return "reasoning", ""
    if "prompt" in phases:
        return "prompt", "the prompts have no chain of thought: the prompt phase stands in for the reasoning period"
    return None, ""


def entropy_delta(t: list[Items], sl: slice, col: str = "entropy"):
    """Statistic: mean entropy of model 1 minus model 0 over layers ``sl`` and all heads (nats)."""
    return lambda w: (wmean(w, t[1][col])[:, sl] - wmean(w, t[0][col])[:, sl]).mean(axis=(1, 2))


def entropy_claim(d: StudyData) -> Claim:
    text = "Long SFT: higher reasoning entropy, lower answer entropy (middle-to-late layers)"
    paper = "reasoning ↑, answer ↓ in layers 10, 12, 18–30 of 32"
    rp, note = spread_phases(d)
    if rp is None or not d.results(SHORT, "attention_spread") or not d.results(LONG, "attention_spread"):
        return not_measured(5, text, paper, "the attention-spread step did not run on both arms")
    sl = late_layers(d.n_layers)
    parts = [Part(f"Δ entropy long − short, {ph} phase, layers {sl.start}–{d.n_layers - 1}", sign,
                  interval(d, ("attention_spread",), [SHORT, LONG], per_prompt("entropy", ph),
                           lambda t: entropy_delta(t, sl)), unit=" nats", digits=3)
             for ph, sign in ((rp, +1), ("answer", -1))]
    note = "; ".join(x for x in (note, "answer phase: the queries that generate the answer tokens") if x)
    return Claim(5, text, paper, parts, check=None if all(p.interval for p in parts) else "a phase has no queries",
                 note=note)


# --- FFN ----------------------------------------------------------------------------------------
def pooled_ffn(t: Items, w: np.ndarray) -> dict[str, np.ndarray]:
    """``{stat: [draws, layer]}``: mean, population variance and sparsity pooled over resampled items."""
    m = t["moments"]  # [item, layer, 4]: count, sum, sum of squares, below threshold
    s = (w @ m.reshape(len(m), -1)).reshape(w.shape[0], m.shape[1], 4)
    n = np.where(s[..., 0] > 0, s[..., 0], np.nan)
    mean = s[..., 1] / n
    return {"mean": mean, "var": s[..., 2] / n - mean * mean, "sparsity": s[..., 3] / n}


def relative_delta(t: list[Items], stat: str):
    """Statistic ``[draws, layer]``: (long − short) / |short| of one pooled FFN statistic."""
    def f(w: np.ndarray) -> np.ndarray:
        a, b = pooled_ffn(t[0], w)[stat], pooled_ffn(t[1], w)[stat]
        return (b - a) / np.where(np.abs(a) > 0, np.abs(a), np.nan)
    return f


def ffn_claim(d: StudyData) -> Claim:
    text = "Long SFT: higher FFN activation mean and variance, lower sparsity"
    paper = "mean ↑, variance ↑, sparsity ↓"
    if not d.results(SHORT, "ffn_activations") or not d.results(LONG, "ffn_activations"):
        return not_measured(6, text, paper, "the FFN step did not run on both arms")
    parts = [Part(f"relative Δ {stat} (long − short)/|short|, mean over layers", sign,
                  interval(d, ("ffn_activations",), [SHORT, LONG], ffn_moments,
                           lambda t, stat=stat: (lambda w: np.nanmean(relative_delta(t, stat)(w), axis=1))),
                  scale=100, unit="%")
             for stat, sign in (("mean", +1), ("var", +1), ("sparsity", -1))]
    return Claim(6, text, paper, parts, note="statistics of act(W_gate x) pooled over tokens; special tokens left out")
