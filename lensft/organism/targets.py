"""The organism's capability targets (issue 12), checked on :class:`~lensft.organism.evaluate.Scores`.

A base must *remember* (closed-book recall of facts whose questions were never trained) and *read*
(recall of novel entities from its context, short and long, and needle copying), and have at least
one retrieval head in Wu et al.'s sense. Each SFT arm must do its own job: held-out items drawn like
its own training data (the short forms for the short arm, the long forms for the long arm). How an
arm does on the *other* length, on conflicts and under swaps is what the study measures; it is
never a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from lensft.organism.evaluate import Scores

#: Task sets of the short form; their long forms carry the suffix ``_long``.
SHORT_TASKS = ("fact_recall", "reading", "cloze", "arithmetic")


@dataclass(frozen=True)
class Target:
    """One capability target: a value read from a checkpoint's scores and the bound it must reach."""

    name: str
    bound: float
    read: Callable[[Scores], Optional[float]]

    def check(self, scores: Scores) -> tuple[Optional[float], Optional[bool]]:
        """(value, met); both None when the scores lack the measurement."""
        v = self.read(scores)
        return (None, None) if v is None else (v, v >= self.bound)


def _longest_needle(s: Scores) -> Optional[float]:
    return s.needle_copy_by_length[max(s.needle_copy_by_length)] if s.needle_copy_by_length else None


def _mean(s: Scores, names: list[str]) -> Optional[float]:
    vals = [s.accuracy[n] for n in names if n in s.accuracy]
    return sum(vals) / len(vals) if len(vals) == len(names) else None


BASE_TARGETS = (
    Target("closed-book recall, held-out subjects (fact_recall)", 0.9, lambda s: s.accuracy.get("fact_recall")),
    Target("in-context recall of novel entities, short context (reading)", 0.9, lambda s: s.accuracy.get("reading")),
    Target("in-context recall at 300-1,000 tokens, random depth (reading_long)", 0.7,
           lambda s: s.accuracy.get("reading_long")),
    Target("needle copy at the longest haystack", 0.8, _longest_needle),
    Target("heads with a Wu retrieval score > 0.1", 1, lambda s: None if s.n_retrieval_heads is None
           else float(s.n_retrieval_heads)),
)


def arm_target(long_fraction: float) -> Target:
    """The in-distribution sanity target of an arm: mean accuracy on held-out items of its own form(s).

    The short arm (fraction 0) is held to the short forms, the long arm (1) to the long forms, a
    mix to both (its data holds both).
    """
    names = (list(SHORT_TASKS) if long_fraction < 1 else []) + \
            ([f"{t}_long" for t in SHORT_TASKS] if long_fraction > 0 else [])
    return Target(f"held-out items of its own training form(s) ({', '.join(names)})", 0.8,
                  lambda s: _mean(s, names))
