"""Build-time checks that a view computes what its HF model computes, and release of the HF weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lensft.errors import ViewError

#: largest |log p(view) - log p(HF)| (nats) accepted when a view is built, per weight dtype: a
#: conversion mistake moves log-probs by whole nats; float rounding stays far below these. float64
#: gets no tighter bound: HF computes RoPE angles and the eager softmax in float32 for every dtype
#: (SmolLM2 in float64: 2e-5 nats between the view and HF, 1e-5 between HF's own sdpa and eager).
CHECK_TOLERANCE: dict[torch.dtype, float] = {torch.float64: 1e-3, torch.float32: 1e-3, torch.float16: 0.1,
                                             torch.bfloat16: 0.5}


def probe_ids(vocab_size: int, n_tokens: int = 16) -> Tensor:
    """A fixed token sequence ``[1, n_tokens]`` spread over the vocabulary (no randomness)."""
    return (torch.arange(1, n_tokens + 1) * 7919 % vocab_size).unsqueeze(0)


@torch.no_grad()
def logprob_gap(model: nn.Module, view: nn.Module, ids: Tensor) -> float:
    """max |log_softmax(view(ids)) - log_softmax(model(ids))| over positions and vocabulary (nats).

    Log-probs rather than logits, so views built with ``center_unembed`` compare too."""
    ref = model(input_ids=ids, use_cache=False).logits.float().log_softmax(-1)
    got = view(ids.to(ref.device)).float().log_softmax(-1)
    return float((got - ref).abs().max())


def check_faithful(model: nn.Module, view: nn.Module, *, name: str) -> float:
    """Run both on :func:`probe_ids` and return the gap.

    Raises:
        ViewError: the gap is above :data:`CHECK_TOLERANCE` for the weights' dtype.
    """
    p = next(model.parameters())
    ids = probe_ids(model.get_input_embeddings().num_embeddings).to(p.device)
    gap = logprob_gap(model, view, ids)
    tol = CHECK_TOLERANCE.get(p.dtype, 0.5)
    if not gap <= tol:
        raise ViewError(f"the TransformerLens view of {name} differs from the Hugging Face model by {gap:.3g} nats "
                        f"(tolerance {tol:g}); open it with backend='bridge' and report the family")
    return gap


def release_weights(model: nn.Module, name: str) -> None:
    """Move ``model``'s parameters and buffers to the meta device (freeing every tensor nothing
    else holds) and make any later forward raise a :class:`ViewError` that says why."""
    model.to("meta")

    def refuse(*_: object) -> None:
        raise ViewError(f"the Hugging Face weights of {name} were released for its TransformerLens view; "
                        "load the model again to run it")

    model.register_forward_pre_hook(refuse)
