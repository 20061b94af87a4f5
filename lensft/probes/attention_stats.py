"""Exact per-query attention statistics, streamed over key chunks (no n x n matrix).

For every head and query position this computes, from the queries and keys an attention layer
sees (after RoPE, before the softmax), the statistics of the attention distribution
``alpha_ij = softmax_j(s_ij)`` with ``s_ij = cap * tanh(scale * q_i.k_j / cap)`` (``cap`` only
when the model soft-caps logits) and the model's mask:

- ``entropy``: ``S_i = -sum_j alpha_ij log alpha_ij`` in nats;
- ``n_visible``: number of keys query ``i`` may attend to (``log n_visible`` is the largest
  possible entropy, used for the normalised entropy);
- ``distance``: mean attention distance ``sum_j alpha_ij (pos_i - pos_j)`` in tokens;
- ``sink``: attention mass on absolute position 0;
- ``span_mass``: attention mass on each named key span ``[start, end)`` (absolute positions);
- ``top1``: absolute position of the most attended key (first one on ties);
- ``output`` (optional): ``sum_j alpha_ij v_j``, the layer's attention output.

The softmax is evaluated with an online log-sum-exp (as flash attention does): for each query
the running maximum ``m`` and the sums ``Z = sum exp(s - m)``, ``A = sum exp(s - m) s`` are
rescaled whenever ``m`` grows, and ``S = log Z + m - A / Z`` at the end. Every linear functional
of ``p = exp(s - m)`` (``Z``, positions, span indicators, values, and ``A`` itself, since
``sum_j p_j s_j = scale * q . sum_j p_j k_j`` when logits are not soft-capped) comes out of one
matmul of ``p`` with an augmented value matrix ``[v | k | 1 | pos | sink | spans]``; with
soft-capping or an additive float mask ``A`` is summed element-wise instead. Memory is
``O(chunk_q * chunk_k)`` per head on top of the inputs, so linear in the sequence length;
blocks entirely above the causal diagonal or outside a sliding window are skipped.

Positions: query ``i`` sits at absolute position ``query_start + i``; keys end where the queries
end (self-attention with a KV cache, possibly cropped by a sliding-window cache), so key ``j``
sits at ``query_start + n_query - n_key + j``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor

#: Finite stand-in for ``-inf`` after subtracting the running max (exp underflows to exactly 0).
_NEG = -1.0e4


@dataclass
class AttentionStats:
    """Per-query attention statistics of one layer (see the module docstring for definitions)."""

    entropy: Float[Tensor, "batch head query"]
    n_visible: Float[Tensor, "batch head query"]
    distance: Float[Tensor, "batch head query"]
    sink: Float[Tensor, "batch head query"]
    span_mass: Float[Tensor, "span batch head query"]
    top1: Int[Tensor, "batch head query"]  # -1 where not computed or nothing visible
    query_positions: Int[Tensor, " query"]
    span_names: tuple[str, ...] = ()
    output: Optional[Float[Tensor, "batch head query dim"]] = field(default=None, repr=False)

    def normalised_entropy(self) -> Float[Tensor, "batch head query"]:
        """Entropy divided by ``log n_visible`` (0 when a single key is visible)."""
        denom = torch.log(self.n_visible.clamp(min=1.0))
        return torch.where(denom > 0, self.entropy / denom.clamp(min=1e-30), torch.zeros_like(self.entropy))


def _as_spans(key_spans: Mapping[str, tuple[int, int]] | None) -> tuple[tuple[str, ...], list[tuple[int, int]]]:
    if not key_spans:
        return (), []
    names = tuple(key_spans)
    return names, [(int(a), int(b)) for a, b in key_spans.values()]


def streaming_attention_stats(
    query: Float[Tensor, "batch head query dim"],
    key: Float[Tensor, "batch kv_head key dim"],
    value: Optional[Float[Tensor, "batch kv_head key vdim"]] = None,
    *,
    scaling: Optional[float] = None,
    attention_mask: Optional[Tensor] = None,
    causal: bool = True,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
    s_aux: Optional[Float[Tensor, " head"]] = None,
    query_start: Optional[int] = None,
    key_spans: Optional[Mapping[str, tuple[int, int]]] = None,
    top1: bool = True,
    chunk_q: int = 256,
    chunk_k: int = 2048,
) -> AttentionStats:
    """Streamed attention statistics of one layer.

    Args:
        query: ``[batch, n_heads, n_query, head_dim]`` (HF layout, after RoPE).
        key: ``[batch, n_kv_heads, n_key, head_dim]``; query head ``h`` reads kv head
            ``h // (n_heads / n_kv_heads)`` (GQA, as ``repeat_kv``).
        value: if given, the attention output is computed too (``AttentionStats.output``).
        scaling: logit scale (default ``head_dim ** -0.5``).
        attention_mask: the model's 4-D mask ``[batch, 1 | n_heads, n_query, n_key]``, boolean
            (True = may attend) or additive float. When given it alone decides visibility;
            when None, ``causal`` and ``sliding_window`` do.
        causal: key at position p is visible to a query at position q only if ``p <= q``.
        sliding_window: and only if ``q - p < sliding_window`` (HF convention).
        softcap: logits become ``softcap * tanh(logits / softcap)`` (Gemma 2).
        s_aux: per-head sink logit that takes softmax mass but is not a key (gpt-oss).
        query_start: absolute position of the first query (default ``n_key - n_query``).
        key_spans: ``name -> (start, end)`` absolute key positions for ``span_mass``.
        top1: also find the most attended key (costs an arg-max per block).
        chunk_q, chunk_k: block sizes; peak extra memory is about
            ``3 * batch * n_heads * chunk_q * chunk_k`` floats.

    Returns:
        :class:`AttentionStats`; rows with no visible key get NaN statistics, top1 ``-1`` and
        a zero output; ``top1`` is all ``-1`` when not requested.

    Without soft-capping or an additive float mask, ``sum_j p_j s_j`` (needed for the entropy)
    is ``scale * q . sum_j p_j k_j``, so it rides along in the matmul with the values instead of
    costing an element-wise pass over the block.
    """
    b, h, nq, d = query.shape
    _, hkv, nk, _ = key.shape
    if h % hkv:
        raise ValueError(f"{h} query heads do not divide into {hkv} kv heads")
    if attention_mask is not None and attention_mask.dim() != 4:
        raise ValueError(f"attention_mask must be 4-D [batch, 1|heads, query, key], got {tuple(attention_mask.shape)}")
    g = h // hkv
    scale = float(scaling) if scaling is not None else d**-0.5
    q_start = nk - nq if query_start is None else int(query_start)
    k_start = q_start + nq - nk
    names, spans = _as_spans(key_spans)
    dev = query.device
    f32 = torch.float32
    bool_mask = attention_mask is not None and attention_mask.dtype == torch.bool
    float_mask = attention_mask is not None and not bool_mask
    elementwise = softcap is not None or float_mask  # entropy term needs the logits themselves

    # augmented values shared by all query blocks: [v | k (linear path) | 1 | pos | is_sink | spans]
    k_all = torch.arange(k_start, k_start + nk, device=dev)
    cols = [torch.ones(nk, device=dev, dtype=f32), k_all.to(f32), (k_all == 0).to(f32)]
    cols += [((k_all >= a) & (k_all < e)).to(f32) for a, e in spans]
    extra = torch.stack(cols, dim=-1).expand(b, hkv, nk, len(cols))
    parts = ([value.to(f32)] if value is not None else []) + ([] if elementwise else [key.to(f32)]) + [extra]
    aug = torch.cat(parts, dim=-1)
    vd = value.shape[-1] if value is not None else 0
    kd = 0 if elementwise else d
    iz = vd + kd  # column of Z in the accumulator
    width = aug.shape[-1]

    entropy = torch.empty(b, h, nq, dtype=f32, device=dev)
    n_vis = torch.empty(b, h, nq, dtype=f32, device=dev)
    distance = torch.empty(b, h, nq, dtype=f32, device=dev)
    sink = torch.empty(b, h, nq, dtype=f32, device=dev)
    span_mass = torch.empty(len(spans), b, h, nq, dtype=f32, device=dev)
    top1_out = torch.full((b, h, nq), -1, dtype=torch.long, device=dev)
    out = torch.empty(b, h, nq, vd, dtype=f32, device=dev) if value is not None else None
    keys_t = key.to(f32).transpose(-1, -2)  # [b, hkv, d, nk]

    for qs in range(0, nq, chunk_q):
        qe = min(nq, qs + chunk_q)
        cq = qe - qs
        q_pos = torch.arange(q_start + qs, q_start + qe, device=dev)
        qc = query[:, :, qs:qe].to(f32) * scale  # scaled queries, [b, h, cq, d]
        qg = rearrange(qc, "b (kv g) q d -> b kv (g q) d", g=g)  # GQA: query heads grouped by their kv head
        lo, hi = 0, nk
        if attention_mask is None:
            if causal:
                hi = min(nk, q_start + qe - k_start)
            if sliding_window is not None:
                lo = max(0, q_start + qs - sliding_window + 1 - k_start)
        m = torch.full((b, hkv, g, cq), -math.inf, dtype=f32, device=dev)
        acc = torch.zeros(b, hkv, g, cq, width, dtype=f32, device=dev)
        ent_a = torch.zeros(b, hkv, g, cq, dtype=f32, device=dev) if elementwise else None  # sum p (s - m)
        cnt = torch.zeros(b, hkv, g, cq, dtype=f32, device=dev)
        best = torch.full((b, hkv, g, cq), -math.inf, dtype=f32, device=dev) if top1 else None
        best_i = torch.full((b, hkv, g, cq), -1, dtype=torch.long, device=dev) if top1 else None
        for ks in range(lo, hi, chunk_k):
            ke = min(hi, ks + chunk_k)
            ck = ke - ks
            vis: Optional[Tensor] = None  # [b|1, hkv|1, g|1, cq, ck]; None = all visible
            bias: Optional[Tensor] = None
            if attention_mask is None:
                k_pos = k_all[ks:ke]
                conds = []
                if causal and k_start + ke - 1 > q_start + qs:
                    conds.append(q_pos[:, None] >= k_pos[None, :])
                if sliding_window is not None and (q_start + qe - 1) - (k_start + ks) >= sliding_window:
                    conds.append(q_pos[:, None] - k_pos[None, :] < sliding_window)
                if conds:
                    vis = (conds[0] if len(conds) == 1 else conds[0] & conds[1])[None, None, None]
            else:
                mc = attention_mask[:, :, qs:qe, ks:ke]
                mc = mc[:, :, None] if mc.shape[1] == 1 else mc.reshape(mc.shape[0], hkv, g, cq, ck)
                if bool_mask:
                    vis = mc
                else:
                    bias = mc.to(f32)
                    vis = bias > torch.finfo(f32).min / 2
                if not bool(vis.any()):
                    continue
            s = rearrange(torch.matmul(qg, keys_t[:, :, :, ks:ke]), "b kv (g q) k -> b kv g q k", g=g)
            if softcap is not None:
                s = torch.tanh(s.div_(softcap)).mul_(softcap)
            if bias is not None:
                s = s.add_(bias)
            if vis is not None:
                s = s.masked_fill_(~vis, -math.inf)
                cnt += vis.sum(-1, dtype=f32)
            else:
                cnt += ck
            if top1:
                cmax, carg = s.max(dim=-1)
                better = cmax > best
                best = torch.where(better, cmax, best)
                best_i = torch.where(better, carg + (k_start + ks), best_i)
            else:
                cmax = s.amax(dim=-1)
            m_new = torch.maximum(m, cmax)
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            alpha = torch.exp(m - m_safe)  # 0 where m was -inf
            if ent_a is not None:
                shift = torch.where(torch.isfinite(m), m - m_safe, torch.zeros_like(m))
                ent_a = alpha * (ent_a + acc[..., iz] * shift)
            acc.mul_(alpha[..., None])
            if ent_a is not None:
                t = s.sub_(m_safe[..., None]).clamp_(min=_NEG)
                p = torch.exp(t)
                ent_a += (p * t).sum(-1)
            else:
                p = s.sub_(m_safe[..., None]).exp_()  # masked logits are -inf -> 0
            pv = torch.matmul(rearrange(p, "b kv g q k -> b kv (g q) k"), aug[:, :, ks:ke])
            acc += rearrange(pv, "b kv (g q) w -> b kv g q w", g=g)
            m = m_new
        z_keys: Optional[Tensor] = None
        acc_s_extra: Tensor | float = 0.0
        m_fin = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        if s_aux is not None:
            aux = s_aux.to(f32).view(1, hkv, g, 1).expand(b, hkv, g, cq)
            m_new = torch.maximum(m_fin, aux)
            alpha = torch.exp(m_fin - m_new) * torch.isfinite(m)
            if ent_a is not None:
                ent_a = alpha * (ent_a + acc[..., iz] * (m_fin - m_new))
            acc.mul_(alpha[..., None])
            z_keys = acc[..., iz].clone()
            w_aux = torch.exp(aux - m_new)
            acc[..., iz] += w_aux
            if ent_a is not None:
                ent_a += w_aux * (aux - m_new)
            else:  # the linear path keeps sum p s; the sink logit adds w_aux * aux
                acc_s_extra = w_aux * aux
            m_fin = m_new
        z = acc[..., iz]
        ok = z > 0
        zs = torch.where(ok, z, torch.ones_like(z))
        nan = torch.full_like(z, math.nan)
        if ent_a is not None:
            ent = torch.log(zs) - ent_a / zs
        else:
            # sum_j p_j s_j = (scaled q) . sum_j p_j k_j ; entropy = log Z + m - E_p[s]
            qgq = rearrange(qc, "b (kv g) q d -> b kv g q d", g=g)
            sum_ps = (qgq * acc[..., vd:vd + d]).sum(-1) + acc_s_extra
            ent = torch.log(zs) + m_fin - sum_ps / zs
        sl = (slice(None), slice(None), slice(qs, qe))

        def put(dst: Tensor, val: Tensor) -> None:
            dst[sl] = rearrange(val, "b kv g q -> b (kv g) q")

        put(entropy, torch.where(ok, ent, nan))
        key_share = z_keys / zs if z_keys is not None else 1.0  # < 1 when a sink logit takes mass
        put(distance, torch.where(ok, q_pos.to(f32) * key_share - acc[..., iz + 1] / zs, nan))
        put(sink, torch.where(ok, acc[..., iz + 2] / zs, nan))
        for i in range(len(spans)):
            span_mass[i][sl] = torch.where(ok, acc[..., iz + 3 + i] / zs, nan).reshape(b, h, cq)
        if best_i is not None:
            put(top1_out, best_i)
        put(n_vis, cnt)
        if out is not None:
            out[sl] = (acc[..., :vd] / zs[..., None]).masked_fill(~ok[..., None], 0.0).reshape(b, h, cq, vd)
    q_positions = torch.arange(q_start, q_start + nq, device=dev)
    return AttentionStats(entropy, n_vis, distance, sink, span_mass, top1_out, q_positions, names, out)


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


def phase_masks(phases: Mapping[str, Sequence[tuple[int, int]]], query_positions: Int[Tensor, " query"]
                ) -> Bool[Tensor, "phase query"]:
    """Which query positions fall in each phase (a phase is a list of ``[start, end)`` ranges)."""
    rows = []
    for ranges in phases.values():
        r = torch.zeros(query_positions.shape[0], dtype=torch.bool, device=query_positions.device)
        for a, e in ranges:
            r |= (query_positions >= a) & (query_positions < e)
        rows.append(r)
    if not rows:
        return torch.zeros(0, query_positions.shape[0], dtype=torch.bool, device=query_positions.device)
    return torch.stack(rows)
