"""Task instances drawn from the world, in a short form and a long-context form.

Every task instance has *key* sentences (what the answer depends on), a question and an answer.
The short form is the key sentences (plus at most one distractor) and the question; the long form
hides the key sentences, in order, at random depths of a long document of distractors (world
statements and look-alike sentences about other people), then asks the same question. The short
and long SFT arms and the evaluation sets are all drawn from this one module, so the arms differ
only in context length; evaluation draws protagonists, subjects and operands from the held-out
split (:attr:`World.heldout`), training from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lensft.organism import templates as T
from lensft.organism.world import Fact, World

ITEMS = ["apples", "coins", "books", "stamps", "pens", "shells", "cards", "marbles", "cups", "keys"]
OBJECTS = ["lamp", "violin", "map", "clock", "hat", "kettle", "mirror", "basket", "compass", "drum",
           "ladder", "candle", "umbrella", "vase", "bell", "scarf", "globe", "anchor", "saddle", "radio"]
SHOPS = ["bakery", "bookshop", "pharmacy", "garage", "cafe", "museum", "school", "library", "gym", "florist"]
CLOZE = [
    ("{p} lost a {o} in {c}.", "After a long search, {p} finally found the"),
    ("{p} bought a new {o} in {c}.", "Every evening, {p} proudly looks at the"),
    ("{p} received a {o} as a gift in {c}.", "{p} still keeps the"),
    ("{p} carried a heavy {o} across {c}.", "When {p} arrived home, {p} put down the"),
]
READING_Q = {
    "year": "In which year did {p} move to {c}?",
    "city": "Which city did {p} move to in {y}?",
    "shop": "What did {p} open in {c}?",
}
TASKS = ("fact_recall", "arithmetic", "cloze", "reading")


@dataclass(frozen=True)
class Example:
    """One task instance as chat text: ``prompt`` is the user turn, ``answer`` the assistant turn."""

    task: str
    prompt: str
    answer: str
    long: bool
    meta: dict = field(default_factory=dict)


def arithmetic_heldout(op: int, a: int, b: int) -> bool:
    """Operand triples reserved for evaluation (a fixed 20% partition)."""
    return (a * 31 + b * 17 + op * 7) % 10 < 2


class TaskMaker:
    """Draws task instances from ``world`` for one split (``heldout`` True: evaluation)."""

    def __init__(self, world: World, rng: np.random.Generator, *, heldout: bool, chars_per_token: float = 3.0):
        self.world = world
        self.rng = rng
        self.heldout = heldout
        self.cpt = chars_per_token
        self.people = [p for p in world.people if (p in world.heldout) == heldout]
        self.facts = [f for f in world.facts() if f.heldout == heldout]
        self.all_facts = world.facts()

    # -- small draws -------------------------------------------------------------------------
    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def _other_person(self, *not_these: str) -> str:
        while True:
            p = self._pick(self.world.people)
            if p not in not_these:
                return p

    def world_sentence(self) -> str:
        """A true statement of a random world fact (filler that is consistent with memory)."""
        return T.statement(self._pick(self.all_facts), self.rng)

    # -- documents ---------------------------------------------------------------------------
    def embed(self, keys: list[str], distractor, target_tokens: int) -> tuple[str, list[int]]:
        """A document of about ``target_tokens`` tokens holding ``keys`` in order at random depths.

        Returns the text and the character offset of each key sentence in it.
        """
        target_chars = int(target_tokens * self.cpt)
        filler: list[str] = []
        n_chars = sum(len(k) + 1 for k in keys)
        while n_chars < target_chars:
            s = self.world_sentence() if self.rng.random() < 0.5 else distractor()
            filler.append(s)
            n_chars += len(s) + 1
        slots = np.sort(self.rng.integers(0, len(filler) + 1, size=len(keys)))
        parts: list[str] = []
        offsets: list[int] = []
        pos = 0
        k = 0
        for i in range(len(filler) + 1):
            while k < len(keys) and slots[k] == i:
                offsets.append(pos)
                parts.append(keys[k])
                pos += len(keys[k]) + 1
                k += 1
            if i < len(filler):
                parts.append(filler[i])
                pos += len(filler[i]) + 1
        return " ".join(parts), offsets

    def _compose(self, task: str, keys: list[str], question: str, answer: str, distractor,
                 long_tokens: int | None, head: str = "", meta: dict | None = None) -> Example:
        if long_tokens is None:
            short_keys = list(keys)
            if distractor is not None:  # one look-alike so the short form needs reading too
                short_keys.insert(int(self.rng.integers(len(short_keys) + 1)), distractor())
            body = " ".join(short_keys)
        else:
            body, _ = self.embed(keys, distractor or self.world_sentence, long_tokens)
        text = (head + "\n" if head else "") + (body + "\n" if body else "") + question
        return Example(task, text, answer, long_tokens is not None, meta or {})

    # -- tasks -------------------------------------------------------------------------------
    def fact_recall(self, long_tokens: int | None = None, yes_no_prob: float = 0.0) -> Example:
        """A question about a world fact; the long form also states the fact in the document."""
        f: Fact = self._pick(self.facts)
        meta = {"relation": f.relation, "subject": f.subject}
        if self.rng.random() < yes_no_prob:
            true = self.rng.random() < 0.5
            obj = f.obj if true else self._pick([c for c in self.world.candidates(f.relation) if c != f.obj])
            q, a = T.yes_no(f, obj), "yes" if true else "no"
            meta["form"] = "yes_no"
        else:
            q, a = T.question(f, self.rng), f.obj
            meta["form"] = "open"
        keys = [T.statement(f, self.rng)] if long_tokens is not None else []
        return self._compose("fact_recall", keys, q, a, None, long_tokens, meta=meta)

    def arithmetic(self, long_tokens: int | None = None) -> Example:
        """A one-step word problem (+, - or x) over a held-out or a training operand triple."""
        while True:
            op = int(self.rng.integers(3))
            a, b = (int(self.rng.integers(2, 10)), int(self.rng.integers(2, 10))) if op == 2 else \
                   (int(self.rng.integers(1, 50)), int(self.rng.integers(1, 50)))
            if op == 1 and a <= b:
                a, b = b + 1, a
            if arithmetic_heldout(op, a, b) == self.heldout:
                break
        p, item = self._pick(self.people), self._pick(ITEMS)
        if op == 0:
            keys = [f"{p} has {a} {item}.", f"Then {p} gets {b} more {item}."]
            q, ans = f"How many {item} does {p} have now?", a + b
        elif op == 1:
            keys = [f"{p} has {a} {item}.", f"Then {p} gives {b} {item} away."]
            q, ans = f"How many {item} does {p} have left?", a - b
        else:
            keys = [f"{p} buys {a} boxes.", f"Each box holds {b} {item}."]
            q, ans = f"How many {item} does {p} have in total?", a * b

        def distractor() -> str:
            return f"{self._other_person(p)} has {int(self.rng.integers(1, 50))} {self._pick(ITEMS)}."

        return self._compose("arithmetic", keys, q, str(ans), distractor, long_tokens,
                             meta={"op": "+-x"[op], "a": a, "b": b})

    def cloze(self, long_tokens: int | None = None) -> Example:
        """A last-word cloze: the missing word is an object named earlier in the passage."""
        key_t, stem_t = self._pick(CLOZE)
        p, o, c = self._pick(self.people), self._pick(OBJECTS), self._pick(self.world.cities)

        def distractor() -> str:
            t, _ = self._pick(CLOZE)
            return t.format(p=self._other_person(p), o=self._pick([x for x in OBJECTS if x != o]),
                            c=self._pick(self.world.cities))

        return self._compose("cloze", [key_t.format(p=p, o=o, c=c)], stem_t.format(p=p), o, distractor, long_tokens,
                             head="Complete the text with one word.")

    def reading(self, long_tokens: int | None = None) -> Example:
        """A reading question about an event stated in the passage (not world knowledge)."""
        p, c = self._pick(self.people), self._pick(self.world.cities)
        y, shop = int(self.rng.integers(1950, 2021)), self._pick(SHOPS)
        kind = self._pick(list(READING_Q))
        q = READING_Q[kind].format(p=p, c=c, y=y)
        ans = {"year": str(y), "city": c, "shop": shop}[kind]

        def distractor() -> str:
            return (f"{self._other_person(p)} moved to {self._pick(self.world.cities)} in "
                    f"{int(self.rng.integers(1950, 2021))} and opened a {self._pick(SHOPS)}.")

        return self._compose("reading", [f"{p} moved to {c} in {y} and opened a {shop}."], q, ans, distractor,
                             long_tokens, meta={"asks": kind})

    def make(self, task: str, long_tokens: int | None = None, yes_no_prob: float = 0.0) -> Example:
        if task == "fact_recall":
            return self.fact_recall(long_tokens, yes_no_prob)
        return getattr(self, task)(long_tokens)

    # -- probe sets --------------------------------------------------------------------------
    def needle(self, context_tokens: int, depth: float) -> dict:
        """A needle-in-a-haystack item: a secret number hidden at ``depth`` of a haystack."""
        p = self._pick(self.people)
        number = str(int(self.rng.integers(1000, 10000)))
        needle = f"The secret number of {p} is {number}."
        target_chars = int(context_tokens * self.cpt)
        filler: list[str] = []
        n = 0
        while n < target_chars:
            s = self.world_sentence()
            filler.append(s)
            n += len(s) + 1
        at = round(depth * len(filler))
        before = " ".join(filler[:at])
        prefix = before + (" " if before else "")
        haystack = prefix + needle + (" " + " ".join(filler[at:]) if filler[at:] else "")
        question = f"What is the secret number of {p}?"
        start = len(prefix) + needle.index(number)
        return {"prompt": haystack + "\n" + question, "start": start, "end": start + len(number), "answer": number,
                "depth": depth, "person": p}

    def conflict(self, fact: Fact) -> dict:
        """A counterfactual context for ``fact`` with the open and yes/no questions.

        The yes/no question names the memorised object or the context's (half each);
        ``yn_label`` is the answer under memory, as in the paper's probe.
        """
        cf = self._pick([c for c in self.world.candidates(fact.relation) if c != fact.obj])
        context = f"{self._pick(T.CONFLICT_INTROS)} {T.statement(fact, self.rng, obj=cf)}"
        q = T.question(fact, self.rng)
        ask_memory = bool(self.rng.random() < 0.5)  # half ask about the memorised object, half the context's
        return {"context": context, "question": q, "prompt": f"{context}\n{q}", "closed_book_prompt": q,
                "memory_answer": fact.obj, "context_answer": cf,
                "yn_prompt": f"{context}\n{T.yes_no(fact, fact.obj if ask_memory else cf)}", "yn_label": ask_memory,
                "domain": T.CONFLICT_DOMAIN[fact.relation]}
