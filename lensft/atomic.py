"""Atomic file writes: the one place lensft writes a file that another run may read.

A file is written to a hidden temporary sibling, flushed to disk and renamed over the target,
so a reader (or a rerun after a crash or ``kill -9``) sees either the old file or the new one,
never half of one. New files get the usual permissions (0666 less the process umask), not the
0600 that :func:`tempfile.mkstemp` would leave.

Temporary files and staging directories are named ``.<target>.lensft-tmp-<host>-<pid>-<random>``,
so what a killed process left behind is recognisable: :func:`remove_stale` deletes the ones whose
process is gone (``staging_dir`` does it for its own target; the study runner and the organism
build for their whole directory, under their lock).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from lensft.faults import point


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_TAG = ".lensft-tmp-"


def temp_prefix(target_name: str) -> str:
    """The name prefix of this process's temporaries for ``target_name`` (see the module docstring)."""
    return f".{target_name}{_TAG}{socket.gethostname()}-{os.getpid()}-"


def _owner_is_gone(name: str) -> bool:
    """True for a temporary named by :func:`temp_prefix` whose process on this host has exited."""
    host_pid_rand = name.rpartition(_TAG)[2]
    parts = host_pid_rand.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[1]), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists and belongs to another user
        pass
    return False


def remove_stale(directory: str | os.PathLike[str], *, target_name: str | None = None,
                 recursive: bool = False) -> int:
    """Delete the temporary files and staging directories left in ``directory`` by lensft processes
    of this host that are gone (killed mid-write); only those of ``target_name`` if given.
    Returns how many entries were removed."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    removed = 0
    for entry in list(os.scandir(d)):
        name = entry.name
        if name.startswith(".") and _TAG in name and (target_name is None or name.startswith(f".{target_name}{_TAG}")) \
                and _owner_is_gone(name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            removed += 1
        elif recursive and entry.is_dir(follow_symlinks=False):
            removed += remove_stale(entry.path, target_name=target_name, recursive=True)
    return removed


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent directories are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=temp_prefix(p.name), suffix=".tmp")
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


def staging_dir(next_to: str | os.PathLike[str]) -> Path:
    """A new hidden directory beside ``next_to`` to assemble an output in before renaming it
    into place; its permissions are those of a normal new directory (not mkdtemp's 0700)."""
    target = Path(next_to)
    parent = target.resolve().parent
    remove_stale(parent, target_name=target.name)  # what killed runs for the same target left
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp
