"""Pack variable-length token sequences into fixed-length rows and rows into batches.

Each sequence goes to the shortest row length that holds it (``row_lengths``, e.g. 256 and
1024), so short documents do not pay for long attention. Rows of one length are filled first-fit
decreasing; a batch holds rows of one length and about ``batch_tokens`` tokens. A batch is
``input_ids``, ``labels`` (-100 where no loss) and ``position_ids`` that restart at 0 for every
sequence; with no attention mask and no cache (``use_cache=False``, see
:func:`lensft.organism.training.forward_packed`), transformers turns restarting position ids into
a block-diagonal causal mask, so packed sequences never attend to each other. Row tails are padding
(one more restarting segment, labels -100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    """One optimiser step of packed rows: int64 arrays of shape ``(rows, row_len)``."""

    input_ids: np.ndarray
    labels: np.ndarray
    position_ids: np.ndarray


@dataclass
class Packed:
    """The batches of a training stage, in training order."""

    batches: list[Batch]
    n_tokens: int  # non-padding tokens
    n_loss_tokens: int  # tokens with a label

    @property
    def n_rows(self) -> int:
        return sum(b.input_ids.shape[0] for b in self.batches)


def _first_fit(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Row membership (indices into ``lengths``) by first-fit decreasing."""
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
            remaining = np.append(remaining, capacity)
        rows[r].append(int(i))
        remaining[r] -= lengths[i]
    return rows


def _fill(seqs, masks, lengths, rows: list[list[int]], row_len: int, pad_id: int) -> Batch:
    n = len(rows)
    ids = np.full((n, row_len), pad_id, dtype=np.int64)
    labels = np.full((n, row_len), -100, dtype=np.int64)
    pos = np.zeros((n, row_len), dtype=np.int64)
    for r, members in enumerate(rows):
        toks = np.concatenate([np.asarray(seqs[i][: lengths[i]]) for i in members])
        mask = np.concatenate([np.asarray(masks[i][: lengths[i]], dtype=bool) for i in members])
        k = len(toks)
        ids[r, :k] = toks
        labels[r, :k] = np.where(mask, toks, -100)
        pos[r, :k] = np.concatenate([np.arange(lengths[i]) for i in members])
        pos[r, k:] = np.arange(row_len - k)
    return Batch(ids, labels, pos)


def pack(seqs: list[np.ndarray], masks: list[np.ndarray], row_lengths: tuple[int, ...], batch_tokens: int,
         pad_id: int, rng: np.random.Generator) -> Packed:
    """Pack ``seqs`` (token ids) with loss ``masks`` (bool, same lengths) into shuffled batches.

    Sequences longer than the longest row are truncated.
    """
    row_lengths = tuple(sorted(row_lengths))
    lengths = np.array([min(len(s), row_lengths[-1]) for s in seqs], dtype=np.int64)
    bucket = np.searchsorted(np.array(row_lengths), lengths)  # shortest row length that fits
    batches: list[Batch] = []
    for b, row_len in enumerate(row_lengths):
        idx = np.flatnonzero(bucket == b)
        if idx.size == 0:
            continue
        rows = [[int(idx[i]) for i in row] for row in _first_fit(lengths[idx], row_len)]
        rows = [rows[j] for j in rng.permutation(len(rows))]
        per_batch = max(1, batch_tokens // row_len)
        for s in range(0, len(rows), per_batch):
            batches.append(_fill(seqs, masks, lengths, rows[s: s + per_batch], row_len, pad_id))
    batches = [batches[j] for j in rng.permutation(len(batches))]
    n_loss = sum(int((b.labels != -100).sum()) for b in batches)
    return Packed(batches, int(lengths.sum()), n_loss)
