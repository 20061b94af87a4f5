"""Online-softmax accumulation of one query block over its key blocks (float32, plain torch).

Private helpers of :mod:`lensft.probes.attention_stats`, whose docstring gives the algorithm: the
augmented value columns every key carries into the probability-weighted sums
(``_augmented_values``: ``[v | k | 1 | pos | is_sink | spans]``); two block buffers reused by every
block (``_Workspace``); the logits of one block (``_scores``); and the running max and sums of a
query block, ``[batch, kv_head, group, query]`` (``_BlockState``, with ``_EXP_HEADROOM`` and
``_NEG``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from lensft.probes.attention_blocks import _F32, _Geometry

#: Finite stand-in for ``-inf`` after subtracting the running max (exp underflows to exactly 0).
_NEG = -1.0e4


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
