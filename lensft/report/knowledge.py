"""Claim 7: conflict accuracy falls from short-only to long-only SFT (memory -> context).

Models are compared on the items *every* compared model knows closed-book (the intersection of
their ``known`` flags), so a drop cannot come from one arm forgetting facts. A model that answers
the yes/no questions one way only (yes-rate below 5% or above 95%) makes the yes/no accuracy
meaningless (50% on a balanced set whatever it believes): the claim is then not measured.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from lensft.report.data import LONG, SHORT, StudyData
from lensft.report.measures import Items, interval, record_fields
from lensft.report.stats import wmean
from lensft.report.verdicts import Claim, Part, not_measured
from lensft.study.record import ModelRef

MIN_KNOWN = 10
ONE_WAY = 0.05  # a yes-rate below this (or above 1 - this) is answering one way only

FIELDS = ("yn_correct", "yn_pred", "known")
knowledge_items = record_fields(*FIELDS)


def known_by_all(t: list[Items]) -> np.ndarray:
    """1 for items every model knows closed-book, NaN elsewhere (NaN items drop out of means)."""
    k = np.prod(np.stack([np.nan_to_num(x["known"]) for x in t]), axis=0)
    return np.where(k > 0, 1.0, np.nan)


def accuracy_on_known(t: list[Items], i: int, w: np.ndarray) -> np.ndarray:
    return wmean(w, t[i]["yn_correct"] * known_by_all(t))


def n_known_by_all(d: StudyData, models: Sequence[ModelRef]) -> int:
    """Items known by every model, summed over replicates."""
    total = 0
    for rep in d.replicates:
        rs = [d.results(m, "knowledge").get(rep) for m in models]
        if all(r is not None for r in rs):
            known = [{x["id"] for x in r.records if x.get("known")} for r in rs]  # type: ignore[union-attr]
            total += len(set.intersection(*known))
    return total


def yes_rate(d: StudyData, model: ModelRef) -> Optional[float]:
    preds = [bool(x["yn_pred"]) for r in d.results(model, "knowledge").values() for x in r.records
             if x.get("yn_pred") is not None]
    return float(np.mean(preds)) if preds else None


def knowledge_check(d: StudyData, models: Sequence[ModelRef]) -> Optional[str]:
    """The failed validity check of a knowledge comparison, or None."""
    one_way = [f"{m.label} says yes to {100 * r:.0f}%" for m in models
               if (r := yes_rate(d, m)) is not None and not ONE_WAY <= r <= 1 - ONE_WAY]
    if one_way:
        return "answers yes/no one way only: " + ", ".join(one_way)
    n = n_known_by_all(d, models)
    return None if n >= MIN_KNOWN else f"only {n} items known closed-book by every compared model (need {MIN_KNOWN})"


def slope(t: list[Items], fractions: np.ndarray):
    """Statistic: least-squares slope of yes/no accuracy (on items known by all) vs long fraction."""
    x = fractions - fractions.mean()

    def f(w: np.ndarray) -> np.ndarray:
        acc = np.stack([accuracy_on_known(t, i, w) for i in range(len(t))], axis=1)  # [draws, arm]
        return (acc - acc.mean(1, keepdims=True)) @ x / (x @ x)

    return f


def knowledge_claim(d: StudyData) -> Claim:
    text = "Conflict accuracy falls from short-only to long-only (memory → context)"
    paper = "99.8% vs 50%; falls with the long share (Table 6)"
    arms = d.sft_arms("knowledge")
    if SHORT.key not in {m.key for m in arms} or LONG.key not in {m.key for m in arms}:
        return not_measured(7, text, paper, "the knowledge step did not run on both arms")
    drop = interval(d, ("knowledge",), [SHORT, LONG], knowledge_items,
                    lambda t: (lambda w: accuracy_on_known(t, 0, w) - accuracy_on_known(t, 1, w)))
    parts = [Part("yes/no accuracy short − long, items both know", +1, drop, scale=100, unit=" pp")]
    compared = [SHORT, LONG]
    if len(arms) > 2:
        fr = np.array([float(m.long_fraction) for m in arms])  # type: ignore[arg-type]
        parts.append(Part("slope of yes/no accuracy over the long fraction, items all arms know", -1,
                          interval(d, ("knowledge",), arms, knowledge_items, lambda t: slope(t, fr)),
                          scale=100, unit=" pp per unit fraction"))
        compared = arms
    return Claim(7, text, paper, parts, check=knowledge_check(d, compared),
                 note="yes/no accuracy against the memorised fact (the paper's metric), on items every compared "
                      "model answers correctly closed-book")
