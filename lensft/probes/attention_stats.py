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

Layout: this module holds the public API (:class:`AttentionStats`, :data:`KeySpan`,
:func:`streaming_attention_stats`, :func:`phase_masks`), the two paths the call dispatches to (the
streamed one in plain torch and the fused CPU kernel) and the assembly of their per-query results
(``_Result``). The geometry of key ranges, key chunks and block masks, and the visible-key counts,
are in :mod:`lensft.probes.attention_blocks`; the online-softmax accumulation (augmented values,
block logits, running state) is in :mod:`lensft.probes.attention_online`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lensft.probes.attention_blocks import (
    _F32,
    _block_mask,
    _Geometry,
    _key_chunks,
    _key_ranges,
    _mask_blocks,
    _masked_chunks,
    _visible_counts,
    _visible_keys,
)
from lensft.probes.attention_online import _augmented_values, _BlockState, _scores, _Workspace


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
    return names, [(int(a), int(b)) for a, b in key_spans.values()]  # type: ignore[misc]


#: a key span: ``(start, end)`` for every batch row, or one ``(start, end)`` or None per row
KeySpan = Union[tuple[int, int], Sequence[Optional[tuple[int, int]]]]


def _span_rows(key_spans: Optional[Mapping[str, KeySpan]], b: int
               ) -> tuple[tuple[str, ...], list[list[Optional[tuple[int, int]]]]]:
    """Span names and, per span, the ``(start, end)`` of each batch row (None: the row lacks it)."""
    if not key_spans:
        return (), []
    rows = []
    for name, sp in key_spans.items():
        if len(sp) == 2 and all(isinstance(x, int) for x in sp):
            rows.append([(int(sp[0]), int(sp[1]))] * b)  # type: ignore[arg-type,index]
        elif len(sp) == b:
            rows.append([None if r is None else (int(r[0]), int(r[1])) for r in sp])  # type: ignore[index]
        else:
            raise ValueError(f"key span {name!r} must be (start, end) or one (start, end) | None per batch row")
    return tuple(key_spans), rows


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
    key_spans: Optional[Mapping[str, KeySpan]] = None,
    top1: bool = True,
    chunk_q: int = 256,
    chunk_k: int = 2048,
) -> AttentionStats:
    """Streamed attention statistics of one layer, accumulated in float32 whatever the input dtype.

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
        key_spans: ``name -> (start, end)`` absolute key positions for ``span_mass``, or
            ``name -> [(start, end) | None per batch row]`` (a row without the span gets mass 0).
        top1: also find the most attended key (costs an arg-max per block).
        chunk_q, chunk_k: block sizes; peak extra memory is about
            ``3 * batch * n_heads * chunk_q * chunk_k`` floats.

    Returns:
        :class:`AttentionStats` (float32, on the inputs' device); rows with no visible key get
        NaN statistics, top1 ``-1`` and a zero output; ``top1`` is all ``-1`` when not requested.

    Runs on any device in plain torch: the only host synchronisation is one read of the
    per-block visibility of ``attention_mask`` per call.
    """
    b, h, nq, d = query.shape
    _, hkv, nk, _ = key.shape
    if h % hkv:
        raise ValueError(f"{h} query heads do not divide into {hkv} kv heads")
    if attention_mask is not None and attention_mask.dim() != 4:
        raise ValueError(f"attention_mask must be 4-D [batch, 1|heads, query, key], got {tuple(attention_mask.shape)}")
    q_start = nk - nq if query_start is None else int(query_start)
    geo = _Geometry(b, h, hkv, nq, nk, d, float(scaling) if scaling is not None else d**-0.5, q_start,
                    q_start + nq - nk, query.device)
    names, spans = _span_rows(key_spans, b)
    if not top1 and softcap is None and s_aux is None and attention_mask is None and sliding_window is None:
        fused = _fused_cpu_stats(geo, query, key, value, spans, causal, names)
        if fused is not None:
            return fused
    return _streamed_stats(geo, query, key, value, attention_mask, causal, sliding_window, softcap, s_aux, spans, names,
                           top1, chunk_q, chunk_k)


def _streamed_stats(geo: _Geometry, query: Tensor, key: Tensor, value: Optional[Tensor], attention_mask: Optional[Tensor],
                    causal: bool, sliding_window: Optional[int], softcap: Optional[float], s_aux: Optional[Tensor],
                    spans: list[list[Optional[tuple[int, int]]]], names: tuple[str, ...], top1: bool, chunk_q: int,
                    chunk_k: int) -> AttentionStats:
    """The streamed path of :func:`streaming_attention_stats`: query blocks of ``chunk_q``, each
    folding key blocks of ``chunk_k`` into an online softmax (plain torch, any device)."""
    b, h, nq, d = query.shape
    hkv, nk = key.shape[1], key.shape[2]
    visible = _visible_keys(attention_mask)
    vd = value.shape[-1] if value is not None else 0
    # linear path: sum_j p_j s_j = scale q . sum_j p_j k_j rides in the value matmul, and the running
    # max is subtracted inside the logit matmul (an extra q column against a row of ones in k)
    linear = softcap is None and (attention_mask is None or attention_mask.dtype == torch.bool)
    aug = _augmented_values(geo, value, key if linear else None, spans)
    keys_t = key.to(_F32).transpose(-1, -2)  # [b, hkv, d, nk]
    if linear:
        keys_t = torch.cat([keys_t, torch.ones(b, hkv, 1, nk, dtype=_F32, device=query.device)], dim=-2)
    blocks = _mask_blocks(visible, chunk_q, chunk_k) if visible is not None else None
    res = _Result.empty(geo, len(spans), vd if value is not None else None)
    work = _Workspace(geo, min(chunk_q, nq) * min(chunk_k, nk))
    for qs in range(0, nq, chunk_q):
        qe = min(nq, qs + chunk_q)
        qg = rearrange(query[:, :, qs:qe].to(_F32) * geo.scale, "b (kv g) q d -> b kv (g q) d", g=geo.g)
        if linear:  # last column: minus the running max (0 until a key is seen)
            qg = torch.cat([qg, torch.zeros(*qg.shape[:-1], 1, dtype=_F32, device=query.device)], dim=-1)
        st = _BlockState.start(geo, qe - qs, aug.shape[-1], vd, top1, d if linear else 0)
        if visible is None:
            ranges = _key_chunks(_key_ranges(geo, qs, qe, causal, sliding_window), chunk_k)
        else:
            ranges = _masked_chunks(blocks, qs // chunk_q, chunk_k, nk)  # type: ignore[arg-type]
        for ks, ke, mixed in ranges:
            vis, bias = _block_mask(geo, qs, qe, ks, ke, mixed, causal, sliding_window, attention_mask, visible)
            s = _scores(qg, keys_t[:, :, :, ks:ke], geo.g, softcap, bias, work)
            if linear:
                st.update_linear(s, vis, aug[:, :, ks:ke], geo.k_start + ks, qg)
            else:
                st.update(s, vis, aug[:, :, ks:ke], geo.k_start + ks, work)
        if s_aux is not None:
            st.add_sink_logit(s_aux.to(_F32).view(1, hkv, geo.g, 1).expand(b, hkv, geo.g, qe - qs))
        res.put(st, qs, qe, geo, qg)
    return res.stats(geo, _visible_counts(geo, visible, causal, sliding_window), names)


_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _fused_cpu_stats(geo: _Geometry, query: Tensor, key: Tensor, value: Optional[Tensor],
                     spans: list[list[Optional[tuple[int, int]]]], causal: bool, names: tuple[str, ...]
                     ) -> Optional[AttentionStats]:
    """The same statistics from torch's fused CPU flash-attention kernel, which also returns the
    log-sum-exp of each row: two passes instead of a streamed one in plain torch ops.

    With ``L = logsumexp_j s_j``: entropy ``= L - scale * q . E[k]``, ``E[k]`` and the position and
    span columns come out as "values" of one pass (q and k zero-padded to the width of
    ``[k | pos | spans]``, which leaves every logit unchanged), the output as the values of the
    other; sink mass is ``exp(s_0 - L)``. Float32 throughout. Only on the CPU, without a mask
    (causal over a square block, or a single decoding query), soft-capping, sinks, windows or
    top-1; returns None otherwise (or when this torch lacks the kernel), and the streamed path runs.
    """
    if _FLASH_CPU is None or query.device.type != "cpu" or (geo.nq != geo.nk and geo.nq != 1) or \
            (value is not None and value.shape[-1] != geo.d):
        return None
    is_causal = causal and geo.nq > 1
    g, d = geo.g, geo.d
    q = query.to(_F32)
    k = key.to(_F32).repeat_interleave(g, dim=1) if g > 1 else key.to(_F32)
    k_pos = torch.arange(geo.k_start, geo.k_start + geo.nk, dtype=_F32)
    cols = [k, k_pos.view(1, 1, -1, 1).expand(geo.b, geo.h, geo.nk, 1)]
    for rows in spans:
        ind = torch.zeros(geo.b, 1, geo.nk, 1, dtype=_F32)
        for r, sp in enumerate(rows):
            if sp is not None:
                ind[r, 0, :, 0] = ((k_pos >= sp[0]) & (k_pos < sp[1])).to(_F32)
        cols.append(ind.expand(geo.b, geo.h, geo.nk, 1))
    width = -(-(d + 1 + len(spans)) // 8) * 8
    extra = torch.cat(cols, dim=-1)
    extra = torch.nn.functional.pad(extra, (0, width - extra.shape[-1]))
    pad = (0, width - d)
    try:
        mean, lse = _FLASH_CPU(torch.nn.functional.pad(q, pad), torch.nn.functional.pad(k, pad), extra, 0.0, is_causal,
                               scale=geo.scale)
        out = None
        if value is not None:
            v = value.to(_F32).repeat_interleave(g, dim=1) if g > 1 else value.to(_F32)
            out = _FLASH_CPU(q, k, v, 0.0, is_causal, scale=geo.scale)[0]
    except RuntimeError:  # a build of torch whose kernel refuses these inputs: stream instead
        return None
    entropy = lse - geo.scale * (q * mean[..., :d]).sum(-1)
    q_pos = torch.arange(geo.q_start, geo.q_start + geo.nq, dtype=_F32)
    distance = q_pos - mean[..., d]
    span_mass = mean[..., d + 1:d + 1 + len(spans)].permute(3, 0, 1, 2).contiguous()
    if geo.k_start <= 0 < geo.k_start + geo.nk:  # key at position 0 is visible to every query here
        s0 = geo.scale * (q * k[:, :, -geo.k_start, None, :]).sum(-1)
        sink = torch.exp(s0 - lse)
    else:
        sink = torch.zeros_like(lse)
    n_vis = _visible_counts(geo, None, causal, None)
    top1 = torch.full(lse.shape, -1, dtype=torch.long)
    return AttentionStats(entropy, n_vis, distance, sink, span_mass, top1, q_pos.long(), names, out)


@dataclass
class _Result:
    """Per-query outputs, ``[b, h, nq]`` (``span_mass`` ``[span, b, h, nq]``, ``output`` ``[b, h, nq, vd]``)."""

    entropy: Tensor
    distance: Tensor
    sink: Tensor
    span_mass: Tensor
    top1: Tensor
    output: Optional[Tensor]

    @classmethod
    def empty(cls, geo: _Geometry, n_spans: int, vd: Optional[int]) -> "_Result":
        shape, dev = (geo.b, geo.h, geo.nq), geo.device
        return cls(torch.empty(shape, dtype=_F32, device=dev), torch.empty(shape, dtype=_F32, device=dev),
                   torch.empty(shape, dtype=_F32, device=dev), torch.empty(n_spans, *shape, dtype=_F32, device=dev),
                   torch.full(shape, -1, dtype=torch.long, device=dev),
                   torch.empty(*shape, vd, dtype=_F32, device=dev) if vd is not None else None)

    def put(self, st: _BlockState, qs: int, qe: int, geo: _Geometry, qg: Tensor) -> None:
        """Finish a query block: normalise the sums into statistics (NaN where nothing is visible)."""
        acc, iz = st.acc, st.iz
        z = acc[..., iz]
        ok = z > 0
        zs = torch.where(ok, z, torch.ones_like(z))
        nan = torch.full_like(z, math.nan)
        sl = (slice(None), slice(None), slice(qs, qe))

        def put(dst: Tensor, val: Tensor) -> None:
            dst[sl] = rearrange(val, "b kv g q -> b (kv g) q")

        put(self.entropy, torch.where(ok, st.entropy(zs, qg), nan))
        q_pos = torch.arange(geo.q_start + qs, geo.q_start + qe, device=geo.device, dtype=_F32)
        key_share = st.z_keys / zs if st.z_keys is not None else 1.0  # < 1 when a sink logit takes mass
        put(self.distance, torch.where(ok, q_pos * key_share - acc[..., iz + 1] / zs, nan))
        put(self.sink, torch.where(ok, acc[..., iz + 2] / zs, nan))
        for i in range(self.span_mass.shape[0]):
            self.span_mass[i][sl] = rearrange(torch.where(ok, acc[..., iz + 3 + i] / zs, nan), "b kv g q -> b (kv g) q")
        if st.best_i is not None:
            put(self.top1, torch.where(ok, st.best_i, torch.full_like(st.best_i, -1)))
        if self.output is not None:
            out = (acc[..., :self.output.shape[-1]] / zs[..., None]).masked_fill(~ok[..., None], 0.0)
            self.output[sl] = rearrange(out, "b kv g q v -> b (kv g) q v")

    def stats(self, geo: _Geometry, n_visible: Tensor, names: tuple[str, ...]) -> AttentionStats:
        q_positions = torch.arange(geo.q_start, geo.q_start + geo.nq, device=geo.device)
        return AttentionStats(self.entropy, n_visible, self.distance, self.sink, self.span_mass, self.top1,
                              q_positions, names, self.output)


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
