"""In-memory grafts: a :class:`~lensft.handle.ModelHandle` built from a plan without writing to disk.

Every tensor comes from the triple's cache (:meth:`CheckpointTriple.tensor`), read once per
``(checkpoint, dtype, device)``: a graft's tensors taken whole *are* the cached tensors, so a
sweep of grafts and variants in one dtype on one device shares the storage of every untouched
tensor; only blended tensors are new.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from transformers import AutoConfig, AutoTokenizer

from lensft.checkpoints.triple import CheckpointTriple
from lensft.devices import (LoadOptions, MemoryEstimate, check_memory, estimate_activation_bytes,
                            resolve_dtype, resolve_placement)
from lensft.devices.memory import element_bytes
from lensft.devices.placement import device_of
from lensft.graft.plan import GraftPlan, PlanEntry, graft_tensor, plan_graft
from lensft.graft.spec import GraftSpec
from lensft.handle import ModelHandle, Provenance, build_model, plan_auto_map

log = logging.getLogger(__name__)


def graft_model(triple: CheckpointTriple, spec: GraftSpec, options: LoadOptions | None = None, *,
                attn_implementation: str | None = None) -> ModelHandle:
    """Build the grafted model in memory.

    Args:
        triple: the opened checkpoints.
        spec: what comes from where.
        options: device, dtype (default: the host checkpoint's own) and the memory check.
        attn_implementation: attention kernel (default: transformers').

    A blend (``alpha`` < 1) is computed in float32 from the stored tensors and cast once to the
    load dtype. Raises :class:`~lensft.errors.InsufficientMemory` before reading any tensor
    when the tensors not yet cached would not fit.
    """
    opts = options or LoadOptions()
    plan = plan_graft(spec, triple.family, triple.n_layers, triple.metadata())
    host = triple[spec.host]
    dtype = resolve_dtype(opts, host.config, (m.dtype for m in host.tensors.values()))
    placement = resolve_placement(opts)
    acts = estimate_activation_bytes(host.config, dtype, opts.tokens_per_batch)
    device_map = None
    if placement.kind == "auto":
        config = AutoConfig.for_model(**host.config)
        device_map = plan_auto_map(config, dtype, triple.family, MemoryEstimate(0, acts, dtype, opts.tokens_per_batch))
        place: Callable[[str], torch.device] = lambda n: torch.device(device_of(triple.family.runtime_name(n), device_map))
    else:
        place = lambda n: placement.device  # noqa: E731
        if opts.check_memory and not placement.is_meta:
            need = _new_bytes(plan, triple, dtype, placement.device)
            check_memory(MemoryEstimate(need, acts, dtype, opts.tokens_per_batch), placement,
                         what=f"graft {spec.label}")
    tensors = {e.name: _materialise(e, triple, dtype, place(e.name)) for e in plan}
    tokenizer = AutoTokenizer.from_pretrained(host.path, local_files_only=True)
    prov = Provenance(
        label=spec.label,
        sources={v.value: str(triple[v].path.resolve()) for v in sorted(spec.variants(), key=lambda v: v.value)},
        graft=spec.model_dump(mode="json"),
        dtype=str(dtype).replace("torch.", ""),
        device=str(placement),
    )
    return build_model(host.config, tensors, tokenizer, triple.family, prov, attn_implementation=attn_implementation,
                       device_map=device_map)


def variant_model(triple: CheckpointTriple, variant: str, options: LoadOptions | None = None, *,
                  attn_implementation: str | None = None) -> ModelHandle:
    """One checkpoint of the triple as a model, sharing the triple's cached tensors."""
    spec = GraftSpec.build(mha=variant, ffn=variant, host=variant)
    h = graft_model(triple, spec, options, attn_implementation=attn_implementation)
    h.provenance.label = str(variant)
    h.provenance.graft = None
    return h



def _materialise(e: PlanEntry, triple: CheckpointTriple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The tensor of one plan entry: a cached source tensor, or a blend computed from stored values."""
    key = None if e.meta.dtype == dtype or not e.meta.dtype.is_floating_point else dtype
    if not e.blended:
        return triple.tensor(e.source if e.grafted else e.host, e.name, dtype=key, device=device)

    def stored(v, n):  # the blend reads stored values (cached when the load dtype is the stored one)
        if key is None or device.type == "meta":
            return triple.tensor(v, n, dtype=None, device=device)
        return triple[v].get(n).to(device)

    out = graft_tensor(e, stored)
    return out if key is None else out.to(dtype)


def _new_bytes(plan: GraftPlan, triple: CheckpointTriple, dtype: torch.dtype, device: torch.device) -> int:
    """Bytes this graft adds on ``device``: source tensors not cached yet, plus blended tensors."""
    total = 0
    for e in plan:
        m = e.meta
        key = None if m.dtype == dtype or not m.dtype.is_floating_point else dtype
        size = m.nbytes // element_bytes(m.dtype) * element_bytes(key or m.dtype)
        sources = [e.source, e.host] if e.blended else [e.source if e.grafted else e.host]
        total += sum(size for v in sources if not triple.is_cached(v, e.name, dtype=key, device=device))
        if e.blended:
            total += size
    return total
