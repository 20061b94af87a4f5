"""Content hashes: the one place lensft computes a sha256 (files, bytes, JSON-able objects).

File digests can be remembered per file version (path, inode, size, mtime, ctime) under
``$LENSFT_CACHE/sha256``, so a checkpoint's weight files are hashed once, not at every swap.
"""

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


# ---------------------------------------------------------------------------------------- digest cache
def _digest_dir() -> Path:
    root = os.environ.get("LENSFT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "lensft") / "sha256"


def file_version(path: str | os.PathLike[str]) -> str:
    """A key for this version of a file: resolved path, device, inode, size, mtime and ctime (any
    write changes the ctime, which no ordinary tool can set back), as git's index does."""
    p = Path(path).resolve()
    st = os.stat(p)
    return sha256_json([str(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])


def known_sha256(path: str | os.PathLike[str]) -> Optional[str]:
    """The sha256 recorded for exactly this version of the file (:func:`remember_sha256`), or None."""
    try:
        digest = (_digest_dir() / file_version(path)).read_text().strip()
    except OSError:
        return None
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def remember_sha256(path: str | os.PathLike[str], digest: str, version: str) -> None:
    """Record ``digest`` for the file if it is still at ``version`` (taken before it was read)."""
    from lensft.atomic import write_text_atomic

    try:
        if file_version(path) == version:
            write_text_atomic(_digest_dir() / version, digest)
    except OSError:  # a read-only home or cache: the digest is simply computed again next time
        pass
