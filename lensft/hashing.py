"""Content hashes: the one place lensft computes a sha256 (files, bytes, JSON-able objects)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

_CHUNK = 8 << 20  # 8 MiB reads


def sha256_file(path: str | os.PathLike[str], *, on_chunk: Optional[Callable[[int, memoryview], None]] = None,
                chunk_bytes: int = _CHUNK) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk_bytes`` chunks.

    ``on_chunk(offset, data)`` is called with every chunk as it is hashed, so one sequential read
    can both hash a file and feed a copy of parts of it (``data`` is reused: copy what you keep).
    hashlib releases the GIL on large buffers, so files hash in parallel on threads.
    """
    h = hashlib.sha256()
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    offset = 0
    with open(Path(path), "rb", buffering=0) as f:
        while n := f.readinto(buf):  # type: ignore[attr-defined]
            h.update(view[:n])
            if on_chunk is not None:
                on_chunk(offset, view[:n])
            offset += n
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal objects give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    """Hex sha256 of :func:`canonical_json` of ``obj`` (cache keys, content versions)."""
    return sha256_bytes(canonical_json(obj).encode("utf-8"))
