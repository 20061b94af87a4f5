"""Held-out evaluation sets in lensft's prompt-set format.

Task sets (kind ``task``, greedy exact match), each in the short form and, with the suffix
``_long``, in the long form (one question after a document of ``long_context_tokens`` tokens,
its key sentences and one look-alike each at a random depth):

- ``fact_recall``: closed-book questions about held-out subjects (their facts are stated in the
  pretraining corpus, but never asked about in training), the World Capital / NQ analogue;
- ``fact_recall_seen``: the same for training subjects (short form only);
- ``reading``: an event or a secret number of a *novel* person (names from the evaluation part),
  asking for a novel city, a novel person, a year or a number;
- ``cloze`` (LAMBADA analogue: the last word is an object named in the passage);
- ``arithmetic`` (GSM8K analogue: new word problems over the memorised arithmetic table).

Probe sets: ``needle`` (a novel person's secret number at depths 0..1 of a haystack of true
statements about training subjects, at each length of ``needle_context_tokens``) and
``conflict`` (a counterfactual context about a memorised fact, open and yes/no questions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lensft.organism import templates as T
from lensft.organism.config import EvalConfig
from lensft.organism.tasks import TASKS, Example, TaskMaker
from lensft.organism.world import Fact, World
from lensft.prompts.io import make_prompt_set, write_prompt_set
from lensft.prompts.schema import ConflictItem, NeedleItem, Span, TaskItem

VERSION = "4"  # 4: word problems have worked answers; 3: long-form items carry one look-alike (2: half the filler)
NEEDLE_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _task_item(name: str, i: int, ex: Example, extra: dict | None = None) -> TaskItem:
    inst = ex.instances[0]
    meta = {**inst.meta, **(extra or {})}
    if ex.key_offsets:
        meta["key_depth"] = round(ex.key_offsets[0] / max(1, len(ex.context)), 4)
    return TaskItem(id=f"{name}-{i:04d}", task=inst.task, prompt=ex.prompt, answer=inst.answer, meta=meta)


def _unique(draw: Callable[[], Example], n: int) -> list[Example]:
    """``n`` examples with distinct prompts (fewer if the draws run out of new prompts)."""
    out, seen = [], set()
    for _ in range(n * 20):
        ex = draw()
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            out.append(ex)
            if len(out) == n:
                break
    return out


def task_sets(world: World, cfg: EvalConfig, rng: np.random.Generator, chars_per_token: float) -> dict[str, list[TaskItem]]:
    """Every task set, short and long form, keyed by set name."""
    maker = TaskMaker(world, rng, eval_split=True, chars_per_token=chars_per_token)
    seen = TaskMaker(world, rng, eval_split=True, facts=[f for f in world.facts() if not f.heldout],
                     chars_per_token=chars_per_token)
    lo, hi = cfg.long_context_tokens
    sets: dict[str, list[TaskItem]] = {}

    def inst(task: str, m: TaskMaker = maker):
        return m.fact_recall() if task == "fact_recall" else m.instance(task)

    for task in TASKS:
        short = _unique(lambda: maker.short(inst(task)), cfg.n_per_task)
        sets[task] = [_task_item(task, i, ex) for i, ex in enumerate(short)]
        lengths = rng.integers(lo, hi + 1, size=cfg.n_per_task)
        long = [maker.long([inst(task)], int(n)) for n in lengths]
        sets[f"{task}_long"] = [_task_item(f"{task}_long", i, ex, {"context_tokens": int(n)})
                                for i, (ex, n) in enumerate(zip(long, lengths))]
    sets["fact_recall_seen"] = [_task_item("fact_recall_seen", i, ex) for i, ex in
                                enumerate(_unique(lambda: seen.short(seen.fact_recall()), cfg.n_per_task))]
    return sets


def needle_items(world: World, cfg: EvalConfig, rng: np.random.Generator, chars_per_token: float) -> list[NeedleItem]:
    """A novel person's secret number at every depth of :data:`NEEDLE_DEPTHS`, at every haystack length."""
    maker = TaskMaker(world, rng, eval_split=True, chars_per_token=chars_per_token)
    items = []
    for n_ctx in cfg.needle_context_tokens:
        for j in range(cfg.n_needle_per_length):
            depth = NEEDLE_DEPTHS[j % len(NEEDLE_DEPTHS)]
            person, number = maker.names.person(), str(int(rng.integers(1000, 10000)))
            needle = T.SECRET.format(p=person, n=number)
            filler: list[str] = []
            while sum(len(s) + 1 for s in filler) < n_ctx * chars_per_token:
                filler.append(maker.filler_sentence())
            at = round(depth * len(filler))
            prefix = " ".join(filler[:at]) + (" " if at else "")
            haystack = prefix + needle + (" " + " ".join(filler[at:]) if at < len(filler) else "")
            start = len(prefix) + needle.index(number)
            items.append(NeedleItem(id=f"needle-{len(items):04d}", prompt=f"{haystack}\n{T.SECRET_QUESTION.format(p=person)}",
                                    needle=Span(name="answer", start=start, end=start + len(number)), answer=number,
                                    context_tokens=n_ctx, depth=depth, meta={"person": person}))
    return items


def conflict_items(world: World, cfg: EvalConfig, rng: np.random.Generator) -> list[ConflictItem]:
    """Counterfactual contexts about memorised facts; the yes/no question names either object (half each)."""
    facts = world.facts()
    out = []
    for i, j in enumerate(rng.permutation(len(facts))[: cfg.n_conflict]):
        f: Fact = facts[j]
        cf = [c for c in world.candidates(f.relation) if c != f.obj]
        other = cf[int(rng.integers(len(cf)))]
        context = f"{T.CONFLICT_INTROS[int(rng.integers(len(T.CONFLICT_INTROS)))]} {T.statement(f, rng, obj=other)}"
        q = T.question(f, rng)
        ask_memory = bool(rng.random() < 0.5)
        out.append(ConflictItem(
            id=f"conflict-{i:04d}", domain=T.CONFLICT_DOMAIN[f.relation], context=context, question=q,
            prompt=f"{context}\n{q}", closed_book_prompt=q, memory_answer=f.obj, context_answer=other,
            yn_prompt=f"{context}\n{T.yes_no(f, f.obj if ask_memory else other)}", yn_label=ask_memory,
            meta={"relation": f.relation, "subject": f.subject, "heldout": f.heldout}))
    return out


def write_eval_sets(world: World, cfg: EvalConfig, rng: np.random.Generator, out_dir: Path,
                    chars_per_token: float) -> dict[str, Path]:
    """Write every evaluation set under ``out_dir``; return ``{set name: path}``."""
    paths: dict[str, Path] = {}
    for name, items in task_sets(world, cfg, rng, chars_per_token).items():
        form = "long-context" if name.endswith("_long") else "short-context"
        desc = f"organism {name}: held-out {form} task, greedy exact match on the answer"
        paths[name] = write_prompt_set(make_prompt_set(name, VERSION, "task", items, description=desc),
                                       out_dir / f"{name}.jsonl")
    paths["needle"] = write_prompt_set(
        make_prompt_set("needle", VERSION, "needle", needle_items(world, cfg, rng, chars_per_token),
                        description="organism needle-in-a-haystack: a novel person's secret number in true statements"),
        out_dir / "needle.jsonl")
    paths["conflict"] = write_prompt_set(
        make_prompt_set("conflict", VERSION, "conflict", conflict_items(world, cfg, rng),
                        description="organism knowledge conflicts: counterfactual context vs memorised fact"),
        out_dir / "conflict.jsonl")
    return paths
