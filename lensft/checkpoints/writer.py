"""Writing checkpoints: safetensors shards assembled from byte ranges and tensors, atomically.

:func:`write_checkpoint` assembles an output directory in a hidden temporary sibling and renames
it into place only when every shard, the copied files (config, tokenizer) and the JSON sidecars
are complete, so an interrupted or failed write leaves no output. What to write comes from the
caller (:func:`lensft.graft.export.write_graft` for grafts); this module knows nothing of grafts.

How: every shard's header is computed from tensor metadata first, so the place of every tensor
in the output is known before any data moves. A tensor is then either

- a :class:`ByteRange` of a source safetensors file, copied as bytes (bit-exact): each source
  file is read once, sequentially, on its own thread, and the same read feeds its sha256 when
  the caller asks for it (``hash_files``) -- no second pass over the sources. A file whose
  digest is already known for its current version (:func:`lensft.hashing.known_sha256`) is not
  hashed again; bytes that need no hashing move with ``copy_file_range`` inside the kernel; or
- produced by the caller (a blend, a tensor from a ``.bin`` file) on the main thread and
  written at its offset.

Memory: the read buffers (8 MiB per thread) and one produced tensor at a time, whatever the
model size.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from lensft.atomic import staging_dir, temp_prefix, write_json_atomic
from lensft.checkpoints.reader import TORCH_TO_SAFETENSORS, TensorMeta
from lensft.errors import GraftError, OutputExists
from lensft.faults import point
from lensft.hashing import file_version, known_sha256, remember_sha256, sha256_file

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
#: produce(name) -> the tensor to write under ``name``
Produce = Callable[[str], torch.Tensor]


@dataclass(frozen=True)
class ByteRange:
    """Where a tensor's bytes already lie: ``nbytes`` bytes at absolute ``offset`` of ``file``."""

    file: Path
    offset: int
    nbytes: int


#: locate(name) -> the bytes to copy for ``name``, or None to ``produce`` it
Locate = Callable[[str], Optional[ByteRange]]


def safetensors_header(metas: Sequence[TensorMeta], metadata: dict[str, str] | None = None) -> tuple[bytes, list[int]]:
    """The header of a safetensors file holding ``metas`` in this order, and each tensor's
    absolute byte offset in the file (data 8-byte aligned after the header)."""
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    rel = []
    for m in metas:
        header[m.name] = {"dtype": TORCH_TO_SAFETENSORS[m.dtype], "shape": list(m.shape),
                          "data_offsets": [offset, offset + m.nbytes]}
        rel.append(offset)
        offset += m.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad so tensor data starts 8-byte aligned
    start = 8 + len(raw)
    return struct.pack("<Q", len(raw)) + raw, [start + r for r in rel]


@dataclass
class Shard:
    """One output safetensors file: its name and the tensors it holds, in write order."""

    name: str
    metas: list[TensorMeta]


@dataclass
class WrittenCheckpoint:
    """What :func:`write_checkpoint` wrote (``sha256``: of each ``hash_files`` entry, by resolved path)."""

    path: Path
    n_tensors: int
    n_bytes: int
    shards: list[str]
    sidecars: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)


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
                     locate: Optional[Locate] = None, hash_files: Sequence[Path] = (),
                     copy_files: Sequence[Path] = (), sidecars: Callable[[], dict[str, Any]] | None = None,
                     force: bool = False, progress: Optional[Progress] = None,
                     hashes: Optional[dict[str, str]] = None) -> WrittenCheckpoint:
    """Write safetensors shards from byte ranges and produced tensors; install the directory atomically.

    Args:
        out: output directory (the caller has checked it with :func:`check_output_path`).
        shards: the files to write and the tensors of each, in order.
        produce: returns the tensor for a name that ``locate`` does not place; it must match its
            metadata.
        locate: returns where a tensor's bytes already are (copied verbatim), or None.
        hash_files: files whose sha256 to compute from the same sequential read (resolved paths).
        copy_files: files copied verbatim into the output (config, tokenizer files).
        sidecars: called once every tensor is written and every hash is known; returns
            ``{file name: JSON object}`` to write beside the shards (e.g. the graft manifest).
        force: replace an existing ``out`` (only once the new directory is complete).
        progress: called as ``progress(bytes_written, total_bytes)`` from the calling thread.
        hashes: filled with ``{resolved path: sha256}`` before ``sidecars`` runs.
    """
    out = Path(out)
    total = sum(m.nbytes for s in shards for m in s.metas)
    tmp = staging_dir(out)
    sums: dict[str, str] = {} if hashes is None else hashes
    fds: list[int] = []
    try:
        copies, produced = _lay_out(tmp, shards, locate or (lambda n: None), fds)
        counter = _Counter()
        for f in {p.resolve() for p in hash_files}:
            known = known_sha256(f)
            if known is not None:  # this version of the file was hashed before
                sums[str(f)] = known
        hashed = {p.resolve() for p in hash_files if str(p.resolve()) not in sums}
        versions = {f: file_version(f) for f in hashed}
        files = sorted(hashed | set(copies))
        with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, 8))) as pool:
            jobs = [pool.submit(_read_source, f, copies.get(f, []), f in hashed, counter) for f in files]
            for meta, fd, offset in produced:  # meanwhile, on this thread
                _pwrite_tensor(fd, offset, produce(meta.name), meta)
                counter.add(meta.nbytes)
                if progress:
                    progress(counter.value, total)
            _wait(jobs, counter, progress, total)
        for f, job in zip(files, jobs):
            digest = job.result()
            if digest is not None:
                sums[str(f)] = digest
                remember_sha256(f, digest, versions[f])
        _close(fds)
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
        _close(fds)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = sum(len(s.metas) for s in shards)
    return WrittenCheckpoint(out, n, total, [s.name for s in shards], extra, dict(sums))


@dataclass(frozen=True)
class _Copy:
    """Copy ``nbytes`` from ``src_offset`` of a source file to ``dst_offset`` of output fd ``fd``."""

    src_offset: int
    nbytes: int
    fd: int
    dst_offset: int


def _lay_out(tmp: Path, shards: Sequence[Shard], locate: Locate, fds: list[int]
             ) -> tuple[dict[Path, list[_Copy]], list[tuple[TensorMeta, int, int]]]:
    """Create every shard at its final size with its header; sort tensors into byte copies (per
    source file, in source order, adjacent ranges merged) and tensors to produce ``(meta, fd,
    offset)``."""
    copies: dict[Path, list[_Copy]] = {}
    produced: list[tuple[TensorMeta, int, int]] = []
    for shard in shards:
        header, offsets = safetensors_header(shard.metas)
        fd = os.open(tmp / shard.name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        fds.append(fd)
        size = offsets[-1] + shard.metas[-1].nbytes if shard.metas else len(header)
        os.ftruncate(fd, size)
        os.pwrite(fd, header, 0)
        for m, off in zip(shard.metas, offsets):
            src = locate(m.name)
            if src is None or m.nbytes == 0:
                produced.append((m, fd, off))
            else:
                if src.nbytes != m.nbytes:
                    raise RuntimeError(f"tensor {m.name!r}: source holds {src.nbytes} bytes, planned {m.nbytes}")
                copies.setdefault(src.file.resolve(), []).append(_Copy(src.offset, m.nbytes, fd, off))
    for f, cs in copies.items():
        cs.sort(key=lambda c: c.src_offset)
        merged: list[_Copy] = []
        for c in cs:
            last = merged[-1] if merged else None
            if last and last.fd == c.fd and last.src_offset + last.nbytes == c.src_offset \
                    and last.dst_offset + last.nbytes == c.dst_offset:
                merged[-1] = _Copy(last.src_offset, last.nbytes + c.nbytes, c.fd, last.dst_offset)
            else:
                merged.append(c)
        copies[f] = merged
    return copies, produced


class _Counter:
    """Bytes copied so far, summed over the reader threads."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


def _read_source(path: Path, copies: list[_Copy], hashed: bool, counter: _Counter) -> Optional[str]:
    """Copy ``copies`` out of one source file, hashing it from the same sequential read when
    ``hashed`` (else ``copy_file_range`` in the kernel). Returns the sha256 or None."""
    if not hashed:
        with open(path, "rb") as f:
            for c in copies:
                _copy_range(f.fileno(), c)
                counter.add(c.nbytes)
        return None
    todo = list(copies)
    i = 0

    def feed(offset: int, data: memoryview) -> None:  # write the parts of this chunk that copies need
        nonlocal i
        end = offset + len(data)
        while i < len(todo) and todo[i].src_offset + todo[i].nbytes <= offset:
            i += 1
        j = i
        while j < len(todo) and todo[j].src_offset < end:
            c = todo[j]
            a, b = max(c.src_offset, offset), min(c.src_offset + c.nbytes, end)
            _pwrite_all(c.fd, data[a - offset:b - offset], c.dst_offset + (a - c.src_offset))
            counter.add(b - a)
            j += 1

    return sha256_file(path, on_chunk=feed)


def _copy_range(src_fd: int, c: _Copy) -> None:
    point("write")
    done = 0
    while done < c.nbytes:
        try:
            n = os.copy_file_range(src_fd, c.fd, c.nbytes - done, c.src_offset + done, c.dst_offset + done)
        except (AttributeError, OSError):  # no copy_file_range here (or across these file systems)
            data = os.pread(src_fd, min(c.nbytes - done, 8 << 20), c.src_offset + done)
            n = len(data)
            _pwrite_all(c.fd, memoryview(data), c.dst_offset + done)
        if n == 0:
            raise RuntimeError(f"source file ended before offset {c.src_offset + c.nbytes}")
        done += n


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    point("write")
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _pwrite_tensor(fd: int, offset: int, tensor: torch.Tensor, meta: TensorMeta) -> None:
    if tuple(tensor.shape) != meta.shape or tensor.dtype != meta.dtype:
        raise RuntimeError(f"tensor {meta.name!r} is {tuple(tensor.shape)} {tensor.dtype}, planned {meta.shape} {meta.dtype}")
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    _pwrite_all(fd, memoryview(data.numpy()), offset)


def _wait(jobs: list[Future], counter: _Counter, progress: Optional[Progress], total: int) -> None:
    """Wait for the reader threads (re-raising the first failure), reporting progress meanwhile."""
    while True:
        done, pending = wait(jobs, timeout=0.2, return_when=FIRST_EXCEPTION)
        for j in done:
            if j.exception() is not None:
                for p in pending:
                    p.cancel()
                raise j.exception()  # type: ignore[misc]
        if progress:
            progress(counter.value, total)
        if not pending:
            return


def _close(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


def install_dir(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished directory into place; an existing output is replaced only with ``force``.

    Files and folders get the usual permissions (0666 / 0777 less the umask), whatever the
    libraries that wrote them chose (safetensors and mkstemp leave 0600)."""
    _normalise_modes(tmp)
    point("install")
    if out.exists():
        if not force:
            raise OutputExists(f"output {out} appeared while writing; nothing was changed")
        old = out.with_name(temp_prefix(out.name) + "old")  # removed by the next run if this one dies
        os.rename(out, old)
        point("install")
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
