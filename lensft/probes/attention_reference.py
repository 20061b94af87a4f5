"""Dense references for the streamed attention statistics: the same quantities from a full
``[batch, head, query, key]`` pattern, and the visibility mask such a pattern needs.

For tests and short inputs only; the probes use :func:`lensft.probes.attention_stats.streaming_attention_stats`,
which never builds the n x n matrix.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lensft.probes.attention_stats import AttentionStats, _as_spans


def dense_attention_stats(
    weights: Float[Tensor, "batch head query key"],
    *,
    query_start: Optional[int] = None,
    key_spans: Optional[Mapping[str, tuple[int, int]]] = None,
    visible: Optional[Bool[Tensor, "batch head query key"]] = None,
) -> AttentionStats:
    """The same statistics from a full attention pattern (reference for tests and short inputs).

    ``weights`` are softmax probabilities (rows sum to 1 over visible keys). ``visible`` marks
    keys the query may attend to (default: ``weights > 0``, which counts keys whose weight
    underflowed as invisible; pass the mask to count them exactly).
    """
    b, h, nq, nk = weights.shape
    w = weights.to(torch.float64)
    q_start = nk - nq if query_start is None else int(query_start)
    k_start = q_start + nq - nk
    q_pos = torch.arange(q_start, q_start + nq, dtype=torch.float64)
    k_pos = torch.arange(k_start, k_start + nk, dtype=torch.float64)
    names, spans = _as_spans(key_spans)
    vis = visible if visible is not None else w > 0
    entropy = torch.special.entr(w).sum(-1)
    distance = (w * (q_pos[:, None] - k_pos[None, :])).sum(-1)
    sink = (w * (k_pos == 0)).sum(-1)
    span_mass = torch.stack([(w * ((k_pos >= a) & (k_pos < e))).sum(-1) for a, e in spans]) if spans \
        else torch.empty(0, b, h, nq, dtype=torch.float64)
    top1 = w.argmax(-1) + k_start
    n_vis = vis.expand(b, h, nq, nk).sum(-1).to(torch.float32)
    return AttentionStats(entropy.float(), n_vis, distance.float(), sink.float(), span_mass.float(), top1,
                          q_pos.long(), names)


def visibility_mask(n_query: int, n_key: int, *, query_start: Optional[int] = None, causal: bool = True,
                    sliding_window: Optional[int] = None) -> Bool[Tensor, "query key"]:
    """Dense boolean mask of which keys each query sees (for references and tests)."""
    q_start = n_key - n_query if query_start is None else query_start
    k_start = q_start + n_query - n_key
    rel = torch.arange(q_start, q_start + n_query)[:, None] - torch.arange(k_start, k_start + n_key)[None, :]
    vis = torch.ones(n_query, n_key, dtype=torch.bool)
    if causal:
        vis &= rel >= 0
    if sliding_window is not None:
        vis &= rel < sliding_window
    return vis
