"""A TransformerLens model of any :class:`~lensft.handle.ModelHandle`, built from its in-memory weights.

Which TransformerLens class a family opens as is data (``transformer_lens`` in the family file):

=============================  ======================  =============================================
family (model types)           TransformerLens class   why
=============================  ======================  =============================================
llama (llama, mistral)         HookedTransformer       converter ``convert_llama_weights``
qwen2                          HookedTransformer       converter ``convert_qwen2_weights``
qwen3                          HookedTransformer       converter ``convert_qwen3_weights``
gpt2                           HookedTransformer       converter ``convert_gpt2_weights``
gpt_neox                       HookedTransformer       converter ``convert_neox_weights``
gemma, gemma2                  TransformerBridge       TL 3.9 builds HookedTransformer Gemma configs
                                                       only for Google's named checkpoints
=============================  ======================  =============================================

A checkpoint of a HookedTransformer family whose config the map is not faithful for (a sliding
window, scaled RoPE, biases TransformerLens's converter drops: the family file's ``requires``)
opens as a ``TransformerBridge`` under ``backend="auto"``; the reason is logged and kept in
``view.lensft_backend_reason``.

Nothing touches the disk or the network: the config comes from the handle's config object, the
weights from its modules, the tokenizer is a private copy of the handle's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lensft.errors import ViewError
from lensft.families import FamilySpec
from lensft.views.faithful import check_faithful, release_weights
from lensft.views.tl_backends import PROCESSING_FLAGS, build_bridge, build_hooked
from lensft.views.tl_config import unmet_requirements

if TYPE_CHECKING:
    from lensft.handle import ModelHandle

log = logging.getLogger(__name__)

Backend = Literal["auto", "hooked", "bridge"]


@dataclass(frozen=True)
class BackendChoice:
    """The TransformerLens class a model opens as (``hooked`` or ``bridge``) and why."""

    backend: str
    reason: str


def choose_backend(family: FamilySpec, config: Any, requested: str = "auto") -> BackendChoice:
    """Pick HookedTransformer where the family map is faithful for ``config``, else TransformerBridge.

    Raises:
        ViewError: the family has no TransformerLens support, or ``requested`` cannot be honoured.
    """
    if requested not in ("auto", "hooked", "bridge"):
        raise ViewError(f"backend must be auto, hooked or bridge, not {requested!r}")
    tl = family.transformer_lens
    if tl is None or (tl.hooked is None and not tl.bridge):
        raise ViewError(f"TransformerLens supports neither HookedTransformer nor TransformerBridge for the "
                        f"{family.name} family; use the Hugging Face model (handle.model) or nnsight (handle.nnsight())")
    reason = tl.note or f"the {family.name} family has no HookedTransformer map"
    if requested != "bridge" and tl.hooked is not None:
        unmet = unmet_requirements(config, tl.hooked)
        if not unmet:
            return BackendChoice("hooked", f"HookedTransformer map of the {family.name} family")
        reason = f"the HookedTransformer map is not faithful for {', '.join(unmet)}"
    if requested == "hooked":
        raise ViewError(f"cannot open this {family.name} model as a HookedTransformer: {reason}; use backend='bridge'")
    if not tl.bridge:
        raise ViewError(f"cannot open this {family.name} model in TransformerLens: {reason}, and the family "
                        "has no TransformerBridge support")
    return BackendChoice("bridge", reason if requested == "auto" else "backend='bridge' requested")


def transformer_lens_view(handle: "ModelHandle", *, backend: str = "auto", keep_hf: bool = True, check: bool = True,
                          **processing: bool) -> Any:
    """A TransformerLens model computing what ``handle.model`` computes (see the module docstring).

    Args:
        handle: any loaded model: a checkpoint, a variant or an in-memory graft.
        backend: ``auto`` (HookedTransformer where the family map allows, else TransformerBridge),
            ``hooked`` or ``bridge``.
        keep_hf: False frees the handle's HF weights once the view is built (HookedTransformer
            views hold their own copy; the handle's model then refuses to run). Tensors the
            handle shares with a triple's cache stay until ``triple.release()``. Bridge views
            share the handle's weights, so there is nothing to free and the handle stays usable.
        check: run view and HF model on a fixed 16-token sequence and raise if their log-probs
            differ by more than :data:`~lensft.views.faithful.CHECK_TOLERANCE`.
        processing: HookedTransformer weight processing (``fold_ln``, ``center_writing_weights``,
            ``center_unembed``, ``fold_value_biases``), all off by default so the view's logits
            equal the HF model's; ``center_unembed`` shifts every logit of a position by a constant.

    Returns:
        ``HookedTransformer`` or ``TransformerBridge`` in eval mode on the handle's device and
        dtype, with ``lensft_provenance`` (a copy of the handle's provenance: sources, graft
        spec), ``lensft_backend`` and ``lensft_backend_reason``. Its ``to_tokens(text)`` gives
        the handle tokenizer's ids (``prepend_bos`` follows the checkpoint's tokenizer).

    Raises:
        ViewError: unsupported family or backend, unknown processing flag, processing asked of a
            bridge, or a view that fails the check.
    """
    unknown = sorted(set(processing) - set(PROCESSING_FLAGS))
    if unknown:
        raise ViewError(f"unknown TransformerLens processing flag(s) {', '.join(unknown)}; "
                        f"use {', '.join(PROCESSING_FLAGS)}")
    choice = choose_backend(handle.family, handle.config, backend)
    if choice.backend == "bridge" and any(processing.values()):
        raise ViewError(f"weight processing needs a HookedTransformer view; {handle.label} opens as a "
                        f"TransformerBridge ({choice.reason})")
    name = handle.label
    if choice.backend == "hooked":
        view = build_hooked(handle.model, handle.tokenizer, handle.family.transformer_lens.hooked,  # type: ignore[union-attr]
                            name=name, processing=processing)
    else:
        view = build_bridge(handle.model, handle.tokenizer, name=name)
    view.lensft_provenance = handle.provenance.model_copy(deep=True)
    view.lensft_backend = choice.backend
    view.lensft_backend_reason = choice.reason
    if check:
        gap = check_faithful(handle.model, view, name=name)
        log.info("TransformerLens %s view of %s: max log-prob gap %.2e nats (%s)", choice.backend, name, gap,
                 choice.reason)
    if not keep_hf and choice.backend == "hooked":
        release_weights(handle.model, name)
    elif not keep_hf:
        log.info("bridge view of %s shares the handle's weights; nothing to release", name)
    return view
