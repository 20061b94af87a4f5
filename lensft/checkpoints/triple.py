"""Checkpoint triples: base (optional), short-SFT and long-SFT checkpoints opened together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional

import torch

from lensft.checkpoints.reader import CheckpointReader, TensorMeta
from lensft.errors import CheckpointError
from lensft.families import FamilySpec
from lensft.variants import Variant

log = logging.getLogger(__name__)


@dataclass
class CheckpointTriple:
    """Lazily opened checkpoints by variant (``base`` may be absent).

    Tensor data is read only on demand. :meth:`tensor` reads one tensor, converted to a dtype
    and placed on a device, and caches it per ``(variant, dtype, device)``, so a sweep of
    in-memory grafts reads each source tensor once and grafts share the storage of every tensor
    they take whole; :meth:`tensors` is the whole checkpoint through the same cache.
    """

    readers: dict[Variant, CheckpointReader]
    _loaded: dict[tuple[Variant, Optional[torch.dtype], str], dict[str, torch.Tensor]] = field(
        default_factory=dict, repr=False)

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

    def tensor(self, v: Variant | str, name: str, *, dtype: Optional[torch.dtype] = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """One tensor of checkpoint ``v``, float tensors cast to ``dtype`` (None: as stored), on
        ``device``; read once, then cached. On ``meta`` nothing is read."""
        v = Variant(v)
        dev = torch.device(device)
        cache = self._loaded.setdefault((v, dtype, str(dev)), {})
        t = cache.get(name)
        if t is None:
            t = self._read(v, name, dtype, dev)
            cache[name] = t
        return t

    def is_cached(self, v: Variant | str, name: str, *, dtype: Optional[torch.dtype] = None,
                  device: torch.device | str = "cpu") -> bool:
        """Whether :meth:`tensor` would return a tensor already in memory."""
        return name in self._loaded.get((Variant(v), dtype, str(torch.device(device))), {})

    def _read(self, v: Variant, name: str, dtype: Optional[torch.dtype], dev: torch.device) -> torch.Tensor:
        reader = self[v]
        if dev.type == "meta":
            meta = reader.tensors[name]
            keep = dtype is None or not meta.dtype.is_floating_point
            return torch.empty(meta.shape, dtype=meta.dtype if keep else dtype, device=dev)
        t = reader.get(name)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        return t.to(dev)

    def tensors(self, v: Variant | str) -> dict[str, torch.Tensor]:
        """The full state dict of one checkpoint, as stored, on the CPU (through the cache)."""
        v = Variant(v)
        if any(n not in self._loaded.get((v, None, "cpu"), {}) for n in self[v].tensors):
            log.info("loading %s tensors from %s", v, self[v].path)
        return {n: self.tensor(v, n) for n in self[v].tensors}

    def release(self) -> None:
        """Drop cached state dicts and file handles."""
        self._loaded.clear()
        for r in self.readers.values():
            r.close()
