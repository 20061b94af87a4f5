"""Token ids and loss weights of the organism's documents and chats.

A chat is ``<|bos|><|user|>context\\nquestion<|end|><|assistant|>answer<|end|>`` followed by
``<|user|>question<|end|><|assistant|>answer<|end|>`` for every further turn: exactly what the
tokenizer's chat template renders (:mod:`lensft.organism.tokenizer`). Each token carries the
loss weight of predicting it from the tokens before it; BOS always has weight 0 (a packed
sequence never predicts its own start from the previous one). Answer tokens are the assistant
turns' text and their closing ``<|end|>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from lensft.organism.tokenizer import ASSISTANT, END, USER


@dataclass(frozen=True)
class Encoded:
    """One training sequence: ``ids`` (int64), ``weights`` (float32) and ``answer`` (bool), each ``[n]``.

    ``answer`` marks answer tokens (assistant text and its closing ``<|end|>``).
    """

    ids: np.ndarray
    weights: np.ndarray
    answer: np.ndarray

    @property
    def n_answer(self) -> int:
        """Number of answer tokens."""
        return int(self.answer.sum())

    def __len__(self) -> int:
        return len(self.ids)


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[Encoded]:
    """Plain documents: BOS then the text, weight 1 on every token but BOS."""
    bos = tokenizer.bos_token_id
    out = []
    for e in tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids = np.array([bos, *e.ids], dtype=np.int64)
        w = np.ones(len(ids), dtype=np.float32)
        w[0] = 0.0
        out.append(Encoded(ids, w, np.zeros(len(ids), dtype=bool)))
    return out


def encode_chats(tokenizer: PreTrainedTokenizerBase, chats: Sequence[tuple[str, Sequence[tuple[str, str]]]], *,
                 prompt_weight: float, answer_weight: float) -> list[Encoded]:
    """Chats given as ``(context, [(question, answer), ...])``; the context ('' for none) opens the first turn.

    ``prompt_weight`` applies to user turns and the chat markers, ``answer_weight`` to answers.
    """
    users: list[str] = []
    answers: list[str] = []
    for context, turns in chats:
        for i, (q, a) in enumerate(turns):
            users.append(f"{context}\n{q}" if i == 0 and context else q)
            answers.append(a)
    backend = tokenizer.backend_tokenizer
    u_enc = backend.encode_batch(users, add_special_tokens=False)
    a_enc = backend.encode_batch(answers, add_special_tokens=False)
    bos, user, end, asst = (tokenizer.convert_tokens_to_ids(t) for t in (tokenizer.bos_token, USER, END, ASSISTANT))
    out: list[Encoded] = []
    k = 0
    for _, turns in chats:
        ids: list[int] = [bos]
        w: list[float] = [0.0]
        ans: list[bool] = [False]
        for _ in turns:
            head = [user, *u_enc[k].ids, end, asst]
            tail = [*a_enc[k].ids, end]
            ids += head + tail
            w += [prompt_weight] * len(head) + [answer_weight] * len(tail)
            ans += [False] * len(head) + [True] * len(tail)
            k += 1
        out.append(Encoded(np.array(ids, dtype=np.int64), np.array(w, dtype=np.float32), np.array(ans, dtype=bool)))
    return out
