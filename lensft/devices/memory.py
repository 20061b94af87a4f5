"""Know the memory before loading: what a model needs against what the device has free.

:func:`check_memory` compares an estimate (weights at the load dtype, plus activations for the
largest batch the caller will run) with the free memory of the target: the GPU's free memory
(``torch.cuda.mem_get_info``), the host's available memory (``MemAvailable``, capped by the
cgroup limit of a container), or, for ``auto``, every GPU plus the host. A load that cannot fit
is refused before any tensor is materialised, with one line that says how much is needed and
what to try.

The activation estimate is per token, for one inference forward pass (no gradients), of the
largest per-layer working set plus the logits: hidden states, q/k/v, the FFN's intermediate
activations (three of them for gated FFNs), float32 copies of q/k/v for lensft's attention
kernel, and the logits with a float32 log-softmax, plus one block of the streamed attention.
It is an estimate, not a bound: allocator overhead and framework buffers come on top.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch

from lensft.devices.options import Placement
from lensft.errors import InsufficientMemory

log = logging.getLogger(__name__)

GB = 1e9
#: streamed-attention block the kernel holds per head (3 float32 blocks of 256 x 2048)
_BLOCK_BYTES = 3 * 256 * 2048 * 4

#: what to try, in library words (the CLI renders the same keys as flags)
REMEDIES: dict[str, str] = {
    "dtype": "a smaller dtype (bfloat16)",
    "auto": "device auto (every visible GPU, then CPU offload)",
    "tokens": "fewer or shorter prompts per batch",
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a load needs: ``weights`` at ``dtype`` plus ``activations`` for ``tokens`` tokens per batch."""

    weights: int
    activations: int
    dtype: torch.dtype
    tokens: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.activations


def element_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def weight_bytes(tensors: Iterable[tuple[tuple[int, ...], torch.dtype]], dtype: torch.dtype) -> int:
    """Bytes of ``(shape, stored dtype)`` tensors once float tensors are cast to ``dtype``."""
    total = 0
    for shape, stored in tensors:
        n = 1
        for s in shape:
            n *= int(s)
        total += n * element_bytes(dtype if stored.is_floating_point else stored)
    return total


def _cfg(config: Mapping[str, Any], *keys: str, default: Optional[int] = None) -> int:
    for k in keys:
        v = config.get(k)
        if isinstance(v, int) and v > 0:
            return v
    if default is None:
        raise KeyError(keys[0])
    return default


def estimate_activation_bytes(config: Mapping[str, Any], dtype: torch.dtype, tokens: int) -> int:
    """Estimated peak activation bytes of one forward pass over ``tokens`` tokens (batch x length)."""
    if tokens <= 0:
        return 0
    text = config.get("text_config")
    cfg = text if isinstance(text, Mapping) else config
    d = _cfg(cfg, "hidden_size", "n_embd", "d_model")
    h = _cfg(cfg, "num_attention_heads", "n_head")
    kv = _cfg(cfg, "num_key_value_heads", default=h)
    hd = _cfg(cfg, "head_dim", default=d // h)
    ffn = _cfg(cfg, "intermediate_size", "n_inner", default=4 * d)
    vocab = _cfg(cfg, "vocab_size", default=0)
    e = element_bytes(dtype)
    per_token = e * (4 * d + h * hd + 2 * kv * hd + 3 * ffn) + 4 * (h * hd + 2 * kv * hd + 8) + vocab * (e + 4)
    return tokens * per_token + h * _BLOCK_BYTES


def host_available() -> Optional[int]:
    """Bytes the host can still give this process: ``MemAvailable``, capped by a cgroup v2 limit."""
    avail: Optional[int] = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            room = int(limit) - used
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def available_memory(placement: Placement) -> dict[str, int]:
    """Free bytes per device the placement may use (``cpu``, ``cuda:N``); empty for ``meta``.

    A device whose free memory cannot be read is left out (and not checked).
    """
    if placement.is_meta:
        return {}
    out: dict[str, int] = {}
    gpus = placement.gpus if placement.kind == "auto" else ((placement.device.index,) if placement.device.type == "cuda" else ())
    for i in gpus:
        free, _ = torch.cuda.mem_get_info(i)
        out[f"cuda:{i}"] = int(free)
    if placement.kind == "auto" or placement.device.type == "cpu":
        host = host_available()
        if host is not None:
            out["cpu"] = host
    return out


def check_memory(estimate: MemoryEstimate, placement: Placement, *, what: str,
                 free: Optional[Mapping[str, int]] = None) -> None:
    """Refuse, in one line, a load whose estimate exceeds the placement's free memory.

    Args:
        estimate: from :func:`weight_bytes` and :func:`estimate_activation_bytes`.
        placement: where the model goes.
        what: the model, for the message (``"checkpoint ckpt/short"``).
        free: free bytes per device (default: :func:`available_memory` now).

    Raises:
        InsufficientMemory: with the needed and free amounts and what to try.
    """
    free = dict(available_memory(placement) if free is None else free)
    if not free:
        return
    have = sum(free.values())
    log.info("%s needs about %.2f GB (%s); free: %s", what, estimate.total / GB, estimate.dtype,
             ", ".join(f"{k} {v / GB:.2f} GB" for k, v in free.items()))
    if estimate.total <= have:
        return
    remedies = []
    if estimate.dtype == torch.float32:
        remedies.append("dtype")
    if placement.kind == "single" and placement.device.type == "cuda":
        remedies.append("auto")
    if estimate.tokens > 0:
        remedies.append("tokens")
    acts = f" + {estimate.activations / GB:.2f} GB of activations for {estimate.tokens:,} tokens per batch" \
        if estimate.activations else ""
    where = " + ".join(free) if len(free) > 1 else next(iter(free))
    message = (f"{what} needs about {estimate.total / GB:.2f} GB ({estimate.weights / GB:.2f} GB of weights in "
               f"{str(estimate.dtype).replace('torch.', '')}{acts}) but {where} has {have / GB:.2f} GB free")
    raise InsufficientMemory(message, remedies=tuple(remedies), phrases=REMEDIES)
