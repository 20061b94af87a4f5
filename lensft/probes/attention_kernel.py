"""The ``lensft_stats`` attention kernel: normal attention output plus streamed statistics.

Registered with ``transformers.AttentionInterface`` (and the matching mask function, the sdpa
boolean mask, with ``AttentionMaskInterface``) under :data:`KERNEL_NAME`. Every family lensft
supports (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma2, GPT-2, GPT-NeoX) calls its attention
through that interface in transformers 5, so one code path serves all of them; the kernel reads
what differs (scaling, sliding window, soft-capping, sinks) from the arguments the model passes.

Outside a collection context the kernel is plain ``sdpa`` (or, for soft-capped / sink models
that sdpa cannot run, the streamed exact attention). Inside :func:`collect_attention` it also
computes :func:`~lensft.probes.attention_stats.streaming_attention_stats` for the layer and
hands them to the active :class:`AttentionCollector`, which aggregates them per named query
phase. By default the output then comes out of the same streamed pass (one sweep over the keys
gives both); ``output="sdpa"`` keeps torch's fused kernel for the output and runs a second,
statistics-only pass.
"""

from __future__ import annotations

import contextlib
import logging
import math
from contextvars import ContextVar
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from lensft.handle import ModelHandle
from lensft.probes.attention_stats import AttentionStats, KeySpan, phase_masks, streaming_attention_stats

log = logging.getLogger(__name__)

KERNEL_NAME = "lensft_stats"

#: Statistic fields aggregated per phase, in the order of the collector's last axis.
STAT_FIELDS: tuple[str, ...] = ("entropy", "norm_entropy", "distance", "sink")

_ACTIVE: ContextVar[Optional["AttentionCollector"]] = ContextVar("lensft_attention_collector", default=None)


class AttentionCollector:
    """Accumulates per-layer streamed statistics, summed per query phase.

    Args:
        n_layers, n_heads: model shape.
        layer_of: ``id(attention module) -> layer index`` (from the family map); modules not in
            it fall back to their ``layer_idx`` attribute.
        phases: ``phase name -> [(start, end), ...]`` absolute query positions, shared by every
            batch row (sums run over the rows); or a list with one such mapping per batch row
            (a batch of different prompts), whose sums stay per row.
        key_spans: ``span name -> (start, end)`` absolute key positions for span masses, or
            ``span name -> [(start, end) | None per batch row]``.
        chunk_q, chunk_k: streaming block sizes.
        output: ``"streamed"`` (output from the same pass) or ``"sdpa"`` (torch kernel + stats pass).
        keep_per_query: also keep every layer's :class:`AttentionStats` (tests, short inputs).
        top1: find each query's most attended key (:attr:`last_top1`; retrieval scoring).

    Set :attr:`query_start` to the absolute position of the first query before each forward
    (0 for a prefill, the number of cached tokens for a decode step). Sums stay on the model's
    device until :meth:`means` is read.
    """

    def __init__(self, n_layers: int, n_heads: int, *, layer_of: Mapping[int, int] | None = None,
                 phases: Mapping[str, Sequence[tuple[int, int]]] | Sequence[Mapping[str, Sequence[tuple[int, int]]]] | None = None,
                 key_spans: Mapping[str, KeySpan] | None = None, chunk_q: int = 256, chunk_k: int = 2048,
                 output: Literal["streamed", "sdpa"] = "streamed", keep_per_query: bool = False,
                 top1: bool = True) -> None:
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.layer_of = dict(layer_of or {})
        self.per_row = isinstance(phases, Sequence) and not isinstance(phases, Mapping)
        rows = list(phases) if self.per_row else [phases or {}]  # type: ignore[list-item,arg-type]
        names: list[str] = []
        for r in rows:
            names += [k for k in r if k not in names]
        self.phase_names = names
        self.row_phases = [{k: [tuple(x) for x in r.get(k, [])] for k in names} for r in rows]
        self.phases = self.row_phases[0] if not self.per_row else {}
        self.key_spans = dict(key_spans or {})
        self.chunk_q = chunk_q
        self.chunk_k = chunk_k
        self.output = output
        self.keep_per_query = keep_per_query
        self.top1 = top1
        self.query_start = 0
        self.fields = STAT_FIELDS + tuple(f"mass_{s}" for s in self.key_spans)
        lead = (len(rows),) if self.per_row else ()
        #: sums over queries: [row,] phase, layer, head, field (float64) and query counts [row,] phase, layer, head
        self.sums = torch.zeros(*lead, len(names), n_layers, n_heads, len(self.fields), dtype=torch.float64)
        self.counts = torch.zeros(*lead, len(names), n_layers, n_heads, dtype=torch.float64)
        #: top-1 absolute key position of the last query of the latest forward, [layer, batch, head]
        self.last_top1: dict[int, Int[Tensor, "batch head"]] = {}
        self.per_query: dict[int, list[AttentionStats]] = {}
        self._placed = False

    @classmethod
    def for_handle(cls, handle: ModelHandle, **kw: Any) -> "AttentionCollector":
        """A collector whose layer map comes from the handle's family module paths."""
        layer_of = {id(handle.attention(i)): i for i in range(handle.n_layers)}
        return cls(handle.n_layers, handle.n_heads, layer_of=layer_of, **kw)

    def layer_index(self, module: nn.Module) -> int:
        if id(module) in self.layer_of:
            return self.layer_of[id(module)]
        idx = getattr(module, "layer_idx", None)
        if idx is None:
            raise RuntimeError(f"cannot tell the layer of attention module {type(module).__name__}")
        return int(idx)

    def add(self, layer: int, stats: AttentionStats) -> None:
        """Fold one layer's per-query statistics into the per-phase sums (on the stats' device)."""
        if self.keep_per_query:
            self.per_query.setdefault(layer, []).append(stats)
        if self.top1:
            self.last_top1[layer] = stats.top1[:, :, -1].cpu()
        if not self.phase_names:
            return
        if not self._placed:  # sums live on the device of the first layer (the model's first device)
            self.sums, self.counts = self.sums.to(stats.entropy.device), self.counts.to(stats.entropy.device)
            self._placed = True
        cols = [stats.entropy, stats.normalised_entropy(), stats.distance, stats.sink, *stats.span_mass]
        f = torch.stack(cols, dim=-1).to(torch.float64)  # [b, h, q, field]
        valid = torch.isfinite(stats.entropy)  # [b, h, q]
        f = torch.where(valid[..., None], f, torch.zeros_like(f))
        masks = [phase_masks(r, stats.query_positions) for r in self.row_phases]
        pm = torch.stack(masks).to(torch.float64)  # [rows, phase, q]
        dev = self.sums.device  # a layer on another GPU (device auto) sends its small sums over
        if self.per_row:
            self.sums[:, :, layer] += torch.einsum("bpq,bhqf->bphf", pm, f).to(dev)
            self.counts[:, :, layer] += torch.einsum("bpq,bhq->bph", pm, valid.to(torch.float64)).to(dev)
        else:
            self.sums[:, layer] += torch.einsum("pq,bhqf->phf", pm[0], f).to(dev)
            self.counts[:, layer] += torch.einsum("pq,bhq->ph", pm[0], valid.to(torch.float64)).to(dev)

    def means(self) -> Float[Tensor, "*row phase layer head field"]:
        """Mean of each statistic over the queries of each phase (NaN where a phase is empty),
        on the CPU; with per-row phases the leading axis is the batch row."""
        c = self.counts[..., None]
        return torch.where(c > 0, self.sums / c.clamp(min=1), torch.full_like(self.sums, math.nan)).cpu()


def lensft_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Optional[Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
    s_aux: Optional[Tensor] = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention-interface function: returns ``(output [batch, query, head, dim], None)``."""
    col = _ACTIVE.get()
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    needs_stream = softcap is not None or s_aux is not None
    if col is None and not needs_stream:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    streamed_output = needs_stream or (col is not None and col.output == "streamed")
    q_start = col.query_start if col is not None else None
    stats = streaming_attention_stats(
        query, key, value if streamed_output else None, scaling=scaling, attention_mask=attention_mask,
        causal=causal, sliding_window=sliding_window, softcap=softcap, s_aux=s_aux, query_start=q_start,
        key_spans=col.key_spans if col is not None else None,
        chunk_q=col.chunk_q if col is not None else 128, chunk_k=col.chunk_k if col is not None else 1024,
        top1=col.top1 if col is not None else False,
    )
    if col is not None:
        col.add(col.layer_index(module), stats)
    if streamed_output:
        assert stats.output is not None
        return stats.output.to(query.dtype).transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def register_kernel() -> str:
    """Register the kernel and its mask function with transformers (idempotent); return its name."""
    AttentionInterface.register(KERNEL_NAME, lensft_attention_forward)
    AttentionMaskInterface.register(KERNEL_NAME, sdpa_mask)
    return KERNEL_NAME


register_kernel()


@contextlib.contextmanager
def use_kernel(handle: ModelHandle) -> Iterator[None]:
    """Run the handle's model on the ``lensft_stats`` kernel (restoring the previous one on exit).

    With no collector active the kernel is sdpa, or streamed exact attention for soft-capped
    models, so long prefills never build an n x n matrix.
    """
    previous = handle.model.config._attn_implementation
    if previous != KERNEL_NAME:
        handle.set_attn_implementation(KERNEL_NAME)
    try:
        yield
    finally:
        if previous != KERNEL_NAME and previous is not None:
            handle.set_attn_implementation(previous)


@contextlib.contextmanager
def collect_attention(handle: ModelHandle, collector: Optional[AttentionCollector] = None,
                      **collector_kw: Any) -> Iterator[AttentionCollector]:
    """Run the handle's model on the ``lensft_stats`` kernel with ``collector`` active.

    The model's previous attention implementation is restored on exit. Yields the collector
    (a new one built with :meth:`AttentionCollector.for_handle` from ``collector_kw`` if none
    is given).
    """
    col = collector or AttentionCollector.for_handle(handle, **collector_kw)
    with use_kernel(handle):
        token = _ACTIVE.set(col)
        try:
            yield col
        finally:
            _ACTIVE.reset(token)
