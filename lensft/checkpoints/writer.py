"""Writing checkpoints: streamed tensor by tensor into safetensors, atomically.

:func:`write_checkpoint` assembles an output directory in a hidden temporary sibling and renames
it into place only when every shard, the copied files (config, tokenizer) and the JSON sidecars
are complete, so an interrupted or failed write leaves no output. What to write comes from the
caller (:func:`lensft.graft.export.write_graft` for grafts); this module knows nothing of grafts.

Memory: each safetensors header is computed from tensor metadata before any data is read, then
each tensor is produced, written and dropped, so peak memory is a few times the largest single
tensor, whatever the model size.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from lensft.atomic import staging_dir, write_json_atomic
from lensft.checkpoints.reader import TORCH_TO_SAFETENSORS, TensorMeta
from lensft.errors import GraftError, OutputExists

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
#: produce(name) -> the tensor to write under ``name``
Produce = Callable[[str], torch.Tensor]


class SafetensorsStreamWriter:
    """Write a safetensors file one tensor at a time, in a fixed order known up front."""

    def __init__(self, path: Path, metas: list[TensorMeta], metadata: dict[str, str] | None = None) -> None:
        self.path = path
        self.metas = metas
        header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for m in metas:
            header[m.name] = {
                "dtype": TORCH_TO_SAFETENSORS[m.dtype],
                "shape": list(m.shape),
                "data_offsets": [offset, offset + m.nbytes],
            }
            offset += m.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # pad so tensor data starts 8-byte aligned
        self._fh = open(path, "wb")
        self._fh.write(struct.pack("<Q", len(raw)))
        self._fh.write(raw)
        self._next = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        m = self.metas[self._next]
        if name != m.name:
            raise RuntimeError(f"tensor {name!r} written out of order (expected {m.name!r})")
        if tuple(tensor.shape) != m.shape or tensor.dtype != m.dtype:
            raise RuntimeError(f"tensor {name!r} is {tuple(tensor.shape)} {tensor.dtype}, planned {m.shape} {m.dtype}")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._fh.write(memoryview(data.numpy()))
        self._next += 1

    def close(self) -> None:
        if self._next != len(self.metas):
            self._fh.close()
            raise RuntimeError(f"{self.path}: wrote {self._next} of {len(self.metas)} tensors")
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()


@dataclass
class Shard:
    """One output safetensors file: its name and the tensors it holds, in write order."""

    name: str
    metas: list[TensorMeta]


@dataclass
class WrittenCheckpoint:
    """What :func:`write_checkpoint` wrote."""

    path: Path
    n_tensors: int
    n_bytes: int
    shards: list[str]
    sidecars: dict[str, Any] = field(default_factory=dict)


def check_output_path(out: Path, inputs: dict[str, Path], force: bool) -> None:
    """Refuse an output that overlaps an input directory, exists (without ``force``), is not a
    directory, or has no parent. ``inputs`` maps a name used in messages to an input directory."""
    out_r = out.resolve()
    for name, path in inputs.items():
        src = path.resolve()
        if out_r == src or src.is_relative_to(out_r) or out_r.is_relative_to(src):
            raise GraftError(f"output {out} overlaps the {name} checkpoint {path}; choose another output directory")
    if out.exists() and not force:
        raise OutputExists(f"output {out} already exists; choose another output directory or replace it (force)")
    if out.exists() and not out.is_dir():
        raise GraftError(f"output {out} exists and is not a directory")
    if not out_r.parent.exists():
        raise GraftError(f"the parent directory of the output ({out_r.parent}) does not exist")


def write_checkpoint(out: str | os.PathLike[str], shards: Sequence[Shard], produce: Produce, *,
                     copy_files: Sequence[Path] = (), sidecars: Callable[[], dict[str, Any]] | None = None,
                     force: bool = False, progress: Optional[Progress] = None) -> WrittenCheckpoint:
    """Stream tensors into safetensors shards and install the directory atomically.

    Args:
        out: output directory (the caller has checked it with :func:`check_output_path`).
        shards: the files to write and the tensors of each, in order.
        produce: returns the tensor for a name (read, grafted ...); it must match its metadata.
        copy_files: files copied verbatim into the output (config, tokenizer files).
        sidecars: called once every tensor is written; returns ``{file name: JSON object}`` to
            write beside the shards (e.g. the graft manifest).
        force: replace an existing ``out`` (only once the new directory is complete).
        progress: called as ``progress(bytes_written, total_bytes)``.
    """
    out = Path(out)
    total = sum(m.nbytes for s in shards for m in s.metas)
    tmp = staging_dir(out)
    writer: SafetensorsStreamWriter | None = None
    try:
        done = 0
        for shard in shards:
            writer = SafetensorsStreamWriter(tmp / shard.name, shard.metas, {"format": "pt"})
            for m in shard.metas:
                t = produce(m.name)
                writer.write(m.name, t)
                done += m.nbytes
                del t
                if progress:
                    progress(done, total)
            writer.close()
            writer = None
        if len(shards) > 1:
            index = {"metadata": {"total_size": total},
                     "weight_map": {m.name: s.name for s in shards for m in s.metas}}
            write_json_atomic(tmp / "model.safetensors.index.json", index, indent=2)
        for f in copy_files:
            shutil.copy2(f, tmp / f.name)
        extra = sidecars() if sidecars is not None else {}
        for name, obj in extra.items():
            write_json_atomic(tmp / name, obj)
        install_dir(tmp, out, force)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = sum(len(s.metas) for s in shards)
    return WrittenCheckpoint(out, n, total, [s.name for s in shards], extra)


def install_dir(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished directory into place; an existing output is replaced only with ``force``.

    Files and folders get the usual permissions (0666 / 0777 less the umask), whatever the
    libraries that wrote them chose (safetensors and mkstemp leave 0600)."""
    _normalise_modes(tmp)
    if out.exists():
        if not force:
            raise OutputExists(f"output {out} appeared while writing; nothing was changed")
        old = out.with_name(f".{out.name}.lensft-old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _normalise_modes(root: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for p in root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
