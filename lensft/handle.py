"""Model handles: a loaded ``transformers`` model plus what probes need to reach inside it.

A :class:`ModelHandle` is what flows from the loaders/graft engine into the probes. It holds the
HF model (eval mode, on the device and in the dtype of its :class:`~lensft.devices.LoadOptions`), its tokenizer, its family map (for module paths) and its
provenance (where every tensor came from), and hands out an nnsight wrapper or a
transformer-lens model on demand.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lensft.devices import (LoadOptions, MemoryEstimate, Placement, available_memory, check_memory,
                            estimate_activation_bytes, resolve_dtype, resolve_placement)
from lensft.devices.memory import weight_bytes
from lensft.devices.placement import accelerate_map, auto_budgets, auto_device_map
from lensft.errors import CheckpointError
from lensft.families import FamilySpec
from lensft.provenance import Provenance

log = logging.getLogger(__name__)


@dataclass
class ModelHandle:
    """A loaded causal LM with its tokenizer, family map and provenance."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: FamilySpec
    provenance: Provenance
    _nnsight: Any = field(default=None, repr=False)

    # --- structure ---------------------------------------------------------------------
    @property
    def config(self) -> transformers.PretrainedConfig:
        return self.model.config

    @property
    def label(self) -> str:
        return self.provenance.label

    @property
    def input_device(self) -> torch.device:
        """Where input ids go: the device of the input embedding (its execution device when
        accelerate has offloaded it), i.e. the model's first device."""
        emb = self.model.get_input_embeddings()
        hook = getattr(emb, "_hf_hook", None)
        dev = getattr(hook, "execution_device", None)
        if dev is not None:
            return torch.device("cuda", dev) if isinstance(dev, int) else torch.device(dev)
        return emb.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's floating-point parameters."""
        return self.model.dtype

    @cached_property
    def layers(self) -> nn.ModuleList:
        """The list of transformer layers (``model.layers``, ``transformer.h`` ...)."""
        return self.model.get_submodule(self.family.modules.layers)  # type: ignore[return-value]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def max_positions(self) -> int | None:
        """The longest input (tokens) a learned absolute position table allows (``n_positions``,
        GPT-2 style), or None: rotary models state a training length, not a hard limit."""
        n = getattr(self.config, "n_positions", None)
        return int(n) if n else None

    @property
    def head_dim(self) -> int:
        hd = getattr(self.config, "head_dim", None)
        return int(hd) if hd else int(self.config.hidden_size) // self.n_heads

    def attention(self, layer: int) -> nn.Module:
        """The attention module of ``layer`` (path from the family map)."""
        return self.layers[layer].get_submodule(self.family.modules.attention)

    def mlp(self, layer: int) -> nn.Module:
        """The feed-forward module of ``layer``."""
        return self.layers[layer].get_submodule(self.family.modules.mlp)

    def mlp_activation(self, layer: int) -> nn.Module:
        """The module whose output is act(W_in x) (act(gate) for gated MLPs)."""
        return self.layers[layer].get_submodule(self.family.modules.mlp_activation)

    def mlp_down(self, layer: int) -> nn.Module:
        """The FFN output projection; its input is the full hidden activation (act(gate)*up)."""
        return self.layers[layer].get_submodule(self.family.modules.mlp_down)

    @property
    def final_norm(self) -> nn.Module:
        return self.model.get_submodule(self.family.modules.final_norm)

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_submodule(self.family.modules.lm_head)

    def layer_path(self, layer: int, sub: str | None = None) -> str:
        """Dotted path of a layer (or a submodule of it) inside the HF model."""
        p = f"{self.family.modules.layers}.{layer}"
        return f"{p}.{sub}" if sub else p

    # --- text --------------------------------------------------------------------------
    def format_prompt(self, user: str, *, chat: bool = True) -> str:
        """The text to feed for a user turn: chat-formatted with a generation prompt when the
        tokenizer has a chat template and ``chat`` is true, else ``user`` itself."""
        if chat and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
        return user

    # --- other views -------------------------------------------------------------------
    def set_attn_implementation(self, impl: str) -> None:
        """Switch the attention kernel (``sdpa``, ``eager`` or a registered lensft kernel)."""
        self.model.set_attn_implementation(impl)

    def nnsight(self) -> Any:
        """An nnsight ``NNsight`` wrapper of this model (cached); trace with token-id inputs."""
        if self._nnsight is None:
            from nnsight import NNsight

            self._nnsight = NNsight(self.model)
        return self._nnsight

    def transformer_lens(self, *, backend: str = "auto", keep_hf: bool = True, check: bool = True,
                         **processing: bool) -> Any:
        """A TransformerLens model of this handle's in-memory weights, provenance attached
        (``view.lensft_provenance``); no disk, no network. ``HookedTransformer`` for the llama
        (and mistral), qwen2, qwen3, gpt2 and gpt_neox families, ``TransformerBridge`` for gemma
        and gemma2 and for configs the HookedTransformer map is not faithful for. ``keep_hf=False``
        frees this handle's HF weights once a HookedTransformer copy exists. Details, flags and
        errors: :func:`lensft.views.transformer_lens_view`."""
        from lensft.views import transformer_lens_view

        return transformer_lens_view(self, backend=backend, keep_hf=keep_hf, check=check, **processing)


# ----------------------------------------------------------------------------------------
def load_model(path: str | Path, options: LoadOptions | None = None, *, attn_implementation: str | None = None,
               label: str | None = None) -> ModelHandle:
    """Load one local checkpoint directory as a :class:`ModelHandle` (never touches the network).

    Args:
        path: the checkpoint directory.
        options: device, dtype (default: the checkpoint's own) and the memory check; see
            :class:`~lensft.devices.LoadOptions`.
        attn_implementation: ``sdpa``, ``eager`` or a registered kernel (default: transformers').
        label: display name (default: the directory name).

    Raises:
        CheckpointError: the directory is not a loadable checkpoint.
        DeviceUnavailable: the device asked for is not on this machine.
        InsufficientMemory: the model would not fit (raised before any tensor is read).
    """
    from lensft.checkpoints import open_checkpoint
    from lensft.checkpoints.reader import warn_nonfinite

    opts = options or LoadOptions()
    reader = open_checkpoint(path)  # validates structure and finds the family
    p = reader.path
    placement = resolve_placement(opts)
    dtype = resolve_dtype(opts, reader.config, (m.dtype for m in reader.tensors.values()))
    estimate = MemoryEstimate(weight_bytes(((m.shape, m.dtype) for m in reader.tensors.values()), dtype),
                              estimate_activation_bytes(reader.config, dtype, opts.tokens_per_batch), dtype,
                              opts.tokens_per_batch)
    kw: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        config = AutoConfig.from_pretrained(p, local_files_only=True)
        device_map = None
        if placement.kind == "auto":
            device_map = plan_auto_map(config, dtype, reader.family, estimate)
        elif opts.check_memory and not placement.is_meta:
            check_memory(estimate, placement, what=f"checkpoint {p}")
        if placement.is_meta:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype, **kw)
        else:
            dm = accelerate_map(device_map) if device_map else (
                {"": str(placement.device)} if placement.device.type != "cpu" else None)
            model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=dtype, device_map=dm, **kw)
        tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
    except OSError as e:
        raise CheckpointError(f"cannot load {p}: {str(e).splitlines()[0]}") from None
    model.eval()
    if not placement.is_meta:
        for pname, param in model.named_parameters():
            warn_nonfinite(pname, param.detach(), p)
    name = label or p.name
    prov = Provenance(label=name, sources={name: str(p.resolve())}, dtype=_dtype_name(dtype), device=str(placement))
    log.info("loaded %s: %s on %s", p, dtype, placement)
    return ModelHandle(model, tokenizer, reader.family, prov)


def plan_auto_map(config: transformers.PretrainedConfig, dtype: torch.dtype, family: FamilySpec,
                  estimate: MemoryEstimate) -> dict[str, str]:
    """The ``auto`` device map of a model: its units over the visible GPUs, then the CPU.

    The first GPU keeps room for the activations of ``estimate``. Raises
    :class:`~lensft.errors.InsufficientMemory` when the weights fit nowhere.
    """
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
    placement = Placement("auto", torch.device("cuda", 0), tuple(range(torch.cuda.device_count())))
    budgets = auto_budgets(available_memory(placement), reserve_first_gpu=estimate.activations)
    device_map = auto_device_map(skeleton, family.modules.layers, budgets)
    log.info("auto device map: %s", device_map)
    return device_map


def build_model(config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase,
                family: FamilySpec, provenance: Provenance, *, attn_implementation: str | None = None,
                device_map: Mapping[str, str] | None = None) -> ModelHandle:
    """Build a model from a config dict and on-disk-named tensors without touching the disk.

    Parameters *are* the given tensors (``load_state_dict(assign=True)``), in their dtype and on
    their device, so a sweep of grafts that reuse the same source tensors costs no copies; the
    caller casts and places them. Buffers follow the parameters' device. Tied heads are re-tied.
    With ``device_map`` (``auto``: tensors already on the devices it names) accelerate's hooks
    move activations between devices and bring CPU-offloaded layers to the first GPU.

    Raises:
        CheckpointError: listing missing and unexpected tensors, as safetensors' ``load_model`` does.
    """
    from transformers.initialization import no_init_weights

    cfg_dict = dict(config)
    model_type = cfg_dict.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **cfg_dict)
    first = next(iter(tensors.values()))
    floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
    kw: dict[str, Any] = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with no_init_weights(), (torch.device("meta") if first.device.type == "meta" else contextlib.nullcontext()):
        model = AutoModelForCausalLM.from_config(cfg, dtype=floats[0] if floats else None, **kw)
    state = {family.runtime_name(k): v for k, v in tensors.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    tied = {family.runtime_name(t.name) for t in family.tensors if t.tied_to}
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"tensors do not fit {type(model).__name__}: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {result.unexpected_keys[:3]}{'...' if len(result.unexpected_keys) > 3 else ''}"
        )
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    elif any(k in tied for k in result.missing_keys):
        raise CheckpointError(f"the lm head is missing and the config does not tie embeddings ({model_type})")
    dispatched = bool(device_map) and len(set(device_map.values())) > 1  # type: ignore[union-attr]
    if dispatched:
        _dispatch(model, device_map)  # type: ignore[arg-type]
    elif first.device.type not in ("cpu", "meta"):
        model.to(first.device)  # buffers; parameters are already there and keep their storage
    if first.device.type != "meta" and not dispatched:  # offloaded layers are meta by design
        _check_no_meta(model)
    model.eval()
    return ModelHandle(model, tokenizer, family, provenance)


def _dispatch(model: nn.Module, device_map: Mapping[str, str]) -> None:
    from accelerate import dispatch_model

    from lensft.devices.placement import accelerate_map

    gpus = [d for d in device_map.values() if d.startswith("cuda:")]
    main = torch.device(gpus[0]) if gpus else torch.device("cpu")
    dispatch_model(model, accelerate_map(device_map), main_device=main)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_no_meta(model: nn.Module) -> None:
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.device.type == "meta":
            raise CheckpointError(f"parameter {name} was not loaded")
