"""The schema of a family file: tensor-name templates with roles, and module paths.

A family file (``lensft/families/data/<name>.json``) is the only place lensft keeps
architecture knowledge. Each tensor template names one on-disk tensor; ``{layer}``
stands for the layer index. Code never matches tensor names by substring: it expands
these templates and looks names up exactly.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from lensft.variants import Role

_LAYER = "{layer}"


class TensorTemplate(BaseModel):
    """One tensor of the family, as it is named on disk."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="on-disk name; '{layer}' stands for the layer index")
    role: Role
    optional: bool = Field(False, description="may be absent (biases, legacy buffers, tied heads)")
    tied_to: Optional[str] = Field(None, description="tensor this one equals when embeddings are tied")
    note: Optional[str] = None

    @property
    def per_layer(self) -> bool:
        return _LAYER in self.name

    def expand(self, n_layers: int) -> list[str]:
        """The concrete names: one per layer for per-layer tensors, else the name itself."""
        if not self.per_layer:
            return [self.name]
        return [self.name.replace(_LAYER, str(i)) for i in range(n_layers)]


class ModulePaths(BaseModel):
    """Dotted module paths inside the HF model, for probes and patching.

    ``attention``, ``mlp``, ``mlp_activation``, ``mlp_down`` and ``mlp_up`` are relative to one
    layer module; the others are relative to the model.
    """

    model_config = ConfigDict(frozen=True)

    layers: str
    attention: str
    mlp: str
    mlp_activation: str = Field(description="module whose output is act(W_in x) (act(gate) for gated MLPs)")
    mlp_down: str = Field(description="output projection; its input is the full hidden activation")
    mlp_up: Optional[str] = Field(None, description="up projection of gated MLPs")
    embed: str
    final_norm: str
    lm_head: str


class TensorInfo(BaseModel):
    """A concrete tensor name resolved against a family: its role and layer (None if global)."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    layer: Optional[int]
    template: str
    optional: bool = False


class ConfigSource(BaseModel):
    """One way to compute a TransformerLens config field from a Hugging Face config.

    The base value is ``hf`` (a dotted path into the HF config: attributes, then dict keys; a
    missing step reads as null) or ``tl`` (a field resolved earlier in the same map). It is then
    multiplied by ``factor`` and by the field ``times``, divided by the field ``divide_by``; any
    arithmetic result is rounded to the nearest integer (TransformerLens's convention for
    ``rotary_dim``). A plain string in a family file is shorthand for ``{"hf": <string>}``.
    """

    model_config = ConfigDict(frozen=True)

    hf: Optional[str] = None
    tl: Optional[str] = None
    factor: float = 1.0
    times: Optional[str] = None
    divide_by: Optional[str] = None


class HookedTransformerMap(BaseModel):
    """How to build TransformerLens's ``HookedTransformer`` for a family from an in-memory model.

    ``config`` maps each ``HookedTransformerConfig`` field to the sources tried in order (the
    first non-null wins; fields are resolved in file order, so later sources may use earlier
    fields); ``constants`` are fixed fields. ``weights`` names the converter function in
    ``transformer_lens.pretrained.weight_conversions`` that turns the HF model's modules into
    TransformerLens's weight layout. ``requires`` lists HF config values the map is faithful
    for (path -> allowed values, null meaning absent); a checkpoint outside them (a sliding
    window, scaled RoPE, biases the converter drops) opens through ``TransformerBridge`` instead.
    """

    model_config = ConfigDict(frozen=True)

    architecture: str = Field(description="TransformerLens's original_architecture name")
    weights: str = Field(description="converter function in transformer_lens.pretrained.weight_conversions")
    config: dict[str, list[Union[str, ConfigSource]]]
    constants: dict[str, Any] = Field(default_factory=dict)
    requires: dict[str, list[Any]] = Field(default_factory=dict)


class TransformerLensMap(BaseModel):
    """Which TransformerLens model a family opens as (see :mod:`lensft.views`)."""

    model_config = ConfigDict(frozen=True)

    hooked: Optional[HookedTransformerMap] = Field(
        None, description="HookedTransformer map; null when TransformerLens's HookedTransformer cannot build the family")
    bridge: bool = Field(True, description="TransformerBridge wraps this family's HF modules")
    note: str = ""


class FamilySpec(BaseModel):
    """Everything lensft knows about one architecture family."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    model_types: list[str]
    architectures: list[str]
    tensors: list[TensorTemplate]
    modules: ModulePaths
    mlp_kind: str = Field(description="'gated' (act(gate)*up) or 'plain' (act(fc))")
    parallel_attn_mlp: bool = False
    config_fields: list[str] = Field(description="config fields that must agree for checkpoints to be compatible")
    runtime_names: dict[str, str] = Field(
        default_factory=dict,
        description="on-disk name -> name in the instantiated transformers model, where they differ",
    )
    transformer_lens: Optional[TransformerLensMap] = Field(
        None, description="how lensft opens the family in TransformerLens; null: not supported")

    @cached_property
    def _patterns(self) -> list[tuple[re.Pattern[str], TensorTemplate]]:
        out = []
        for t in self.tensors:
            rx = re.escape(t.name).replace(re.escape(_LAYER), r"(\d+)")
            out.append((re.compile(rf"^{rx}$"), t))
        return out

    def classify(self, name: str) -> TensorInfo | None:
        """Resolve a concrete tensor name to its template, role and layer; None if no template matches."""
        for rx, t in self._patterns:
            m = rx.match(name)
            if m:
                layer = int(m.group(1)) if t.per_layer else None
                return TensorInfo(name=name, role=t.role, layer=layer, template=t.name, optional=t.optional)
        return None

    def expected_names(self, n_layers: int, *, include_optional: bool = False) -> list[str]:
        """Every concrete tensor name a checkpoint with ``n_layers`` layers must hold."""
        names: list[str] = []
        for t in self.tensors:
            if t.optional and not include_optional:
                continue
            names.extend(t.expand(n_layers))
        return names

    def runtime_name(self, disk_name: str) -> str:
        """The parameter name in the instantiated model for an on-disk tensor name."""
        return self.runtime_names.get(disk_name, disk_name)
