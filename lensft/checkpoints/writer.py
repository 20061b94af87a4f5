"""Writing grafted checkpoints: streamed tensor by tensor into safetensors, atomically.

The output directory is assembled in a hidden temporary sibling and renamed into place only
when every shard, the config, the tokenizer files and ``lensft_manifest.json`` are complete, so
an interrupted or failed write leaves no output. Source files are only ever opened for reading.

Memory: the safetensors header is computed from the plan's metadata before any data is read, then
each tensor is read, grafted, written and dropped, so peak memory is a few times the largest
single tensor, whatever the model size.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from lensft import __version__
from lensft.checkpoints.reader import TORCH_TO_SAFETENSORS, TensorMeta
from lensft.checkpoints.triple import CheckpointTriple
from lensft.errors import GraftError, OutputExists
from lensft.graft.plan import GraftPlan, graft_tensor

log = logging.getLogger(__name__)

MANIFEST_NAME = "lensft_manifest.json"
Progress = Callable[[int, int], None]


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
class WriteResult:
    """What :func:`write_graft` wrote."""

    path: Path
    n_tensors: int
    n_bytes: int
    shards: list[str]
    manifest: dict


def _hash_files(paths: Iterable[Path], out: dict[str, str]) -> None:
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        out[str(p)] = h.hexdigest()


def _output_shard_names(plan: GraftPlan, triple: CheckpointTriple) -> dict[str, str]:
    """Map each tensor to an output shard, following the host's sharding."""
    host = triple[plan.spec.host]
    shards = host.shards
    if len(shards) == 1:
        return {e.name: "model.safetensors" for e in plan}
    if host.format == "safetensors":
        rename = {s: s for s in shards}
    else:
        rename = {s: f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i, s in enumerate(shards)}
    return {e.name: rename[host.shard_of(e.name)] for e in plan}


def _check_output_path(out: Path, triple: CheckpointTriple, force: bool) -> None:
    out_r = out.resolve()
    for v, r in triple.readers.items():
        src = r.path.resolve()
        if out_r == src or src.is_relative_to(out_r) or out_r.is_relative_to(src):
            raise GraftError(f"output {out} overlaps the {v} checkpoint {r.path}; choose another --out")
    if out.exists() and not force:
        raise OutputExists(f"output {out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise GraftError(f"output {out} exists and is not a directory")
    if not out_r.parent.exists():
        raise GraftError(f"the parent directory of --out ({out_r.parent}) does not exist")


def write_graft(plan: GraftPlan, triple: CheckpointTriple, out: str | os.PathLike[str], *, force: bool = False,
                hash_sources: bool = True, progress: Optional[Progress] = None) -> WriteResult:
    """Stream a graft to ``out`` as a checkpoint that ``transformers`` loads.

    Writes the grafted tensors (sharded like the host), the host's ``config.json`` and tokenizer
    files, and ``lensft_manifest.json`` (spec, per-tensor source, lensft version, sha256 of every
    source weight file). Source files are hashed on a background thread while tensors stream.

    Args:
        plan: from :func:`lensft.graft.plan_graft`.
        triple: the opened source checkpoints.
        out: output directory; must not exist unless ``force``.
        force: replace an existing output directory (only after the new one is complete).
        hash_sources: record sha256 of the source weight files in the manifest.
        progress: called as ``progress(bytes_written, total_bytes)``.
    """
    out = Path(out)
    _check_output_path(out, triple, force)
    host = triple[plan.spec.host]
    used = sorted({plan.spec.host} | {e.source for e in plan if e.grafted}, key=lambda v: v.value)

    hashes: dict[str, str] = {}
    hasher = None
    if hash_sources:
        files = [p for v in used for p in triple[v].weight_files()]
        hasher = threading.Thread(target=_hash_files, args=(files, hashes), daemon=True)
        hasher.start()

    shard_of = _output_shard_names(plan, triple)
    shard_names = list(dict.fromkeys(shard_of.values()))
    total = sum(e.meta.nbytes for e in plan)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.lensft-tmp-", dir=out.resolve().parent))
    writer: SafetensorsStreamWriter | None = None
    try:
        done = 0
        for shard in shard_names:
            entries = [e for e in plan if shard_of[e.name] == shard]
            writer = SafetensorsStreamWriter(tmp / shard, [e.meta for e in entries], {"format": "pt"})
            for e in entries:
                t = graft_tensor(e, lambda v, n: triple[v].get(n))
                writer.write(e.name, t)
                done += e.meta.nbytes
                del t
                if progress:
                    progress(done, total)
            writer.close()
            writer = None
        if len(shard_names) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": {e.name: shard_of[e.name] for e in plan}}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        shutil.copy2(host.path / "config.json", tmp / "config.json")
        for f in host.tokenizer_files():
            shutil.copy2(f, tmp / f.name)
        if hasher is not None:
            hasher.join()
        manifest = {
            "lensft_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "family": plan.family.name,
            "spec": json.loads(plan.spec.model_dump_json()),
            "label": plan.spec.label,
            "sources": {v.value: str(triple[v].path.resolve()) for v in triple.variants},
            "source_file_sha256": hashes,
            "tensors": plan.sources_by_tensor(),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
        _install(tmp, out, force)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote graft %s to %s (%d tensors, %.1f MB)", plan.spec.label, out, len(plan), total / 1e6)
    return WriteResult(out, len(plan), total, shard_names, manifest)


def _install(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished directory into place; an existing output is replaced only with ``force``."""
    if out.exists():
        if not force:
            raise OutputExists(f"output {out} appeared while writing; nothing was changed")
        old = out.with_name(f".{out.name}.lensft-old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
