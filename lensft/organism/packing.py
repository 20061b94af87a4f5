"""Pack variable-length token sequences into fixed-length rows and rows into batches.

Sequences are packed first-fit decreasing, longest first: a sequence goes into the first row with
room for it, else opens a row of the shortest length that holds it (``row_lengths``, e.g. 128 and
1024), so short documents fill the gaps long ones leave but never pay for long attention on their
own. A batch holds rows of one length and about ``batch_tokens`` token slots. A batch is
``input_ids``, ``weights`` (the loss weight of predicting each token from the ones before it; 0
on padding and on every sequence's first token) and ``position_ids`` that restart at 0 for every
sequence. With no attention mask and no cache (``use_cache=False``, see
:func:`lensft.organism.training.forward_packed`), transformers turns restarting position ids into
a block-diagonal causal mask, so packed sequences never attend to each other. Row tails are
padding (one more restarting segment, weight 0).

:func:`stream` packs an endless corpus chunk by chunk, so a training run of any length holds
only one chunk in memory and its first steps depend only on its first chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lensft.organism.encoding import Encoded


@dataclass(frozen=True)
class Batch:
    """One optimiser step of packed rows, each array of shape ``(rows, row_len)``."""

    input_ids: np.ndarray  # int64
    weights: np.ndarray  # float32
    position_ids: np.ndarray  # int64
    n_tokens: int  # non-padding tokens
    n_answer: int  # answer tokens of the sequences packed here


def _first_fit(lengths: np.ndarray, remaining: list[int], capacity: int) -> tuple[list[list[int]], list[int]]:
    """First-fit decreasing of ``lengths`` into rows with ``remaining`` free slots, opening rows of ``capacity``.

    Returns, per row (the given ones first, then the new ones), the indices into ``lengths`` it
    received, and every row's remaining free slots.
    """
    order = np.argsort(-lengths, kind="stable")
    free = np.asarray(remaining, dtype=np.int64)
    rows: list[list[int]] = [[] for _ in remaining]
    for i in order:  # per sequence, not per token: a vectorised first-fit search
        fits = np.flatnonzero(free >= lengths[i])
        if fits.size:
            r = int(fits[0])
        else:
            r = len(rows)
            rows.append([])
            free = np.append(free, capacity)
        rows[r].append(int(i))
        free[r] -= lengths[i]
    return rows, free.tolist()


def _fill(seqs: Sequence[Encoded], rows: list[list[int]], row_len: int, pad_id: int) -> Batch:
    n = len(rows)
    ids = np.full((n, row_len), pad_id, dtype=np.int64)
    weights = np.zeros((n, row_len), dtype=np.float32)
    pos = np.zeros((n, row_len), dtype=np.int64)
    n_tokens = n_answer = 0
    for r, members in enumerate(rows):
        k = 0
        for i in members:
            s = seqs[i]
            m = min(len(s), row_len)
            ids[r, k:k + m] = s.ids[:m]
            weights[r, k:k + m] = s.weights[:m]
            pos[r, k:k + m] = np.arange(m)
            n_answer += int(s.answer[:m].sum())
            k += m
        n_tokens += k
        pos[r, k:] = np.arange(row_len - k)
    return Batch(ids, weights, pos, n_tokens, n_answer)


def pack(seqs: Sequence[Encoded], row_lengths: tuple[int, ...], batch_tokens: int, pad_id: int,
         rng: np.random.Generator) -> list[Batch]:
    """Pack ``seqs`` into shuffled batches (sequences longer than the longest row are truncated)."""
    row_lengths = tuple(sorted(row_lengths))
    lengths = np.array([min(len(s), row_lengths[-1]) for s in seqs], dtype=np.int64)
    bucket = np.searchsorted(np.array(row_lengths), lengths)  # shortest row length that fits
    rows: list[list[int]] = []  # members of every row, longest rows first
    row_len: list[int] = []
    free: list[int] = []
    for b in reversed(range(len(row_lengths))):  # longest first; shorter sequences also fill longer rows' gaps
        idx = np.flatnonzero(bucket == b)
        members, free = _first_fit(lengths[idx], free, row_lengths[b])
        rows = [r + [int(idx[i]) for i in m] for r, m in zip(rows, members)] + \
               [[int(idx[i]) for i in m] for m in members[len(rows):]]
        row_len += [row_lengths[b]] * (len(members) - len(row_len))
    batches: list[Batch] = []
    for length in row_lengths:
        mine = [r for r, n in zip(rows, row_len) if n == length and r]
        mine = [mine[j] for j in rng.permutation(len(mine))]
        per_batch = max(1, batch_tokens // length)
        for s in range(0, len(mine), per_batch):
            batches.append(_fill(seqs, mine[s: s + per_batch], length, pad_id))
    return [batches[j] for j in rng.permutation(len(batches))]


def stream(make_chunk: Callable[[], list[Encoded]], row_lengths: tuple[int, ...], batch_tokens: int, pad_id: int,
           rng: np.random.Generator) -> Iterator[Batch]:
    """Endless batches: each chunk from ``make_chunk()`` is packed and shuffled, then the next is drawn."""
    while True:
        yield from pack(make_chunk(), row_lengths, batch_tokens, pad_id, rng)
