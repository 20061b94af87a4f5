"""SFT arms: chat examples, loss on answer tokens only, one token budget and one answer-token budget.

For every SFT seed a short pool and a long pool are drawn from the *training* split of the same
task maker (same tasks, task weights, facts and answer forms); they differ only in the form
(:mod:`lensft.organism.tasks`). A long example asks one question per instance hidden in its
document; the number of questions is set so that the long pool's share of answer tokens equals
the short pool's (:func:`questions_for`), so arms with the same token budget also supervise
the same number of answer tokens. An arm with long fraction ``m`` takes the leading examples of
the long pool worth ``m * budget`` tokens and of the short pool worth the rest.

Token layout and loss mask: :mod:`lensft.organism.encoding` (weight 1 on answer tokens, 0 elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from lensft.organism.encoding import Encoded, encode_chats
from lensft.organism.tasks import Example, Instance

_BATCH = 64  # examples drawn and tokenised at a time
_STALLED = 8  # batches in a row of long examples that all exceed the row length: the share is out of reach


@dataclass
class Pool:
    """Tokenised SFT examples in draw order."""

    examples: list[Example]
    seqs: list[Encoded]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example, int64 ``[n]``."""
        return np.array([len(s) for s in self.seqs], dtype=np.int64)

    @property
    def answers(self) -> np.ndarray:
        """Answer tokens per example, int64 ``[n]``."""
        return np.array([s.n_answer for s in self.seqs], dtype=np.int64)

    def answer_share(self) -> float:
        """Answer tokens per token over the whole pool."""
        return float(self.answers.sum() / max(1, self.lengths.sum()))


@dataclass(frozen=True)
class TurnCost:
    """Token cost of asking one question after a document: answer tokens and whole-turn tokens (means)."""

    answer: float
    turn: float


def fill_pool(draw: Callable[[], Example], tokenizer: PreTrainedTokenizerBase, budget: int, max_len: int) -> Pool:
    """Draw examples until they hold at least ``budget`` tokens; examples longer than ``max_len`` are dropped."""
    pool, total = Pool([], []), 0
    while total < budget:
        total += _add(pool, [draw() for _ in range(_BATCH)], tokenizer, budget - total, max_len)[0]
    return pool


def _add(pool: Pool, batch: list[Example], tokenizer: PreTrainedTokenizerBase, room: int, max_len: int
         ) -> tuple[int, int]:
    """Encode ``batch`` (loss on answers only) and append, in order, each example of at most
    ``max_len`` tokens until ``room`` tokens are taken; returns (tokens, answer tokens) added."""
    seqs = encode_chats(tokenizer, [(e.context, e.turns) for e in batch], prompt_weight=0.0, answer_weight=1.0)
    tokens = answers = 0
    for e, s in zip(batch, seqs):
        if len(s) <= max_len and tokens < room:
            pool.examples.append(e)
            pool.seqs.append(s)
            tokens += len(s)
            answers += s.n_answer
    return tokens, answers


def fill_long_pool(draw: Callable[[float], Example], tokenizer: PreTrainedTokenizerBase, budget: int, max_len: int,
                   share: float) -> Pool:
    """Like :func:`fill_pool` for long examples whose answer share should equal ``share``.

    ``draw(s)`` returns an example sized for answer share ``s``; after each batch the requested
    share is corrected by the ratio of the target to the share realised so far (document
    lengths are sized in characters, so their token counts drift), which drives the pool's
    answer share to ``share``.
    """
    pool, total, answers, ask, empty = Pool([], []), 0, 0, share, 0
    while total < budget:
        t, a = _add(pool, [draw(ask) for _ in range(_BATCH // 8)], tokenizer, budget - total, max_len)  # long ones are large
        total, answers = total + t, answers + a
        empty = 0 if t else empty + 1
        if empty == _STALLED:
            raise ValueError(f"long examples asked for answer share {ask:.3f} are all longer than {max_len} tokens; "
                             "give long documents more tokens (long_context_tokens) or rows more room (seq_len)")
        if answers:
            ask = float(np.clip(ask * share / (answers / total), 0.5 * share, 2.0 * share))
    return pool


def turn_cost(tokenizer: PreTrainedTokenizerBase, instances: list[Instance]) -> TurnCost:
    """Mean tokens of an answer (with its ``<|end|>``) and of a whole question turn (4 chat markers)."""
    backend = tokenizer.backend_tokenizer
    q = backend.encode_batch([i.question for i in instances], add_special_tokens=False)
    a = backend.encode_batch([i.answer for i in instances], add_special_tokens=False)
    answer = float(np.mean([len(x.ids) + 1 for x in a]))
    return TurnCost(answer=answer, turn=float(np.mean([len(x.ids) for x in q])) + answer + 3)


def questions_for(context_tokens: int, share: float, cost: TurnCost, rng: np.random.Generator) -> int:
    """Questions a ``context_tokens`` document needs so that answers make ``share`` of its tokens.

    Solves ``k * a / (D + k * t) = share`` for ``k`` (``a``: answer tokens, ``t``: turn tokens,
    ``D``: document tokens) and rounds at random, so the expected share is exact; at least 1. A
    share within 10% of a question turn's own answer share is lowered to that bound (at most
    ``9 * D / t`` questions): :func:`check_reachable` refuses a target that needs more.
    """
    share = min(share, max_share(cost))
    k = share * context_tokens / (cost.answer - share * cost.turn)
    return max(1, int(k) + int(rng.random() < k - int(k)))


def max_share(cost: TurnCost) -> float:
    """The largest answer share a long document is asked for: 90% of a question turn's own share."""
    return 0.9 * cost.answer / cost.turn


def check_reachable(share: float, cost: TurnCost) -> None:
    """Raise when long documents cannot reach answer share ``share`` (a question turn holds barely more)."""
    if share >= max_share(cost):
        raise ValueError(f"a question turn holds {cost.answer / cost.turn:.3f} answer tokens per token, too close "
                         f"to the target share {share:.3f} for documents to reach it")


def take(pool: Pool, n_tokens: int) -> int:
    """How many leading examples of ``pool`` come closest to ``n_tokens`` tokens (the fewer on a tie)."""
    prefix = np.concatenate([[0], np.cumsum(pool.lengths)])
    return int(np.argmin(np.abs(prefix - n_tokens)))


@dataclass(frozen=True)
class ArmData:
    """The sequences of one arm and what they hold."""

    seqs: list[Encoded]
    short_examples: int
    long_examples: int
    tokens: int
    answer_tokens: int
    questions: int


def arm_data(short: Pool, long: Pool, long_fraction: float, budget: int) -> ArmData:
    """The examples of the arm with ``long_fraction`` of its token budget from the long pool."""
    n_long = take(long, round(long_fraction * budget))
    n_short = 0 if long_fraction >= 1.0 else take(short, budget - int(long.lengths[:n_long].sum()))
    seqs = short.seqs[:n_short] + long.seqs[:n_long]
    questions = sum(len(e.turns) for e in short.examples[:n_short] + long.examples[:n_long])
    return ArmData(seqs, n_short, n_long, int(sum(len(s) for s in seqs)), int(sum(s.n_answer for s in seqs)), questions)
