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
from typing import Mapping, Optional, Sequence, Union

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


@dataclass(frozen=True)
class _Geometry:
    """Shapes and absolute positions of one attention call (query head ``h`` reads kv head ``h // g``)."""

    b: int
    h: int
    hkv: int
    nq: int
    nk: int
    d: int
    scale: float
    q_start: int
    k_start: int
    device: torch.device

    @property
    def g(self) -> int:
        return self.h // self.hkv


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


_F32 = torch.float32
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


def _visible_keys(attention_mask: Optional[Tensor]) -> Optional[Bool[Tensor, "batch mh query key"]]:
    """The mask as booleans (True = may attend), or None when positions alone decide."""
    if attention_mask is None:
        return None
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def _augmented_values(geo: _Geometry, value: Optional[Tensor], key: Optional[Tensor],
                      spans: list[list[Optional[tuple[int, int]]]]) -> Float[Tensor, "batch kv_head key width"]:
    """Columns every key carries into the probability-weighted sum: ``[v | k | 1 | pos | is_sink | spans]``
    (``v`` when the output is wanted, ``k`` on the linear path)."""
    k_pos = torch.arange(geo.k_start, geo.k_start + geo.nk, device=geo.device)
    cols = [torch.ones(geo.nk, device=geo.device, dtype=_F32), k_pos.to(_F32), (k_pos == 0).to(_F32)]
    extra = torch.stack(cols, dim=-1).expand(geo.b, geo.nk, len(cols))
    if spans:
        ind = torch.zeros(geo.b, geo.nk, len(spans), dtype=_F32, device=geo.device)
        for i, rows in enumerate(spans):
            for r, sp in enumerate(rows):
                if sp is not None:
                    ind[r, :, i] = ((k_pos >= sp[0]) & (k_pos < sp[1])).to(_F32)
        extra = torch.cat([extra, ind], dim=-1)
    extra = extra[:, None].expand(geo.b, geo.hkv, geo.nk, extra.shape[-1])
    parts = [t.to(_F32) for t in (value, key) if t is not None]
    return torch.cat([*parts, extra], dim=-1) if parts else extra.contiguous()


def _key_ranges(geo: _Geometry, qs: int, qe: int, causal: bool, window: Optional[int]) -> list[tuple[int, int, bool]]:
    """Key index ranges some query of block ``[qs, qe)`` sees, as ``(start, end, mixed)``;
    ``mixed`` is False where every query of the block sees every key (no mask needed)."""
    first, last = geo.q_start + qs, geo.q_start + qe - 1  # absolute query positions
    big = geo.k_start + geo.nk + geo.nq + 1
    lo_any = first - window + 1 if window is not None else -big
    lo_all = last - window + 1 if window is not None else -big
    hi_all = first + 1 if causal else big
    hi_any = last + 1 if causal else big

    def idx(pos: int) -> int:
        return min(max(pos - geo.k_start, 0), geo.nk)

    if lo_all >= hi_all:  # the window is narrower than the block: every chunk is mixed
        return [(idx(lo_any), idx(hi_any), True)]
    cuts = [(idx(lo_any), idx(lo_all), True), (idx(lo_all), idx(hi_all), False), (idx(hi_all), idx(hi_any), True)]
    return [c for c in cuts if c[0] < c[1]]


def _key_chunks(ranges: list[tuple[int, int, bool]], chunk_k: int) -> list[tuple[int, int, bool]]:
    return [(ks, min(ke, ks + chunk_k), mixed) for a, ke, mixed in ranges for ks in range(a, ke, chunk_k)]


def _mask_blocks(visible: Tensor, chunk_q: int, chunk_k: int) -> tuple[list[list[bool]], list[list[bool]]]:
    """Per (query block, key block): does any query see any key, does every query see every key.

    One pass over the mask and one host synchronisation per call (not one per block).
    """
    b, mh, nq, nk = visible.shape
    pad_q, pad_k = -nq % chunk_q, -nk % chunk_k
    v = visible
    if pad_q or pad_k:
        v = torch.nn.functional.pad(v, (0, pad_k, 0, pad_q), value=False)
    v = v.reshape(b, mh, (nq + pad_q) // chunk_q, chunk_q, (nk + pad_k) // chunk_k, chunk_k)
    any_ = v.any(dim=5).any(dim=3).any(dim=1).any(dim=0)
    full = v.all(dim=5).all(dim=3).all(dim=1).all(dim=0)  # padded cells are False: edge blocks count as mixed
    both = torch.stack([any_, full]).cpu().tolist()
    return both[0], both[1]


def _masked_chunks(blocks: tuple[list[list[bool]], list[list[bool]]], qb: int, chunk_k: int,
                   nk: int) -> list[tuple[int, int, bool]]:
    any_, full = blocks
    return [(kb * chunk_k, min(nk, (kb + 1) * chunk_k), not full[qb][kb]) for kb in range(len(any_[qb])) if any_[qb][kb]]


def _block_mask(geo: _Geometry, qs: int, qe: int, ks: int, ke: int, mixed: bool, causal: bool, window: Optional[int],
                attention_mask: Optional[Tensor], visible: Optional[Tensor]
                ) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``(visibility [b|1, hkv|1, g|1, cq, ck] or None = all, additive bias or None)`` of one block."""
    bias = None
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        bias = _group(attention_mask[:, :, qs:qe, ks:ke], geo).to(_F32)
    if not mixed:
        return None, bias
    if visible is not None:
        return _group(visible[:, :, qs:qe, ks:ke], geo), bias
    q_pos = torch.arange(geo.q_start + qs, geo.q_start + qe, device=geo.device)[:, None]
    k_pos = torch.arange(geo.k_start + ks, geo.k_start + ke, device=geo.device)[None, :]
    vis = torch.ones(qe - qs, ke - ks, dtype=torch.bool, device=geo.device)
    if causal:
        vis &= q_pos >= k_pos
    if window is not None:
        vis &= q_pos - k_pos < window
    return vis[None, None, None], bias


def _group(m: Tensor, geo: _Geometry) -> Tensor:
    """A ``[b, 1 | h, cq, ck]`` mask slice as ``[b, 1 | hkv, 1 | g, cq, ck]``."""
    return m[:, :, None] if m.shape[1] == 1 else m.reshape(m.shape[0], geo.hkv, geo.g, m.shape[2], m.shape[3])


class _Workspace:
    """Two float32 block buffers reused by every block of a call (no allocation per block)."""

    def __init__(self, geo: _Geometry, block: int) -> None:
        n = geo.b * geo.h * block
        self.scores = torch.empty(n, dtype=_F32, device=geo.device)
        self.probs = torch.empty(n, dtype=_F32, device=geo.device)

    @staticmethod
    def view(buf: Tensor, shape: tuple[int, ...]) -> Tensor:
        return buf[:math.prod(shape)].view(shape)


def _scores(qg: Tensor, keys_t: Tensor, g: int, softcap: Optional[float], bias: Optional[Tensor], work: _Workspace
            ) -> Float[Tensor, "batch kv g query key"]:
    """Logits of one block from scaled grouped queries ``[b, hkv, g*cq, d]`` and keys ``[b, hkv, d, ck]``."""
    out = work.view(work.scores, (*qg.shape[:-1], keys_t.shape[-1]))
    s = rearrange(torch.matmul(qg, keys_t, out=out), "b kv (g q) k -> b kv g q k", g=g)
    if softcap is not None:
        s = s.div_(softcap).tanh_().mul_(softcap)
    if bias is not None:
        s = s.add_(bias)
    return s


#: on the linear path a block is exponentiated against the previous running max unless its own
#: max exceeds that by more than this (exp(64) * n keys stays far inside float32)
_EXP_HEADROOM = 64.0


@dataclass
class _BlockState:
    """Online-softmax state of one query block, ``[b, hkv, g, cq]`` (float32).

    ``m``: running max logit (-inf until a key is visible); ``acc``: sums of ``p = exp(s - m)``
    times the augmented value columns (column ``iz`` is ``Z = sum p``; on the linear path the
    ``kd`` columns before it are ``sum p k``); ``ent``: ``sum p (s - m)`` (element-wise path);
    ``best`` / ``best_i``: the top logit and its absolute key position (top1 only).
    """

    m: Tensor
    acc: Tensor
    ent: Tensor
    iz: int
    kd: int = 0
    best: Optional[Tensor] = None
    best_i: Optional[Tensor] = None
    z_keys: Optional[Tensor] = None  #: Z over the keys alone, once a sink logit is added
    s_extra: Tensor | float = 0.0  #: linear path: the sink logit's share of sum p s

    @classmethod
    def start(cls, geo: _Geometry, cq: int, width: int, vd: int, top1: bool, kd: int) -> "_BlockState":
        shape, dev = (geo.b, geo.hkv, geo.g, cq), geo.device
        return cls(torch.full(shape, -math.inf, dtype=_F32, device=dev),
                   torch.zeros(*shape, width, dtype=_F32, device=dev),
                   torch.zeros(shape, dtype=_F32, device=dev), vd + kd, kd,
                   torch.full(shape, -math.inf, dtype=_F32, device=dev) if top1 else None,
                   torch.full(shape, -1, dtype=torch.long, device=dev) if top1 else None)

    def _block_max(self, s: Tensor, shift: Tensor | float, k_offset: int) -> Tensor:
        """Row max of a block of (shifted) logits; tracks the arg-max for top1."""
        if self.best is None:
            return s.amax(dim=-1)
        cmax, carg = s.max(dim=-1)
        better = cmax + shift > self.best
        self.best = torch.where(better, cmax + shift, self.best)
        self.best_i = torch.where(better, carg + k_offset, self.best_i)  # type: ignore[arg-type]
        return cmax

    def update(self, s: Tensor, vis: Optional[Tensor], aug: Tensor, k_offset: int, work: _Workspace) -> None:
        """Element-wise path: fold one block of logits ``s`` ``[b, hkv, g, cq, ck]`` (consumed)."""
        if vis is not None:
            s = s.masked_fill_(~vis, -math.inf)
        m_new = torch.maximum(self.m, self._block_max(s, 0.0, k_offset))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        self._rescale(m_safe)
        t = s.sub_(m_safe[..., None])
        if vis is not None:
            t = t.clamp_(min=_NEG)  # masked logits: exp gives exactly 0 and p * t stays 0 (not 0 * -inf)
        p = torch.exp(t, out=work.view(work.probs, tuple(t.shape)))
        self._add_values(p, aug)
        self.ent += p.mul_(t).sum(-1)  # sum p (s - m), in place once p has served the values
        self.m = m_new

    def update_linear(self, s: Tensor, vis: Optional[Tensor], aug: Tensor, k_offset: int, qg: Tensor) -> None:
        """Linear path: ``s`` is the block's logits minus the running max (subtracted inside the
        matmul through ``qg``'s last column). The block is exponentiated in place against that
        max and the small value sums are rescaled to the new max afterwards; only a block that
        first sees a row's keys, or whose max exceeds the old one by ``_EXP_HEADROOM``, is
        shifted element-wise first (on a GPU always: no host synchronisation)."""
        if vis is not None:
            s = s.masked_fill_(~vis, -math.inf)
        fresh = ~torch.isfinite(self.m)  # no key seen yet: the shift in the matmul was 0
        shift = torch.where(fresh, torch.zeros_like(self.m), self.m)
        cmax = self._block_max(s, shift, k_offset)
        new = torch.where(fresh, cmax, torch.maximum(self.m, shift + cmax))
        delta = torch.where(torch.isfinite(new), new - shift, torch.zeros_like(new))
        scale = torch.exp(-delta)[..., None]
        if s.device.type != "cpu" or bool((fresh & torch.isfinite(cmax)).any() or (cmax > _EXP_HEADROOM).any()):
            self.acc.mul_(scale)
            self._add_values(s.sub_(delta[..., None]).exp_(), aug)
        else:
            self._add_values(s.exp_(), aug)
            self.acc.mul_(scale)
        self.m = new
        qg[..., -1] = -rearrange(torch.where(torch.isfinite(new), new, torch.zeros_like(new)), "b kv g q -> b kv (g q)")

    def _add_values(self, p: Tensor, aug: Tensor) -> None:
        pv = torch.matmul(rearrange(p, "b kv g q k -> b kv (g q) k"), aug)
        self.acc += rearrange(pv, "b kv (g q) w -> b kv g q w", g=p.shape[2])

    def _rescale(self, m_safe: Tensor) -> None:
        """Move the sums from the old max ``m`` to ``m_safe`` (a no-op where ``m`` was -inf)."""
        shift = torch.where(torch.isfinite(self.m), self.m - m_safe, torch.zeros_like(self.m))
        alpha = torch.exp(shift) * torch.isfinite(self.m)
        self.ent = alpha * (self.ent + self.acc[..., self.iz] * shift)
        self.acc.mul_(alpha[..., None])

    def add_sink_logit(self, aux: Tensor) -> None:
        """Add a per-head sink logit that takes softmax mass but is no key (gpt-oss ``s_aux``)."""
        m_fin = torch.where(torch.isfinite(self.m), self.m, torch.zeros_like(self.m))
        m_new = torch.maximum(m_fin, aux)
        self._rescale(m_new)
        self.z_keys = self.acc[..., self.iz].clone()
        w_aux = torch.exp(aux - m_new)
        self.acc[..., self.iz] += w_aux
        self.ent += w_aux * (aux - m_new)
        self.s_extra = w_aux * aux
        self.m = m_new

    def entropy(self, z: Tensor, qg: Tensor) -> Tensor:
        """``log Z + m - E_p[s]`` (linear path, from ``sum p k``) or ``log Z - sum p (s - m) / Z``."""
        if not self.kd:
            return torch.log(z) - self.ent / z
        qd = rearrange(qg[..., :self.kd], "b kv (g q) d -> b kv g q d", g=self.acc.shape[2])
        sum_ps = (qd * self.acc[..., self.iz - self.kd:self.iz]).sum(-1) + self.s_extra
        m_fin = torch.where(torch.isfinite(self.m), self.m, torch.zeros_like(self.m))
        return torch.log(z) + m_fin - sum_ps / z


def _visible_counts(geo: _Geometry, visible: Optional[Tensor], causal: bool, window: Optional[int]
                    ) -> Float[Tensor, "batch head query"]:
    """How many keys each query may attend to (from the mask, else from positions)."""
    if visible is not None:
        return visible.sum(-1, dtype=_F32).expand(geo.b, geo.h, geo.nq)
    q_pos = torch.arange(geo.q_start, geo.q_start + geo.nq, device=geo.device)
    k_last = geo.k_start + geo.nk - 1
    hi = torch.clamp(q_pos, max=k_last) if causal else torch.full_like(q_pos, k_last)
    lo = torch.clamp(q_pos - window + 1, min=geo.k_start) if window is not None else torch.full_like(q_pos, geo.k_start)
    return (hi - lo + 1).clamp(min=0).to(_F32).expand(geo.b, geo.h, geo.nq)


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
