"""Graft specifications: which checkpoint gives each block, over which layers, how strongly."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lensft.errors import GraftError
from lensft.variants import Role, Variant


class LayerRange(BaseModel):
    """Layers ``start .. stop-1`` (Python slice semantics, ``stop`` exclusive)."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0)
    stop: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "LayerRange":
        if self.stop <= self.start:
            raise ValueError(f"layer range {self.start}:{self.stop} is empty; use a:b with a < b")
        return self

    @classmethod
    def parse(cls, text: str) -> "LayerRange":
        """Parse ``"a:b"`` (``":b"`` means from 0; ``"a"`` alone means one layer)."""
        try:
            if ":" in text:
                a, b = text.split(":", 1)
                return cls(start=int(a) if a.strip() else 0, stop=int(b))
            i = int(text)
            return cls(start=i, stop=i + 1)
        except (ValueError, TypeError) as e:
            msg = str(e).splitlines()[-1] if "empty" in str(e) else "use a:b, e.g. 8:24 for layers 8..23"
            raise GraftError(f"bad layer range {text!r}: {msg}", field="layers") from None

    def __contains__(self, layer: object) -> bool:
        return isinstance(layer, int) and self.start <= layer < self.stop

    def __str__(self) -> str:
        return f"{self.start}:{self.stop}"


class GraftSpec(BaseModel):
    """Which checkpoint supplies each role of a grafted model.

    The paper's policy is the default: the MHA block (q/k/v/o) comes from ``mha``, the FFN block
    (gate/up/down) from ``ffn``, and everything else (embeddings, norms, final norm, lm head) from
    ``host``. ``norms="module"`` moves each block's own norms with it instead. ``layers`` limits
    the ``mha``/``ffn`` sources to a layer band (the host's blocks elsewhere). ``alpha``
    interpolates: a grafted tensor is ``(1 - alpha) * host + alpha * source``, so ``alpha=1``
    takes the source whole and ``alpha=0`` keeps the host. ``overrides`` sets the source of any
    role explicitly (e.g. ``{"embed": "base"}``) and wins over everything else.
    """

    model_config = ConfigDict(frozen=True)

    host: Variant
    mha: Variant
    ffn: Variant
    norms: Literal["host", "module"] = "host"
    layers: Optional[LayerRange] = None
    alpha: float = Field(1.0, ge=0.0, le=1.0)
    overrides: dict[Role, Variant] = Field(default_factory=dict)

    @field_validator("alpha")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v:  # NaN
            raise ValueError("alpha must be a number in [0, 1]")
        return v

    @classmethod
    def build(cls, *, mha: str, ffn: str, host: str | None = None, norms: str = "host",
              layers: str | LayerRange | None = None, alpha: float = 1.0,
              overrides: dict[str, str] | None = None) -> "GraftSpec":
        """Build a spec from plain strings, with one-line errors for bad names.

        ``host`` defaults to the FFN's source, so ``mha=long, ffn=short`` is the paper's
        "short model with the long model's MHA".
        """
        def variant(what: str, v: str, field: str) -> Variant:
            try:
                return Variant(v)
            except ValueError:
                raise GraftError(f"the {what} source must be one of base, short, long (got {v!r})", field=field) from None

        if norms not in ("host", "module"):
            raise GraftError(f"the norm policy must be 'host' or 'module' (got {norms!r})", field="norms")
        if not (0.0 <= alpha <= 1.0) or alpha != alpha:
            raise GraftError(f"the interpolation weight alpha must be in [0, 1] (got {alpha})", field="alpha")
        rng = LayerRange.parse(layers) if isinstance(layers, str) else layers
        ov: dict[Role, Variant] = {}
        for k, v in (overrides or {}).items():
            try:
                role = Role(k)
            except ValueError:
                raise GraftError(f"unknown role {k!r}; roles are {', '.join(r.value for r in Role)}",
                                 field="role") from None
            ov[role] = variant(f"{k} role's", v, "role")
        m, f = variant("mha", mha, "mha"), variant("ffn", ffn, "ffn")
        h = variant("host", host, "host") if host else f
        return cls(host=h, mha=m, ffn=f, norms=norms, layers=rng, alpha=alpha, overrides=ov)  # type: ignore[arg-type]

    def source_for(self, role: Role, layer: int | None) -> Variant:
        """The checkpoint that supplies ``role`` at ``layer`` (None for global tensors)."""
        if role in self.overrides:
            return self.overrides[role]
        if role.per_layer and self.layers is not None and layer is not None and layer not in self.layers:
            return self.host
        if role is Role.MHA:
            return self.mha
        if role is Role.FFN:
            return self.ffn
        if role is Role.ATTN_NORM and self.norms == "module":
            return self.mha
        if role is Role.FFN_NORM and self.norms == "module":
            return self.ffn
        return self.host

    def variants(self) -> set[Variant]:
        """Every checkpoint this spec reads."""
        return {self.host, self.mha, self.ffn, *self.overrides.values()}

    @property
    def label(self) -> str:
        """Display name ``host + donor.block``: ``short + long.mha``, ``short + long.mha[8:24]@0.5``."""
        parts = [str(self.host)]
        for block, src in (("mha", self.mha), ("ffn", self.ffn)):
            if src != self.host:
                parts.append(f"{src}.{block}")
        for role, src in sorted(self.overrides.items()):
            if src != self.host:
                parts.append(f"{src}.{role}")
        label = " + ".join(parts)
        if self.layers is not None and len(parts) > 1:
            label += f"[{self.layers}]"
        if self.alpha != 1.0 and len(parts) > 1:
            label += f"@{self.alpha:g}"
        if self.norms == "module" and len(parts) > 1:
            label += "(norms moved)"
        return label
