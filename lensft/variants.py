"""Names of the checkpoints in a triple, of the SFT arms, and of the tensor roles a graft moves."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Variant(str, Enum):
    """One checkpoint of a base / short-SFT / long-SFT triple."""

    BASE = "base"
    SHORT = "short"
    LONG = "long"

    def __str__(self) -> str:  # "short", not "Variant.SHORT", in messages and tables
        return self.value


class Role(str, Enum):
    """The block a tensor belongs to.

    ``mha`` covers every attention projection (q/k/v/o, fused qkv, their biases, q/k norms);
    ``ffn`` every feed-forward projection (gate/up/down, fc/proj). Norms are kept apart
    (``attn_norm``, ``ffn_norm``) so a graft policy can decide whether they travel with
    their block or stay with the host.
    """

    MHA = "mha"
    FFN = "ffn"
    ATTN_NORM = "attn_norm"
    FFN_NORM = "ffn_norm"
    EMBED = "embed"
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"

    def __str__(self) -> str:
        return self.value

    @property
    def per_layer(self) -> bool:
        """True for roles that exist once per transformer layer."""
        return self in (Role.MHA, Role.FFN, Role.ATTN_NORM, Role.FFN_NORM)

    @property
    def block(self) -> "Role | None":
        """The block (``mha`` or ``ffn``) a norm role belongs to; the block itself for blocks."""
        return {
            Role.MHA: Role.MHA,
            Role.ATTN_NORM: Role.MHA,
            Role.FFN: Role.FFN,
            Role.FFN_NORM: Role.FFN,
        }.get(self)


class ArmRef(BaseModel):
    """One SFT arm: its share of long-context SFT data and its SFT seed.

    ``long_fraction`` 0 is the short arm, 1 the long arm, anything between a *mix* (organism
    only). ``sft_seed`` tells apart repeated SFT runs from one base (data draw and order).
    Arms are compared by these fields, never by parsing a name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    long_fraction: float = Field(ge=0.0, le=1.0, description="share of long-context SFT data (0 short, 1 long)")
    sft_seed: int = Field(0, ge=0, description="seed of the SFT data draw and order")

    @property
    def is_mix(self) -> bool:
        """True for an arm strictly between the short and the long arm."""
        return 0.0 < self.long_fraction < 1.0

    @property
    def variant(self) -> Variant | None:
        """``short`` / ``long`` for the pure arms, None for a mix."""
        return {0.0: Variant.SHORT, 1.0: Variant.LONG}.get(self.long_fraction)

    @property
    def slug(self) -> str:
        """A file-name-safe name: ``short``, ``long``, ``mix-0.50``; ``-sft2`` appended for seed 2."""
        v = self.variant
        core = v.value if v is not None else f"mix-{self.long_fraction:.2f}"
        return core if self.sft_seed == 0 else f"{core}-sft{self.sft_seed}"

    @property
    def label(self) -> str:
        """Display name: ``short``, ``long``, ``mix 0.50`` (``, sft seed 2`` when not 0)."""
        v = self.variant
        core = v.value if v is not None else f"mix {self.long_fraction:.2f}"
        return core if self.sft_seed == 0 else f"{core}, sft seed {self.sft_seed}"
