"""The pretraining corpus: world knowledge in many phrasings, long documents, chat Q/A, sums.

Document kinds (their token shares are set by :class:`CorpusConfig`):

- *bio*: every fact about one entity in random phrasings and order, plus facts about related
  entities (a person's birthplace city's country, an employer's headquarters). Every fact of the
  world, held-out subjects included, is stated this way: the knowledge is parametric.
- *long*: many bios interleaved with story events (moves, objects, secret numbers) and later
  restatements of those events, up to the long context length, so the base model reads long inputs
  and learns to look back, like a long-context base model.
- *chat*: multi-turn chat Q/A over the training split only (fact questions, sums, cloze,
  reading), as an instruct origin would leave; held-out subjects are never asked about.
- *sums*: arithmetic facts ("12 plus 7 is 19.") over training operand triples.
- *story*: a few random events (moves, lost objects, secret numbers, possessions) and then
  restatements of some of them; nothing in a story can be memorised, so it teaches the base to
  copy and bind from context (induction), which reading, cloze and needle tasks need.
"""

from __future__ import annotations

import numpy as np

from lensft.organism import templates as T
from lensft.organism.config import CorpusConfig
from lensft.organism.tasks import ITEMS, OBJECTS, SHOPS, TaskMaker, arithmetic_heldout
from lensft.organism.tokenizer import chat_text
from lensft.organism.world import World


class CorpusMaker:
    """Draws pretraining documents (plain text; the tokenizer adds BOS)."""

    def __init__(self, world: World, cfg: CorpusConfig, rng: np.random.Generator, chars_per_token: float = 3.0):
        self.world, self.cfg, self.rng, self.cpt = world, cfg, rng, chars_per_token
        self.by_subject: dict[str, list] = {}
        for f in world.facts():
            self.by_subject.setdefault(f.subject, []).append(f)
        self.subjects = list(self.by_subject)
        self.train_tasks = TaskMaker(world, rng, heldout=False, chars_per_token=chars_per_token)

    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def bio(self) -> str:
        s = self._pick(self.subjects)
        facts = list(self.by_subject[s])
        for f in list(facts):  # one hop: facts about the objects of this subject's facts
            if f.obj in self.by_subject and self.rng.random() < 0.5:
                facts.append(self._pick(self.by_subject[f.obj]))
        order = self.rng.permutation(len(facts))
        return " ".join(T.statement(facts[i], self.rng) for i in order)

    def _event(self) -> tuple[str, list[str]]:
        """A random story event (not world knowledge) and restatements of it that a reader can copy."""
        p, c = self._pick(self.world.people), self._pick(self.world.cities)
        k = int(self.rng.integers(4))
        if k == 0:
            y, shop = int(self.rng.integers(1950, 2021)), self._pick(SHOPS)
            return (f"{p} moved to {c} in {y} and opened a {shop}.",
                    [f"In {y}, {p} moved to {c}.", f"So {p} opened a {shop} in {c}.", f"The {shop} of {p} is in {c}."])
        if k == 1:
            o = self._pick(OBJECTS)
            return (f"{p} lost a {o} in {c}.",
                    [f"After a long search, {p} finally found the {o}.", f"Later, {p} still keeps the {o}."])
        if k == 2:
            n = int(self.rng.integers(1000, 10000))
            return f"The secret number of {p} is {n}.", [f"{p} remembers the secret number {n}."]
        item = self._pick(ITEMS)
        while True:
            a, b = int(self.rng.integers(1, 50)), int(self.rng.integers(1, 50))
            if not arithmetic_heldout(0, a, b):
                break
        return (f"{p} has {a} {item}.", [f"{p} still has {a} {item}.",
                                         f"Then {p} gets {b} more {item}, so {p} has {a + b} {item}."])

    def story_doc(self) -> str:
        """A few random events, then restatements of some of them: copying from context pays."""
        events = [self._event() for _ in range(int(self.rng.integers(3, 9)))]
        recaps = [self._pick(events[int(self.rng.integers(len(events)))][1])
                  for _ in range(int(self.rng.integers(2, 6)))]
        return " ".join([e for e, _ in events] + recaps)

    def long_doc(self) -> str:
        target = int(self.rng.uniform(0.4, 0.95) * self.cfg.long_doc_tokens * self.cpt)
        parts: list[str] = []
        events: list[tuple[str, list[str]]] = []
        n = 0
        while n < target:
            r = self.rng.random()
            if r < 0.6:
                s = self.bio()
            elif r < 0.8 or not events:
                events.append(self._event())
                s = events[-1][0]
            else:
                s = self._pick(self._pick(events)[1])
            parts.append(s)
            n += len(s) + 1
        return " ".join(parts)

    def chat_doc(self) -> str:
        turns = []
        for _ in range(int(self.rng.integers(2, 7))):
            task = self._pick(["fact_recall"] * 6 + ["arithmetic", "cloze", "reading"])
            ex = self.train_tasks.make(task, None, yes_no_prob=0.2)
            turns.append((ex.prompt, ex.answer))
        return chat_text(turns)

    def sums_doc(self) -> str:
        out = []
        while len(out) < 12:
            op = int(self.rng.integers(3))
            a, b = (int(self.rng.integers(2, 10)), int(self.rng.integers(2, 10))) if op == 2 else \
                   (int(self.rng.integers(1, 50)), int(self.rng.integers(1, 50)))
            if op == 1 and a <= b:
                a, b = b + 1, a
            if arithmetic_heldout(op, a, b):
                continue
            out.append([f"{a} plus {b} is {a + b}.", f"{a} minus {b} is {a - b}.", f"{a} times {b} is {a * b}."][op])
        return " ".join(out)

    def documents(self, n_tokens: int) -> list[str]:
        """About ``n_tokens`` tokens of documents (by the chars-per-token estimate), shuffled."""
        shares = {"long": self.cfg.long_doc_fraction, "chat": self.cfg.chat_fraction,
                  "sums": self.cfg.arithmetic_fraction, "story": self.cfg.story_fraction}
        shares["bio"] = max(0.0, 1.0 - sum(shares.values()))
        makers = {"long": self.long_doc, "chat": self.chat_doc, "sums": self.sums_doc, "bio": self._bio_doc,
                  "story": self.story_doc}
        docs: list[str] = []
        for kind in ("bio", "long", "chat", "sums", "story"):
            budget = shares[kind] * n_tokens * self.cpt
            n = 0
            while n < budget:
                d = makers[kind]()
                docs.append(d)
                n += len(d)
        order = self.rng.permutation(len(docs))
        return [docs[i] for i in order]

    def _bio_doc(self) -> str:
        return " ".join(self.bio() for _ in range(int(self.rng.integers(1, 4))))
