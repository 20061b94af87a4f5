"""Pack variable-length token sequences into fixed-length rows (first-fit decreasing).

A packed batch is ``input_ids``, ``labels`` (-100 where no loss) and ``position_ids`` that restart
at 0 for every sequence; with no attention mask, transformers turns restarting position ids into a
block-diagonal causal mask, so packed sequences never attend to each other. Row tails are padding
(one more restarting segment, labels -100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Packed:
    """Rows of packed sequences: int64 arrays of shape ``(n_rows, seq_len)``."""

    input_ids: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray
    n_tokens: int  # non-padding tokens
    n_loss_tokens: int  # tokens with a label

    @property
    def n_rows(self) -> int:
        return int(self.input_ids.shape[0])


def pack(seqs: list[np.ndarray], masks: list[np.ndarray], seq_len: int, pad_id: int,
         rng: np.random.Generator) -> Packed:
    """Pack ``seqs`` (token ids) with loss ``masks`` (bool, same lengths) into rows of ``seq_len``.

    Sequences longer than ``seq_len`` are truncated. Rows come out in a random order.
    """
    lengths = np.array([min(len(s), seq_len) for s in seqs], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    remaining = np.zeros(0, dtype=np.int64)
    rows: list[list[int]] = []
    for i in order:  # per sequence, not per token: a vectorised first-fit search
        fits = np.flatnonzero(remaining >= lengths[i])
        if fits.size:
            r = int(fits[0])
        else:
            r = len(rows)
            rows.append([])
            remaining = np.append(remaining, seq_len)
        rows[r].append(int(i))
        remaining[r] -= lengths[i]
    rows = [rows[j] for j in rng.permutation(len(rows))]
    n = len(rows)
    ids = np.full((n, seq_len), pad_id, dtype=np.int64)
    labels = np.full((n, seq_len), -100, dtype=np.int64)
    pos = np.zeros((n, seq_len), dtype=np.int64)
    for r, members in enumerate(rows):
        toks = np.concatenate([np.asarray(seqs[i][: lengths[i]]) for i in members])
        mask = np.concatenate([np.asarray(masks[i][: lengths[i]], dtype=bool) for i in members])
        p = np.concatenate([np.arange(lengths[i]) for i in members])
        k = len(toks)
        ids[r, :k] = toks
        labels[r, :k] = np.where(mask, toks, -100)
        pos[r, :k] = p
        pos[r, k:] = np.arange(seq_len - k)
    n_tokens = int(lengths.sum())
    return Packed(ids, labels, pos, n_tokens, int((labels != -100).sum()))
