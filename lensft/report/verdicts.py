"""Claims and their verdicts: a paper statement restated as quantities with intervals.

A claim has one or more *parts*; each part is a quantity the paper says is above zero
(``direction=+1``) or below zero (``-1``), measured with a 95% bootstrap interval (or, for
arg-max statements such as "peaks at a mix", the bootstrap probability that the statement is
true). The verdict:

- **holds**: every part's interval excludes zero in the paper's direction;
- **contradicted**: some part's interval excludes zero the other way;
- **inconclusive**: neither;
- **not measured**: a named validity check failed (e.g. fewer than 10 copied needles, or every
  compared model right on every item: a ceiling) or the experiment did not run. That is not a
  negative finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from lensft.report.stats import Interval

Verdict = Literal["holds", "contradicted", "inconclusive", "not measured"]


@dataclass
class Part:
    """One measured quantity of a claim.

    Either ``interval`` (a quantity whose sign is the statement) or ``support`` (the bootstrap
    probability that the statement holds, for arg-max statements) is set.
    """

    name: str
    direction: int
    interval: Optional[Interval] = None
    support: Optional[float] = None
    scale: float = 1.0
    unit: str = ""
    digits: int = 1
    detail: str = ""

    def sign(self, confidence: float) -> int:
        """+1: significantly in the paper's direction; -1: significantly against it; 0: neither."""
        if self.support is not None:
            return 1 if self.support >= confidence else -1 if self.support <= 1 - confidence else 0
        if self.interval is None:
            return 0
        return self.interval.sign * self.direction

    @property
    def measured(self) -> str:
        if self.support is not None:
            return f"P = {self.support:.2f}" + (f" ({self.detail})" if self.detail else "")
        if self.interval is None:
            return "n/a"
        return self.interval.fmt(self.scale, self.digits, self.unit, signed=True)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "direction": "> 0" if self.direction > 0 else "< 0",
                "interval": None if self.interval is None else self.interval.scaled(self.scale).as_dict(),
                "support": self.support, "unit": self.unit, "measured": self.measured, "detail": self.detail}


@dataclass
class Claim:
    """One row of the claims table."""

    id: int
    claim: str
    paper: str
    parts: list[Part] = field(default_factory=list)
    check: Optional[str] = None  # the validity check that failed (then the verdict is "not measured")
    note: str = ""
    confidence: float = 0.95

    @property
    def quantity(self) -> str:
        return " ; ".join(f"{p.name} {'> 0' if p.direction > 0 else '< 0'}" for p in self.parts)

    @property
    def measured(self) -> str:
        return " ; ".join(p.measured for p in self.parts) if self.parts else "n/a"

    @property
    def verdict(self) -> Verdict:
        if self.check is not None or not self.parts or any(p.interval is None and p.support is None for p in self.parts):
            return "not measured"
        signs = [p.sign(self.confidence) for p in self.parts]
        if any(s < 0 for s in signs):
            return "contradicted"
        return "holds" if all(s > 0 for s in signs) else "inconclusive"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "claim": self.claim, "quantity": self.quantity, "paper": self.paper,
                "measured": self.measured, "verdict": self.verdict, "check": self.check, "note": self.note,
                "confidence": self.confidence, "parts": [p.as_dict() for p in self.parts]}


def not_measured(id: int, claim: str, paper: str, check: str, parts: Optional[list[Part]] = None) -> Claim:
    """A claim whose experiment did not run or whose validity check failed."""
    return Claim(id, claim, paper, parts or [], check=check)
