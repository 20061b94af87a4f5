"""Capability numbers of organism checkpoints, measured by lensft's own probes on the held-out sets.

Nothing here scores answers itself: task sets go through the ``short_tasks`` probe (greedy
decoding, SQuAD-normalised exact match), the needle set through ``retrieval_heads`` (Wu et al.
2024: needle copy accuracy and per-head retrieval scores over copied items) and the conflict
set through ``knowledge_preference``. Used by ``lensft organism info --eval`` and the benchmark.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, Field

from lensft.organism.training import deterministic_torch
from lensft.prompts import PromptSet, read_prompt_set

log = logging.getLogger(__name__)


class Scores(BaseModel):
    """One checkpoint's numbers (None where the set was not given)."""

    label: str
    accuracy: dict[str, float] = Field(default_factory=dict, description="task set -> greedy exact-match accuracy")
    n_items: dict[str, int] = Field(default_factory=dict, description="set -> items scored")
    needle_copy_accuracy: Optional[float] = None
    needle_copy_by_length: dict[int, float] = Field(
        default_factory=dict, description="haystack length (tokens) -> needle copy accuracy at that length")
    n_retrieval_heads: Optional[int] = Field(None, description="heads with Wu retrieval score > 0.1 (copied items)")
    max_retrieval_score: Optional[float] = None
    conflict: dict[str, Optional[float]] = Field(
        default_factory=dict, description="knowledge_preference: ctx_follow_rate, mem_follow_rate, yn_accuracy, known_rate")


def _subset(ps: PromptSet, max_items: int | None) -> PromptSet:
    if max_items is None or len(ps) <= max_items:
        return ps
    return ps.model_copy(update={"items": list(ps.items[:max_items])})


def _number(x: object) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)  # type: ignore[arg-type]


def copy_by_length(ps: PromptSet, records: list[dict]) -> dict[int, float]:
    """Needle copy accuracy per haystack length (the items' ``context_tokens``), from the probe's records."""
    length = {it.id: it.context_tokens for it in ps.items}
    hits: dict[int, list[bool]] = {}
    for r in records:
        if length.get(r["id"]) is not None:
            hits.setdefault(int(length[r["id"]]), []).append(bool(r["copied"]))
    return {n: sum(v) / len(v) for n, v in sorted(hits.items())}


def evaluate_checkpoint(checkpoint: Path, prompt_sets: Mapping[str, Path], *, label: str | None = None,
                        num_threads: int = 2, max_items: int | None = None) -> Scores:
    """Run the probes on one checkpoint: ``short_tasks`` on every task set, ``retrieval_heads`` on
    a needle set, ``knowledge_preference`` on a conflict set (at most ``max_items`` items each)."""
    from lensft.handle import load_model
    from lensft.probes.registry import get_probe

    handle = load_model(checkpoint, label=label)
    out = Scores(label=label or checkpoint.name)
    with deterministic_torch(num_threads):
        for name, path in prompt_sets.items():
            ps = _subset(read_prompt_set(path), max_items)
            out.n_items[name] = len(ps)
            if ps.kind == "task":
                probe = get_probe("short_tasks")
                out.accuracy[name] = float(probe.run(handle, ps, probe.Settings()).summary["accuracy"])
            elif ps.kind == "needle":
                probe = get_probe("retrieval_heads")
                result = probe.run(handle, ps, probe.Settings())
                s = result.summary
                out.needle_copy_accuracy = _number(s.get("needle_copy_accuracy"))
                out.needle_copy_by_length = copy_by_length(ps, result.records)
                out.n_retrieval_heads = int(s.get("n_retrieval_heads") or 0)
                out.max_retrieval_score = _number(s.get("max_score"))
            elif ps.kind == "conflict":
                probe = get_probe("knowledge_preference")
                s = probe.run(handle, ps, probe.Settings()).summary
                out.conflict = {k: _number(s.get(k)) for k in ("ctx_follow_rate", "mem_follow_rate", "yn_accuracy", "known_rate")}
            log.info("evaluated %s on %s", out.label, name)
    return out


def evaluate_build(build, *, sets: list[str] | None = None, max_items: int | None = None) -> dict[str, Scores]:
    """Scores of every checkpoint of an :class:`~lensft.organism.OrganismBuild` (label -> scores)."""
    chosen = {n: p for n, p in build.prompt_sets.items() if sets is None or n in sets}
    return {label: evaluate_checkpoint(path, chosen, label=label, num_threads=build.config.num_threads,
                                       max_items=max_items)
            for label, path in build.checkpoints.items()}
