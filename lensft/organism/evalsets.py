"""Held-out evaluation sets in lensft's prompt-set format.

- ``fact_recall``: closed-book questions about held-out subjects (their facts are stated in the
  pretraining corpus, but never asked about in training) -- the World Capital / NQ analogue;
- ``fact_recall_seen``: the same for training subjects (questions of this form were trained on);
- ``arithmetic`` (GSM8K analogue, held-out operand triples), ``cloze`` (LAMBADA analogue: the last
  word is an object named in the passage), ``reading`` (short reading QA) -- held-out protagonists;
- ``needle``: a secret number hidden at a given depth of a haystack of world statements;
- ``conflict``: a counterfactual context about a memorised fact, open and yes/no questions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lensft.organism import templates as T
from lensft.organism.config import EvalConfig
from lensft.organism.tasks import TASKS, TaskMaker
from lensft.organism.world import World
from lensft.prompts.io import make_prompt_set, write_prompt_set
from lensft.prompts.schema import ConflictItem, NeedleItem, Span, TaskItem

VERSION = "1"


def _fact_items(world: World, rng: np.random.Generator, heldout: bool, n: int, name: str) -> list[TaskItem]:
    facts = [f for f in world.facts() if f.heldout == heldout]
    order = rng.permutation(len(facts))[:n]
    return [TaskItem(id=f"{name}-{i:04d}", task="fact_recall", prompt=T.question(facts[j], rng), answer=facts[j].obj,
                     meta={"relation": facts[j].relation, "subject": facts[j].subject})
            for i, j in enumerate(order)]


def write_eval_sets(world: World, cfg: EvalConfig, rng: np.random.Generator, out_dir: Path,
                    chars_per_token: float) -> dict[str, Path]:
    """Write every evaluation set under ``out_dir``; return ``{set name: path}``."""
    paths: dict[str, Path] = {}
    maker = TaskMaker(world, rng, heldout=True, chars_per_token=chars_per_token)
    sets = {"fact_recall": _fact_items(world, rng, True, cfg.n_per_task, "fact_recall"),
            "fact_recall_seen": _fact_items(world, rng, False, cfg.n_per_task, "fact_recall_seen")}
    for task in TASKS[1:]:
        items, seen = [], set()
        for _ in range(cfg.n_per_task * 20):
            ex = getattr(maker, task)(None)
            if ex.prompt in seen:
                continue
            seen.add(ex.prompt)
            items.append(TaskItem(id=f"{task}-{len(items):04d}", task=task, prompt=ex.prompt, answer=ex.answer,
                                  meta=ex.meta))
            if len(items) == cfg.n_per_task:
                break
        sets[task] = items
    for name, items in sets.items():
        desc = f"organism {name}: held-out short-context task, greedy exact match on the answer"
        paths[name] = write_prompt_set(make_prompt_set(name, VERSION, "task", items, description=desc),
                                       out_dir / f"{name}.jsonl")

    lo, hi = cfg.needle_context_tokens
    depths = np.linspace(0.0, 1.0, 5)
    needles = []
    for i in range(cfg.n_needle):
        n_ctx = int(rng.integers(lo, hi + 1))
        d = maker.needle(n_ctx, float(depths[i % len(depths)]))
        needles.append(NeedleItem(id=f"needle-{i:04d}", prompt=d["prompt"], needle=Span(name="answer", start=d["start"], end=d["end"]),
                                  answer=d["answer"], context_tokens=n_ctx, depth=d["depth"], meta={"person": d["person"]}))
    paths["needle"] = write_prompt_set(make_prompt_set("needle", VERSION, "needle", needles,
                                                       description="organism needle-in-a-haystack: a secret number in world statements"),
                                       out_dir / "needle.jsonl")

    facts = world.facts()
    order = rng.permutation(len(facts))[: cfg.n_conflict]
    conflicts = []
    for i, j in enumerate(order):
        d = maker.conflict(facts[j])
        conflicts.append(ConflictItem(id=f"conflict-{i:04d}", meta={"relation": facts[j].relation, "subject": facts[j].subject,
                                                                    "heldout": facts[j].heldout}, **d))
    paths["conflict"] = write_prompt_set(make_prompt_set("conflict", VERSION, "conflict", conflicts,
                                                         description="organism knowledge conflicts: counterfactual context vs memorised fact"),
                                         out_dir / "conflict.jsonl")
    return paths
