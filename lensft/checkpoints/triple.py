"""Checkpoint triples: base (optional), short-SFT and long-SFT checkpoints opened together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import torch

from lensft.checkpoints.reader import CheckpointReader, TensorMeta
from lensft.errors import CheckpointError
from lensft.families import FamilySpec
from lensft.variants import Variant

log = logging.getLogger(__name__)



@dataclass
class CheckpointTriple:
    """Lazily opened checkpoints by variant (``base`` may be absent).

    Tensor data is read only on demand; :meth:`tensors` loads (and caches) one checkpoint's
    state dict for in-memory grafting, so a sweep of grafts reads each source once.
    """

    readers: dict[Variant, CheckpointReader]
    _loaded: dict[Variant, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __getitem__(self, v: Variant | str) -> CheckpointReader:
        v = Variant(v)
        if v not in self.readers:
            raise CheckpointError(f"no {v} checkpoint was given; give its directory", field=str(v))
        return self.readers[v]

    def __contains__(self, v: object) -> bool:
        try:
            return Variant(v) in self.readers  # type: ignore[arg-type]
        except ValueError:
            return False

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.readers)

    @property
    def variants(self) -> list[Variant]:
        return [v for v in Variant if v in self.readers]

    @property
    def reference(self) -> CheckpointReader:
        """The checkpoint other checkpoints are compared against: base if given, else short."""
        return self.readers.get(Variant.BASE) or self.readers[self.variants[0]]

    @property
    def family(self) -> FamilySpec:
        return self.reference.family

    @property
    def n_layers(self) -> int:
        return self.reference.n_layers

    def metadata(self) -> dict[Variant, Mapping[str, TensorMeta]]:
        return {v: r.tensors for v, r in self.readers.items()}

    def tensors(self, v: Variant | str) -> dict[str, torch.Tensor]:
        """The full state dict of one checkpoint (loaded once, then cached)."""
        v = Variant(v)
        if v not in self._loaded:
            log.info("loading %s tensors from %s", v, self[v].path)
            self._loaded[v] = self[v].state_dict()
        return self._loaded[v]

    def release(self) -> None:
        """Drop cached state dicts and file handles."""
        self._loaded.clear()
        for r in self.readers.values():
            r.close()
