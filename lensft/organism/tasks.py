"""Task instances drawn from the world, and the short and long forms every arm is trained on.

A task *instance* has key sentences (what the answer depends on; none for a closed-book fact
question), a question, an answer and a maker of look-alike sentences. Both forms use the same
instances, the same key-sentence policy and the same answer forms:

- **short form**: one instance; its key sentences plus one look-alike at a random position,
  then the question (a fact question is asked bare: it has no key sentence and no look-alike);
- **long form**: several instances; each instance's key sentences (in order) and its one
  look-alike at random depths of a long document of filler, then one question per instance, in
  random order, as the turns of one chat. Filler is true statements about training subjects
  (never a held-out subject; never naming a subject the example asks about).

So the arms differ in context length only: an instance brings the same sentences, one
look-alike included, to either form, and the long form adds filler. (In evaluation sets before
version 3 half the filler was look-alikes, 10-40 distractors per long document against one in
the short form, so the forms also differed in the number of distractors.) Reading, cloze and
word problems are about *novel*
people and cities (names drawn fresh, :class:`lensft.organism.names.NovelNames`): nothing in
them can be memorised, they must be read. Evaluation draws novel names and held-out subjects
from the evaluation split, training from the rest. Word problems are the exception: their arithmetic is a small table
(:func:`arithmetic_triple`) that the pretraining corpus states in full, as a model of this size
learns no addition algorithm (the previous shipped base answered 1 of 22 additions over
held-out operand pairs); a held-out word problem is new in its people, items and look-alikes, and
tests reading the operands and applying a memorised fact. Its answer is worked, the table's own
sentence for the operands ("17 minus 15 is 2", as GSM8K answers show their steps): with a bare
number the base answered 27% of word problems while it completed 70-100% of the table's facts
when they were phrased as in the corpus (eval sets before version 4 had bare numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lensft.organism import templates as T
from lensft.organism.names import NovelNames
from lensft.organism.world import Fact, World

TASKS = ("fact_recall", "reading", "cloze", "arithmetic")


@dataclass(frozen=True)
class Instance:
    """One question with what it depends on.

    ``subjects`` are the world subjects a closed-book question asks about (kept out of filler).
    """

    task: str
    keys: tuple[str, ...]
    question: str
    answer: str
    look_alike: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    subjects: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Example:
    """A chat: ``context`` then ``turns`` of (question, answer); the first question follows the context."""

    context: str
    turns: tuple[tuple[str, str], ...]
    long: bool
    instances: tuple[Instance, ...]
    key_offsets: tuple[int, ...] = ()  # character offset of every key sentence in ``context``

    @property
    def prompt(self) -> str:
        """The first user turn: the context (if any), a newline, the first question."""
        q = self.turns[0][0]
        return f"{self.context}\n{q}" if self.context else q


#: Largest operand of a sum or a difference; products use single digits 2-9.
MAX_OPERAND = 20


def arithmetic_triple(rng: np.random.Generator) -> tuple[int, int, int]:
    """A uniform draw ``(op, a, b)`` from the arithmetic table: op 0 ``a + b`` (1-20 each),
    1 ``a - b`` (1 <= b < a <= 20), 2 ``a x b`` (2-9 each). Every word problem uses one."""
    op = int(rng.integers(3))
    if op == 2:
        return op, int(rng.integers(2, 10)), int(rng.integers(2, 10))
    if op == 1:
        a = int(rng.integers(2, MAX_OPERAND + 1))
        return op, a, int(rng.integers(1, a))
    return op, int(rng.integers(1, MAX_OPERAND + 1)), int(rng.integers(1, MAX_OPERAND + 1))


class TaskMaker:
    """Draws task instances and composes them into short and long examples.

    Args:
        world: the world.
        rng: the random stream (every draw comes from it).
        eval_split: draw novel names and operands from the evaluation part.
        facts: facts closed-book questions ask about (default: held-out facts for the
            evaluation split, the others for training).
        chars_per_token: average characters per token of world text (sizes long documents).
    """

    def __init__(self, world: World, rng: np.random.Generator, *, eval_split: bool,
                 facts: Sequence[Fact] | None = None, chars_per_token: float = 3.0):
        self.world, self.rng, self.eval_split, self.cpt = world, rng, eval_split, chars_per_token
        self.names = NovelNames(world.words(), rng, eval_part=eval_split)
        all_facts = world.facts()
        self.facts = list(facts) if facts is not None else [f for f in all_facts if f.heldout == eval_split]
        self.filler_facts = [f for f in all_facts if not f.heldout]

    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    # -- instances ---------------------------------------------------------------------------
    def instance(self, task: str, yes_no_prob: float = 0.0) -> Instance:
        """A fresh instance of ``task`` (one of :data:`TASKS`)."""
        if task == "fact_recall":
            return self.fact_recall(yes_no_prob)
        return {"reading": self.reading, "cloze": self.cloze, "arithmetic": self.arithmetic}[task]()

    def fact_recall(self, yes_no_prob: float = 0.0, fact: Fact | None = None) -> Instance:
        """A closed-book question about a world fact (open, or yes/no with probability ``yes_no_prob``)."""
        f = fact if fact is not None else self._pick(self.facts)
        meta = {"relation": f.relation, "subject": f.subject, "heldout": f.heldout}
        if self.rng.random() < yes_no_prob:
            true = bool(self.rng.random() < 0.5)
            obj = f.obj if true else self._pick([c for c in self.world.candidates(f.relation) if c != f.obj])
            return Instance("fact_recall", (), T.yes_no(f, obj), "yes" if true else "no", None, (f.subject,),
                            {**meta, "form": "yes_no"})
        return Instance("fact_recall", (), T.question(f, self.rng), f.obj, None, (f.subject,), {**meta, "form": "open"})

    def _move(self) -> tuple[str, dict]:
        d = {"p": self.names.person(), "c": self.names.city(), "y": str(int(self.rng.integers(1950, 2021))),
             "shop": self._pick(T.SHOPS)}
        return T.MOVE.format(**d), d

    def _secret(self) -> tuple[str, dict]:
        d = {"p": self.names.person(), "n": str(int(self.rng.integers(1000, 10000)))}
        return T.SECRET.format(**d), d

    def reading(self) -> Instance:
        """A question about an event of a novel person (which city, who, which year) or a secret number."""
        kind = self._pick(["city", "person", "year", "secret"])
        if kind == "secret":
            key, d = self._secret()
            return Instance("reading", (key,), T.SECRET_QUESTION.format(**d), d["n"], lambda: self._secret()[0],
                            meta={"asks": kind})
        key, d = self._move()
        answer = {"city": d["c"], "person": d["p"], "year": d["y"]}[kind]
        return Instance("reading", (key,), T.MOVE_QUESTIONS[kind].format(**d), answer, lambda: self._move()[0],
                        meta={"asks": kind})

    def cloze(self) -> Instance:
        """A last-word cloze: the missing word is an object named earlier in the passage."""
        key_t, stem_t = self._pick(T.CLOZE)
        p, o, c = self.names.person(), self._pick(T.OBJECTS), self.names.city()

        def look_alike() -> str:
            t, _ = self._pick(T.CLOZE)
            return t.format(p=self.names.person(), o=self._pick(T.OBJECTS), c=self.names.city())

        return Instance("cloze", (key_t.format(p=p, o=o, c=c),), f"{T.CLOZE_HEAD}\n{stem_t.format(p=p)}", o,
                        look_alike, meta={"object": o})

    def arithmetic(self) -> Instance:
        """A one-step word problem (+, - or x) over a triple of the arithmetic table (:func:`arithmetic_triple`).

        The answer is worked: the table's sentence for the operands, ``"17 minus 15 is 2"``
        (:func:`~lensft.organism.templates.arithmetic_fact`), scored by exact match as a whole.
        """
        op, a, b = arithmetic_triple(self.rng)
        p, item = self.names.person(), self._pick(T.ITEMS)
        if op == 0:
            keys, q = (f"{p} has {a} {item}.", f"Then {p} gets {b} more {item}."), f"How many {item} does {p} have now?"
        elif op == 1:
            keys, q = (f"{p} has {a} {item}.", f"Then {p} gives {b} {item} away."), f"How many {item} does {p} have left?"
        else:
            keys, q = (f"{p} buys {a} boxes.", f"Each box holds {b} {item}."), f"How many {item} does {p} have in total?"

        def look_alike() -> str:
            return f"{self.names.person()} has {int(self.rng.integers(1, MAX_OPERAND + 1))} {self._pick(T.ITEMS)}."

        return Instance("arithmetic", keys, q, T.arithmetic_fact(op, a, b), look_alike, meta={"op": "+-x"[op], "a": a, "b": b})

    # -- forms -------------------------------------------------------------------------------
    def short(self, inst: Instance) -> Example:
        """The short form: key sentences plus one look-alike at a random position, then the question."""
        parts = list(inst.keys)
        if inst.look_alike is not None:
            parts.insert(int(self.rng.integers(len(parts) + 1)), inst.look_alike())
        return Example(" ".join(parts), ((inst.question, inst.answer),), False, (inst,))

    def long(self, insts: Sequence[Instance], context_tokens: int) -> Example:
        """The long form: every instance's keys and one look-alike at random depths of a ~``context_tokens`` document.

        An instance's keys keep their order; its look-alike goes to an independent random depth.
        """
        keys = [(i, k) for i, inst in enumerate(insts) for k in inst.keys]
        keys += [(-1, inst.look_alike()) for inst in insts if inst.look_alike is not None]
        avoid = {s for inst in insts for s in inst.subjects}
        filler_facts = [f for f in self.filler_facts if f.subject not in avoid and f.obj not in avoid] or self.filler_facts
        target = int(context_tokens * self.cpt)
        filler: list[str] = []
        n_chars = sum(len(k) + 1 for _, k in keys)
        while n_chars < target:
            filler.append(T.statement(self._pick(filler_facts), self.rng))
            n_chars += len(filler[-1]) + 1
        # keys of one instance keep their order: assign sorted slots per instance, then interleave
        slots = self.rng.integers(0, len(filler) + 1, size=len(keys))
        for i in range(len(insts)):
            idx = [j for j, (owner, _) in enumerate(keys) if owner == i]
            slots[idx] = np.sort(slots[idx])
        order = sorted(range(len(keys)), key=lambda j: (slots[j], j))
        text, offsets = _interleave(filler, [(int(slots[j]), keys[j][1]) for j in order])
        key_offsets = tuple(o for o, j in zip(offsets, order) if keys[j][0] >= 0)  # look-alikes are not keys
        turns = tuple((insts[i].question, insts[i].answer) for i in self.rng.permutation(len(insts)))
        return Example(text, turns, True, tuple(insts), key_offsets)

    def filler_sentence(self) -> str:
        """A true statement about a training subject (haystack text)."""
        return T.statement(self._pick(self.filler_facts), self.rng)


def _interleave(filler: list[str], keys: list[tuple[int, str]]) -> tuple[str, list[int]]:
    """Join ``filler`` with each key inserted before filler sentence ``slot``; key character offsets."""
    parts: list[str] = []
    offsets: list[int] = []
    pos, k = 0, 0
    for i in range(len(filler) + 1):
        while k < len(keys) and keys[k][0] == i:
            offsets.append(pos)
            parts.append(keys[k][1])
            pos += len(keys[k][1]) + 1
            k += 1
        if i < len(filler):
            parts.append(filler[i])
            pos += len(filler[i]) + 1
    return " ".join(parts), offsets
