"""SFT arms: chat-formatted task examples, loss on assistant tokens only, one token budget.

A short pool and a long pool are drawn once from the *training* split of the same task makers
(same tasks, same facts, same task weights); they differ only in the long pool's document. An arm
with long fraction ``m`` takes the leading examples of the long pool worth ``m * budget`` tokens and
of the short pool worth ``(1 - m) * budget`` tokens, so every arm sees the same token budget.

An example's tokens are ``<|bos|><|user|> prompt <|end|><|assistant|> answer <|end|>``, exactly
what the tokenizer's chat template produces; the loss mask covers ``answer <|end|>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from lensft.organism.config import SftConfig
from lensft.organism.tasks import TASKS, Example, TaskMaker
from lensft.organism.tokenizer import ASSISTANT, END, USER
from lensft.organism.world import World


@dataclass
class Pool:
    """Tokenised SFT examples: ids and loss masks per example, in draw order."""

    examples: list[Example]
    ids: list[np.ndarray]
    masks: list[np.ndarray]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids], dtype=np.int64)


def encode_chat(tokenizer: PreTrainedTokenizerBase, prompts: list[str], answers: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token ids and assistant-token masks of single-turn chats (batched, no per-token Python)."""
    backend = tokenizer.backend_tokenizer
    p_enc = backend.encode_batch(prompts, add_special_tokens=False)
    a_enc = backend.encode_batch(answers, add_special_tokens=False)
    bos, user, end, asst = (tokenizer.convert_tokens_to_ids(t) for t in (tokenizer.bos_token, USER, END, ASSISTANT))
    ids, masks = [], []
    for p, a in zip(p_enc, a_enc):
        head = np.array([bos, user] + p.ids + [end, asst], dtype=np.int64)
        tail = np.array(a.ids + [end], dtype=np.int64)
        ids.append(np.concatenate([head, tail]))
        masks.append(np.concatenate([np.zeros(len(head), dtype=bool), np.ones(len(tail), dtype=bool)]))
    return ids, masks


def make_pool(world: World, cfg: SftConfig, tokenizer: PreTrainedTokenizerBase, rng: np.random.Generator,
              *, long: bool, budget: int, chars_per_token: float, max_len: int) -> Pool:
    """Draw training-split examples until they hold at least ``budget`` tokens."""
    maker = TaskMaker(world, rng, heldout=False, chars_per_token=chars_per_token)
    tasks = [t for t in TASKS if cfg.task_weights.get(t, 0) > 0]
    weights = np.array([cfg.task_weights[t] for t in tasks], dtype=np.float64)
    weights /= weights.sum()
    lo, hi = cfg.long_context_tokens
    pool = Pool([], [], [])
    total = 0
    while total < budget:
        batch = []
        for _ in range(64):
            task = tasks[int(rng.choice(len(tasks), p=weights))]
            n_ctx = int(rng.integers(lo, hi + 1)) if long else None
            batch.append(maker.make(task, n_ctx, yes_no_prob=0.3))
        ids, masks = encode_chat(tokenizer, [e.prompt for e in batch], [e.answer for e in batch])
        for e, i, m in zip(batch, ids, masks):
            if len(i) <= max_len:
                pool.examples.append(e)
                pool.ids.append(i)
                pool.masks.append(m)
                total += len(i)
    return pool


def take(pool: Pool, n_tokens: int) -> int:
    """How many leading examples of ``pool`` come closest to ``n_tokens`` tokens."""
    if n_tokens <= 0:
        return 0
    cum = np.cumsum(pool.lengths)
    k = int(np.searchsorted(cum, n_tokens))  # first prefix reaching n_tokens
    k = min(k, len(cum) - 1)
    if k > 0 and abs(cum[k - 1] - n_tokens) <= abs(cum[k] - n_tokens):
        return k
    return k + 1


def arm_sequences(short: Pool, long: Pool, long_fraction: float, budget: int) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """The examples of the arm with ``long_fraction`` of its budget from the long pool."""
    n_long = take(long, round(long_fraction * budget))
    n_short = 0 if long_fraction >= 1.0 else take(short, budget - int(long.lengths[:n_long].sum()))
    ids = short.ids[:n_short] + long.ids[:n_long]
    masks = short.masks[:n_short] + long.masks[:n_long]
    stats = {"short_examples": n_short, "long_examples": n_long,
             "short_tokens": int(short.lengths[:n_short].sum()), "long_tokens": int(long.lengths[:n_long].sum())}
    stats["tokens"] = stats["short_tokens"] + stats["long_tokens"]
    return ids, masks, stats
