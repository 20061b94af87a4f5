"""Progress of an organism build: one typed event per optimiser step, for any renderer.

:func:`lensft.organism.build` calls ``progress(event)`` after every training step of every
stage (the base, then each arm); ``lensft.cli.progress`` renders the events with rich.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """Where one training stage stands.

    Attributes:
        stage: what is training, e.g. ``"base"`` or an arm's label (``"short"``, ``"mix 0.50, sft seed 1"``).
        step: optimiser steps done (1-based).
        total_steps: steps the stage will take.
        tokens: non-padding tokens seen so far.
        tokens_per_s: training throughput so far (tokens per wall-clock second).
        seconds_left: estimated wall-clock seconds until the stage ends.
        loss: the last step's weighted cross-entropy (nats per supervised token).
    """

    stage: str
    step: int
    total_steps: int
    tokens: int
    tokens_per_s: float
    seconds_left: float
    loss: float

    @property
    def done(self) -> bool:
        """True on the stage's last step."""
        return self.step >= self.total_steps


#: A progress callback: called with every :class:`ProgressEvent`.
ProgressFn = Callable[[ProgressEvent], None]
