"""The graft engine: specs, plans, pure tensor grafting and in-memory grafted models."""

from __future__ import annotations

from typing import Any

from lensft.graft.plan import GraftPlan, PlanEntry, apply_graft, graft_tensor, plan_graft
from lensft.graft.spec import GraftSpec, LayerRange

__all__ = ["GraftPlan", "GraftSpec", "LayerRange", "PlanEntry", "apply_graft", "graft_model", "graft_tensor",
           "plan_graft", "variant_model"]


def __getattr__(name: str) -> Any:
    # graft_model/variant_model need transformers; import them only when asked for, so the
    # streaming `lensft swap` path starts without loading transformers.
    if name in ("graft_model", "variant_model"):
        from lensft.graft import build

        return getattr(build, name)
    raise AttributeError(f"module 'lensft.graft' has no attribute {name!r}")
