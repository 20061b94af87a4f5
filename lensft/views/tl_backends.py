"""The two ways lensft builds a TransformerLens model from an in-memory HF model.

- :func:`build_hooked`: a ``HookedTransformer`` with its own copy of the weights in
  TransformerLens's layout (``W_Q`` as ``[head, d_model, d_head]`` ...), converted by
  TransformerLens's own per-family converter from the HF modules, config from the family map.
- :func:`build_bridge`: a ``TransformerBridge`` around a structural copy of the HF model whose
  parameters and buffers *are* the handle's tensors (no weight is copied); the bridge wraps the
  copy's submodules in place, so the handle's own modules stay untouched.

Both get a private copy of the tokenizer (TransformerLens adjusts padding and special tokens
and would otherwise reload it from its path to turn on ``add_bos_token``).
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from lensft.errors import ViewError
from lensft.families.spec import HookedTransformerMap
from lensft.views.tl_config import hooked_config_fields

log = logging.getLogger(__name__)

#: load_and_process_state_dict flags; all off gives logits equal to the HF model's.
PROCESSING_FLAGS = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases")


def prepends_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the checkpoint's tokenizer puts BOS in front of plain text by itself."""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and len(ids) > 1 and ids[0] == tokenizer.bos_token_id


def tl_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A copy of ``tokenizer`` with ``add_bos_token`` on, as TransformerLens wants it, so that
    TransformerLens neither reloads it from disk nor changes the handle's tokenizer."""
    tok = copy.deepcopy(tokenizer)
    if tok.bos_token is not None:
        try:
            tok.add_bos_token = True
        except (AttributeError, ValueError) as e:  # tokenizers without the switch: TL keeps them as they are
            log.debug("tokenizer has no add_bos_token switch (%s)", e)
    return tok


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def build_hooked(model: nn.Module, tokenizer: PreTrainedTokenizerBase, hooked: HookedTransformerMap, *,
                 name: str, processing: dict[str, bool]) -> Any:
    """A ``HookedTransformer`` holding a converted copy of ``model``'s weights.

    Raises:
        ViewError: TransformerLens rejects the config or the converter fails on the model.
    """
    import transformer_lens.pretrained.weight_conversions as conversions
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    device, dtype = _device_dtype(model)
    fields = hooked_config_fields(model.config, hooked)
    convert = getattr(conversions, hooked.weights, None)
    if convert is None:
        raise ViewError(f"TransformerLens has no weight converter {hooked.weights!r}; fix the family file's "
                        "transformer_lens.hooked.weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TL 3.x deprecates HookedTransformer for 4.0
        try:
            cfg = HookedTransformerConfig(**fields, original_architecture=hooked.architecture, model_name=name,
                                          init_weights=False, device=str(device), dtype=dtype,
                                          default_prepend_bos=prepends_bos(tokenizer))
            with torch.no_grad():
                state = convert(model, cfg)
            view = HookedTransformer(cfg, tokenizer=tl_tokenizer(tokenizer), move_to_device=True)
            _load(view, state, {k: bool(processing.get(k, False)) for k in PROCESSING_FLAGS})
        except (AssertionError, AttributeError, KeyError, RuntimeError, TypeError, ValueError) as e:
            raise ViewError(f"TransformerLens's HookedTransformer cannot hold {name}: {str(e).splitlines()[0][:200]}; "
                            "open it with backend='bridge'") from e
    view.cfg.default_prepend_bos = prepends_bos(tokenizer)  # set_tokenizer may have moved it
    return view.eval()


def _load(view: Any, state: dict[str, torch.Tensor], flags: dict[str, bool]) -> None:
    """Copy converted weights into ``view``. With processing, TransformerLens's own
    ``load_and_process_state_dict``; without, the same load in one ``load_state_dict`` pass
    (TransformerLens loads tensor by tensor, walking every module each time: 10 s on a 135M model)."""
    if any(flags.values()):
        view.load_and_process_state_dict(state, **flags)
    else:
        view.load_state_dict(view.fill_missing_keys(state), strict=True)


def share_structure(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules whose parameters and buffers are the originals (zero-copy)."""
    memo: dict[int, Any] = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def build_bridge(model: nn.Module, tokenizer: PreTrainedTokenizerBase, *, name: str) -> Any:
    """A ``TransformerBridge`` over a weight-sharing copy of ``model`` (the handle's model is not wrapped).

    Raises:
        ViewError: TransformerLens has no bridge adapter for the architecture.
    """
    from transformer_lens.model_bridge import TransformerBridge

    device, dtype = _device_dtype(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            view = TransformerBridge.boot_transformers(f"lensft:{name}", hf_model=share_structure(model),
                                                       tokenizer=tl_tokenizer(tokenizer), device=str(device),
                                                       dtype=dtype)
        except (ValueError, NotImplementedError, KeyError) as e:
            raise ViewError(f"TransformerLens's TransformerBridge cannot wrap {name}: "
                            f"{str(e).splitlines()[0][:200]}") from e
    view.cfg.default_prepend_bos = prepends_bos(tokenizer)
    return view.eval()
