"""Graft plans: a pure mapping from every host tensor to the checkpoint(s) that supply it.

``plan_graft`` checks name, shape and dtype of every tensor it takes from a donor (as nanoGPT's
``from_pretrained`` does) and says which tensor and which values disagree. ``graft_tensor`` and
``apply_graft`` turn a plan into tensors; they never touch the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional

import torch

from lensft.checkpoints.reader import TensorMeta
from lensft.errors import IncompatibleCheckpoints
from lensft.families import FamilySpec
from lensft.graft.spec import GraftSpec
from lensft.variants import Role, Variant


@dataclass(frozen=True)
class PlanEntry:
    """How to make one tensor of the grafted model."""

    name: str
    role: Role
    layer: Optional[int]
    source: Variant
    host: Variant
    alpha: float
    meta: TensorMeta

    @property
    def grafted(self) -> bool:
        """True when any part of this tensor comes from a checkpoint other than the host."""
        return self.source != self.host and self.alpha > 0.0

    @property
    def blended(self) -> bool:
        return self.grafted and self.alpha < 1.0


@dataclass(frozen=True)
class GraftPlan:
    """An ordered list of :class:`PlanEntry`, one per tensor of the host checkpoint."""

    spec: GraftSpec
    family: FamilySpec
    entries: tuple[PlanEntry, ...]

    def __iter__(self) -> Iterator[PlanEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def sources_by_tensor(self) -> dict[str, dict[str, object]]:
        """``{name: {"role", "layer", "source", "alpha"}}`` for the manifest."""
        return {
            e.name: {
                "role": e.role.value,
                "layer": e.layer,
                "source": (e.source if e.grafted else e.host).value,
                "host": e.host.value,
                "alpha": e.alpha if e.blended else 1.0,
            }
            for e in self.entries
        }


def plan_graft(spec: GraftSpec, family: FamilySpec, n_layers: int,
               tensors: Mapping[Variant, Mapping[str, TensorMeta]]) -> GraftPlan:
    """Decide, for every tensor of the host, which checkpoint supplies it.

    Args:
        spec: the graft specification.
        family: the (shared) family map.
        n_layers: number of transformer layers.
        tensors: per checkpoint, the metadata of its stored tensors.

    Raises:
        GraftError / IncompatibleCheckpoints: a needed checkpoint is absent, a layer range is out of
        bounds, or a donor tensor is missing or differs in shape or dtype.
    """
    from lensft.errors import GraftError

    for v in spec.variants():
        if v not in tensors:
            raise GraftError(f"the graft needs the {v} checkpoint, but none was given", field=str(v))
    if spec.layers is not None and spec.layers.stop > n_layers:
        raise GraftError(f"layer range {spec.layers} is out of bounds: the model has {n_layers} layers (0:{n_layers})",
                         field="layers")

    host = tensors[spec.host]
    entries: list[PlanEntry] = []
    for name, meta in host.items():
        info = family.classify(name)
        if info is None:
            raise IncompatibleCheckpoints(f"host tensor {name!r} is not in the {family.name} family map")
        source = spec.source_for(info.role, info.layer)
        if source != spec.host:
            donor = tensors[source].get(name)
            if donor is None:
                raise IncompatibleCheckpoints(f"{source} checkpoint has no tensor {name!r} (the {spec.host} host has it)")
            if donor.shape != meta.shape:
                raise IncompatibleCheckpoints(
                    f"tensor {name!r} has shape {list(donor.shape)} in {source} but {list(meta.shape)} in {spec.host}")
            if donor.dtype != meta.dtype:
                raise IncompatibleCheckpoints(
                    f"tensor {name!r} is {donor.dtype} in {source} but {meta.dtype} in {spec.host}; "
                    "convert both checkpoints to one dtype first")
        entries.append(PlanEntry(name, info.role, info.layer, source, spec.host, spec.alpha, meta))
    return GraftPlan(spec, family, tuple(entries))


Fetch = Callable[[Variant, str], torch.Tensor]


def graft_tensor(entry: PlanEntry, fetch: Fetch) -> torch.Tensor:
    """Make one grafted tensor. ``alpha=1`` returns the donor's tensor itself (bit for bit);
    a blend is computed in float32 (float64 for float64 tensors) and cast back."""
    if not entry.grafted:
        return fetch(entry.host, entry.name)
    src = fetch(entry.source, entry.name)
    if not entry.blended:
        return src
    host = fetch(entry.host, entry.name)
    if not src.is_floating_point():
        raise IncompatibleCheckpoints(f"cannot interpolate non-float tensor {entry.name!r} ({src.dtype}); use alpha 0 or 1")
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    out = torch.lerp(host.to(work), src.to(work), entry.alpha)
    return out.to(src.dtype)


def apply_graft(plan: GraftPlan, tensors: Mapping[Variant, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Every tensor of the grafted model, from in-memory source state dicts (pure)."""
    return {e.name: graft_tensor(e, lambda v, n: tensors[v][n]) for e in plan}
