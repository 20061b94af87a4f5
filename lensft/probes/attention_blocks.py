"""Geometry of one streamed attention call: which keys each query block visits, and with what mask.

Private helpers of :mod:`lensft.probes.attention_stats` (positions are absolute token positions, as
defined there): the shapes and positions of a call (``_Geometry``); the key ranges a query block sees
under a causal mask or a sliding window, cut into chunks (``_key_ranges``, ``_key_chunks``); the
per-block visibility of an explicit attention mask (``_visible_keys``, ``_mask_blocks``,
``_masked_chunks``); the mask of one block, grouped by kv head (``_block_mask``, ``_group``); and the
number of keys each query may attend to (``_visible_counts``). ``_F32`` is the float32 dtype every
accumulation in these modules uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor

_F32 = torch.float32


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


def _visible_keys(attention_mask: Optional[Tensor]) -> Optional[Bool[Tensor, "batch mh query key"]]:
    """The mask as booleans (True = may attend), or None when positions alone decide."""
    if attention_mask is None:
        return None
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


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
