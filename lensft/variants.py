"""Names of the checkpoints in a triple and of the tensor roles a graft moves."""

from __future__ import annotations

from enum import Enum


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
