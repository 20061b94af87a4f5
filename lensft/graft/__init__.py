"""The graft engine: specs, plans, pure tensor grafting and in-memory grafted models."""

from lensft.graft.build import graft_model, variant_model

from lensft.graft.plan import GraftPlan, PlanEntry, apply_graft, graft_tensor, plan_graft
from lensft.graft.spec import GraftSpec, LayerRange

__all__ = ["GraftPlan", "GraftSpec", "LayerRange", "PlanEntry", "apply_graft", "graft_model", "variant_model", "graft_tensor", "plan_graft"]
