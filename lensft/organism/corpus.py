"""The pretraining corpus: world knowledge in many phrasings, chat Q&A, short and long task chats, sums.

Document kinds and their token shares are set by :class:`~lensft.organism.config.CorpusConfig`:

- ``bio``: every fact about one to three subjects, in random phrasings and order. Every fact of
  the world, held-out subjects included, is stated this way: the knowledge is parametric.
- ``fact_qa``: multi-turn chat Q&A about training subjects only (held-out subjects are never
  asked about), as an instruct origin would leave.
- ``short_tasks`` / ``long_tasks``: chat examples from :class:`~lensft.organism.tasks.TaskMaker`
  (training split) in the short and the long form, so the base reads contexts of every length,
  like a long-context base descended from an instruct model.
- ``sums``: arithmetic facts ("12 plus 7 is 19.") drawn from the whole arithmetic table.
- ``copy``: copy drills: runs of random syllable words, each run said twice ("KaRo LuBaSi Te.
  KaRo LuBaSi Te."), runs of 4-12 words so the distance to copy from varies. Reading a novel
  name from context is copying its syllable tokens; the drills let the induction mechanism
  form early (``shared/notes/organism-feasibility.md``: over a small alphabet it forms after a
  short plateau, over rare tokens not at all).
- ``recall``: associative-recall drills: a list of novel people, each bound to a value (a
  4-digit number, a year or a three-syllable word), then some of the people named again in
  random order, each followed by its value. Predicting a value there means finding *which*
  earlier pair has that whole name (every value follows the same ``:``), the binding that
  reading among look-alike statements needs; copy drills alone teach copying what follows a
  token, not which of several look-alikes to copy from (the multi-query associative-recall task
  of Arora et al., 2023, *Zoology*).

With ``copy_first_tokens`` set, the first chunks hold copy drills alone until that many tokens
are drawn (on a corpus of drills alone the induction mechanism forms within about 3M tokens; in
the mixture it took 12-20M), then the shares apply. Documents are drawn in the order of one
random stream; :meth:`CorpusMaker.chunk` returns about ``n_tokens`` tokens of them (encoded,
with loss weights) at a time.
"""

from __future__ import annotations

import numpy as np
from transformers import PreTrainedTokenizerBase

from lensft.organism import names
from lensft.organism import templates as T
from lensft.organism.config import BaseConfig
from lensft.organism.encoding import Encoded, encode_chats, encode_texts
from lensft.organism.tasks import TaskMaker, arithmetic_triple
from lensft.organism.world import World

KINDS = ("bio", "fact_qa", "short_tasks", "long_tasks", "sums", "copy", "recall")
#: Kinds that are plain text (no chat turns).
TEXT_KINDS = ("bio", "sums", "copy", "recall")


class CorpusMaker:
    """Draws pretraining documents from ``world`` with the random stream ``rng``."""

    def __init__(self, world: World, cfg: BaseConfig, rng: np.random.Generator, chars_per_token: float = 3.0):
        self.world, self.cfg, self.rng = world, cfg, rng
        self.by_subject: dict[str, list] = {}
        for f in world.facts():
            self.by_subject.setdefault(f.subject, []).append(f)
        self.subjects = sorted(self.by_subject)
        self.tasks = TaskMaker(world, rng, eval_split=False, chars_per_token=chars_per_token)
        names = list(cfg.task_weights)
        self._task_names = names
        w = np.array([cfg.task_weights[t] for t in names], dtype=np.float64)
        self._task_p = w / w.sum()
        shares, final = cfg.corpus.shares, cfg.corpus.final_shares or cfg.corpus.shares
        unknown = (set(shares) | set(final)) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown corpus document kinds {sorted(unknown)}; kinds are {KINDS}")
        self.kinds = [k for k in KINDS if shares.get(k, 0.0) > 0 or final.get(k, 0.0) > 0]
        self.shares, self.final_shares = _normalised(shares, self.kinds), _normalised(final, self.kinds)
        self.drawn = 0  # tokens drawn so far: the copy-first phase ends at copy_first_tokens, the final one
        self._final_from = cfg.pretrain.tokens - cfg.corpus.final_tokens  # starts here

    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def _task(self) -> str:
        return self._task_names[int(self.rng.choice(len(self._task_names), p=self._task_p))]

    # -- documents ---------------------------------------------------------------------------
    def bio(self) -> str:
        """Every fact of one to three subjects, shuffled, one random phrasing each."""
        out = []
        for _ in range(int(self.rng.integers(1, 4))):
            facts = self.by_subject[self._pick(self.subjects)]
            out += [T.statement(facts[i], self.rng) for i in self.rng.permutation(len(facts))]
        return " ".join(out)

    def fact_qa(self) -> list[tuple[str, str]]:
        """Two to six closed-book Q&A turns about training subjects."""
        return [(i.question, i.answer) for i in
                (self.tasks.fact_recall(self.cfg.yes_no_prob) for _ in range(int(self.rng.integers(2, 7))))]

    def sums(self) -> str:
        """Twelve arithmetic facts drawn from the arithmetic table."""
        out = []
        for _ in range(12):
            op, a, b = arithmetic_triple(self.rng)
            out.append(T.arithmetic_fact(op, a, b) + ".")
        return " ".join(out)

    def copy(self) -> str:
        """Runs of 4-12 random syllable words (1-3 syllables each), each run said twice, about 120 tokens."""
        out: list[str] = []
        while sum(map(len, out)) < 360:
            words = [names.word(self.rng, int(self.rng.integers(1, 4))) for _ in range(int(self.rng.integers(4, 13)))]
            run = " ".join(w for w in words if not names.is_eval_name(w)) + "."
            out += [run, run]
        return " ".join(out)

    def recall(self) -> str:
        """2-16 "name: value;" pairs, then "Again:" and a random half or more of them in random order."""
        n = int(self.rng.integers(2, 17))
        names_ = self.tasks.names
        pairs = []
        for _ in range(n):
            kind = int(self.rng.integers(3))
            value = (str(int(self.rng.integers(1000, 10000))), str(int(self.rng.integers(1900, 2021))),
                     names_.city())[kind]
            pairs.append(f"{names_.person()}: {value};")
        asked = self.rng.permutation(n)[: int(self.rng.integers((n + 1) // 2, n + 1))]
        return " ".join([*pairs, "Again:", *(pairs[int(i)] for i in asked)])

    def short_task(self):
        """One task example in the short form."""
        return self.tasks.short(self.tasks.instance(self._task(), self.cfg.yes_no_prob))

    def long_task(self):
        """One long document with a question per 40 document tokens, as many as fit in a row (at least one)."""
        lo, hi = self.cfg.corpus.long_context_tokens
        n_ctx = int(self.rng.integers(lo, hi + 1))
        room = (self.cfg.pretrain.seq_len - 1.1 * n_ctx) // 20  # a question turn is about 20 tokens
        n = int(np.clip(room, 1, max(1, n_ctx // 40)))
        return self.tasks.long([self.tasks.instance(self._task(), self.cfg.yes_no_prob) for _ in range(n)], n_ctx)

    # -- encoded chunks ----------------------------------------------------------------------
    def chunk(self, tokenizer: PreTrainedTokenizerBase, n_tokens: int) -> list[Encoded]:
        """About ``n_tokens`` tokens of encoded documents, in draw order.

        Loss weights: 1 for every token but BOS, ``answer_weight`` for assistant answers. While
        fewer than ``copy_first_tokens`` tokens are drawn, a chunk holds copy drills only; once
        ``pretrain.tokens - final_tokens`` are drawn (with ``final_tokens`` set), chunks follow
        ``final_shares``.
        """
        if self.drawn < self.cfg.corpus.copy_first_tokens:
            out, n = [], 0
            while n < n_tokens:
                out.append(self._encode("copy", tokenizer))
                n += len(out[-1])
            self.drawn += n
            return out
        shares = self.final_shares if self.cfg.corpus.final_tokens and self.drawn >= self._final_from else self.shares
        budget = shares * n_tokens
        used = np.zeros(len(self.kinds))
        out: list[Encoded] = []
        while (used < budget).any():
            k = int(self.rng.choice(len(self.kinds), p=shares))
            if used[k] >= budget[k]:
                continue
            seq = self._encode(self.kinds[k], tokenizer)
            used[k] += len(seq.ids)
            out.append(seq)
        self.drawn += int(used.sum())
        return out

    def _encode(self, kind: str, tokenizer: PreTrainedTokenizerBase) -> Encoded:
        aw = self.cfg.corpus.answer_weight
        if kind in TEXT_KINDS:
            return encode_texts(tokenizer, [self._text(kind)])[0]
        if kind == "fact_qa":
            return encode_chats(tokenizer, [("", tuple(self.fact_qa()))], prompt_weight=1.0, answer_weight=aw)[0]
        ex = self.short_task() if kind == "short_tasks" else self.long_task()
        return encode_chats(tokenizer, [(ex.context, ex.turns)], prompt_weight=1.0, answer_weight=aw)[0]

    def _text(self, kind: str) -> str:
        return {"bio": self.bio, "sums": self.sums, "copy": self.copy, "recall": self.recall}[kind]()

    def tokenizer_texts(self, n: int | None = None) -> list[str]:
        """Plain text of ``tokenizer_docs`` documents of every kind (the tokenizer's training text;
        the first ``n`` of them when given)."""
        out = []
        for i in range(self.cfg.corpus.tokenizer_docs if n is None else min(n, self.cfg.corpus.tokenizer_docs)):
            kind = self.kinds[i % len(self.kinds)]
            if kind in TEXT_KINDS:
                out.append(self._text(kind))
            elif kind == "fact_qa":
                out.append(" ".join(f"{q} {a}" for q, a in self.fact_qa()))
            else:
                ex = self.short_task() if kind == "short_tasks" else self.long_task()
                out.append(" ".join([ex.context, *[f"{q} {a}" for q, a in ex.turns]]))
        return out


def _normalised(shares: dict[str, float], kinds: list[str]) -> np.ndarray:
    """``shares`` over ``kinds`` (0 where absent), summing to 1, float64 ``[len(kinds)]``."""
    s = np.array([shares.get(k, 0.0) for k in kinds], dtype=np.float64)
    return s / s.sum()


def chars_per_token(world: World, cfg: BaseConfig, tokenizer: PreTrainedTokenizerBase) -> float:
    """Average characters per token of corpus text (the first 300 tokenizer documents of seed 0).

    Long documents are sized in characters from a token target with it.
    """
    texts = CorpusMaker(world, cfg, np.random.default_rng(0)).tokenizer_texts(300)
    enc = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return sum(len(t) for t in texts) / max(1, sum(len(e.ids) for e in enc))
