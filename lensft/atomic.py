"""Atomic file writes: the one place lensft writes a file that another run may read.

A file is written to a hidden temporary sibling, flushed to disk and renamed over the target,
so a reader (or a rerun after a crash or ``kill -9``) sees either the old file or the new one,
never half of one. New files get the usual permissions (0666 less the process umask), not the
0600 that :func:`tempfile.mkstemp` would leave.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lensft.faults import point


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent directories are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        point("atomic.staged")
        os.replace(tmp, p)
        point("atomic.installed")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (keys in insertion order, NaN refused)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def make_dir(path: str | os.PathLike[str]) -> Path:
    """Create a directory (and parents) with the usual 0777-less-umask permissions."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def staging_dir(next_to: str | os.PathLike[str]) -> Path:
    """A new hidden directory beside ``next_to`` to assemble an output in before renaming it
    into place; its permissions are those of a normal new directory (not mkdtemp's 0700)."""
    target = Path(next_to)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.lensft-tmp-", dir=target.resolve().parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp
