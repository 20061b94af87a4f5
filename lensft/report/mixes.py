"""Claims 8-9: what mixing short and long SFT data does (organism mixes only).

- Claim 8 ("GSM8K peaks at a 50/50 mix, MMLU at long-only") becomes the bootstrap distribution
  of the best arm: the support of the statement is the probability, over resamples, that an
  interior mix is the best arm on the GSM8K analogue and that the long arm is the best on the
  MMLU analogue (ties share the probability).
- Claim 9 ("retrieval is non-monotonic over mixes") becomes: some interior mix scores above both
  endpoints, ``max over mixes of min(score(mix) − score(short), score(mix) − score(long)) > 0``.
"""

from __future__ import annotations

import numpy as np

from lensft.report.data import ANALOGUE, StudyData
from lensft.report.measures import Items, ceiling_check, distribution, interval, retrieval_items, task_correct
from lensft.report.mechanisms import head_scores, retrieval_check
from lensft.report.stats import wmean
from lensft.report.verdicts import Claim, Part, not_measured


def best_arms(t: list[Items]):
    """Statistic: each arm's share of the best accuracy, ``[draws, arm]`` (tied-best arms share 1 equally)."""
    def f(w: np.ndarray) -> np.ndarray:
        acc = np.stack([wmean(w, x["correct"]) for x in t], axis=1)  # [draws, arm]
        top = np.isclose(acc, acc.max(axis=1, keepdims=True), rtol=0, atol=1e-12)
        return top / top.sum(1, keepdims=True)
    return f


def _best_part(d: StudyData, task: str, benchmark: str, which: str) -> Part:
    arms = d.sft_arms("short_tasks")
    fr = np.array([float(m.long_fraction) for m in arms])  # type: ignore[arg-type]
    wanted = (fr > 0) & (fr < 1) if which == "mix" else fr == 1.0
    name = f"P(best arm on {task} ({benchmark}) is {'an interior mix' if which == 'mix' else 'long-only'})"
    draws = distribution(d, ("short_tasks",), arms, task_correct(task), best_arms)  # [draws, arm]
    if draws.size == 0:
        return Part(name, +1)
    share = draws.mean(0)
    detail = "best arm over resamples, ties shared: " + ", ".join(
        f"{100 * f:.0f}% long {v:.2f}" for f, v in zip(fr, share) if v > 0)
    return Part(name, +1, support=float(draws[:, wanted].sum(1).mean()), detail=detail)


def mix_peak_claim(d: StudyData) -> Claim:
    g, m = ANALOGUE["gsm8k"], ANALOGUE["mmlu"]
    text, paper = f"{g} (GSM8K) peaks at a mixed ratio; {m} (MMLU) peaks at long-only", "GSM8K 50%; MMLU 100%"
    if not d.has_mixes("short_tasks"):
        return not_measured(8, text, paper, "needs organism mixes (a user triple has none)")
    missing = [t for t in (g, m) if t not in d.tasks()]
    if missing:
        return not_measured(8, text, paper, f"the task set has no {', '.join(missing)} items")
    arms = d.sft_arms("short_tasks")
    check = ceiling_check(d, ("short_tasks",), arms, g) or ceiling_check(d, ("short_tasks",), arms, m)
    return Claim(8, text, paper, [_best_part(d, g, "GSM8K", "mix"), _best_part(d, m, "MMLU", "long")], check=check,
                 note="P is the bootstrap probability of the statement; it holds at P ≥ 0.95 and is contradicted at P ≤ 0.05")


def interior_peak(t: list[Items]):
    """Statistic: max over interior arms of min(score − first arm's, score − last arm's) (mean head score)."""
    def f(w: np.ndarray) -> np.ndarray:
        s = np.stack([head_scores(x, w).mean((1, 2)) for x in t], axis=1)  # [draws, arm]
        inner = s[:, 1:-1]
        return np.minimum(inner - s[:, :1], inner - s[:, -1:]).max(axis=1)
    return f


def retrieval_mix_claim(d: StudyData) -> Claim:
    text, paper = "Retrieval score over mixes is non-monotonic", "17.31 at 10% UltraChat vs 16.94 long-only, 15.39 short-only"
    if not d.has_mixes("retrieval"):
        return not_measured(9, text, paper, "needs organism mixes (a user triple has none)")
    arms = d.sft_arms("retrieval")
    part = Part("max over mixes of min(score − short, score − long), mean head score ×100", +1,
                interval(d, ("retrieval",), arms, retrieval_items, interior_peak), scale=100, digits=2)
    return Claim(9, text, paper, [part], check=retrieval_check(d, arms),
                 note="an interior mix must score above both endpoints (head scores over copied needles)")
