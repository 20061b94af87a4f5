"""Directory locks: one lensft process at a time writes an organism build or a study directory.

The lock of a directory ``D`` is the file ``.D.lensft-lock`` beside it (outside ``D``, so deleting
and rebuilding ``D`` keeps it). The file is created complete, through :mod:`lensft.atomic`, with
its holder's pid, host, command and start time, then hard-linked into place (a link fails if the
name exists, so exactly one process wins), and its holder keeps an exclusive ``flock`` on it until
it unlinks it. The kernel drops a dead holder's ``flock``, so a lock left by a killed process
(``kill -9``, a power cut) is recognised as stale and taken over; a live holder is named in the
refusal or in the waiting message. A thread may take a lock it already holds again (the study
runner and the report writer both lock a study directory); other threads wait or are refused as
another process would be.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from lensft.atomic import remove_stale, temp_prefix, write_json_atomic
from lensft.errors import LensftError

log = logging.getLogger(__name__)

#: (directory (resolved), thread) -> [fd holding its lock, times taken] in this process
_held: dict[tuple[Path, int], list[int]] = {}


class DirectoryBusy(LensftError):
    """Another live lensft process holds the directory's lock."""


def lock_path(directory: str | os.PathLike[str]) -> Path:
    """Where the lock of ``directory`` lives: ``.<name>.lensft-lock`` in its parent."""
    d = Path(directory).resolve()
    return d.parent / f".{d.name}.lensft-lock"


def holder(directory: str | os.PathLike[str]) -> dict | None:
    """The holder record of ``directory``'s lock file (pid, host, command, started), if one exists.

    The record may be stale (its process dead); only :func:`locked` can tell."""
    try:
        return json.loads(lock_path(directory).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def locked(directory: str | os.PathLike[str], what: str, *, wait: bool = False,
           poll_s: float = 0.5) -> Iterator[Path]:
    """Hold the lock of ``directory`` for the ``with`` block.

    Args:
        directory: the directory to guard (it need not exist yet; its parent is created).
        what: what the holder does, for the other process's message (``organism build`` ...).
        wait: wait for a live holder to finish (logging once who it is) instead of refusing.
        poll_s: how often to retry while waiting, seconds.

    Raises:
        DirectoryBusy: another live process holds the lock and ``wait`` is false.
    """
    d = Path(directory).resolve()
    key = (d, threading.get_ident())
    mine = _held.get(key)
    if mine is not None:  # re-entered by the thread that holds it
        mine[1] += 1
        try:
            yield d
        finally:
            mine[1] -= 1
        return
    lock = lock_path(d)
    made = _make_parents(lock.parent)
    remove_stale(lock.parent, target_name=lock.name)
    told = False
    while (fd := _try_acquire(lock, what)) is None:
        info = holder(d) or {}
        msg = (f"{d} is in use by lensft pid {info.get('pid', '?')} on {info.get('host', '?')} "
               f"({info.get('command', 'unknown command')}, since {info.get('started', '?')})")
        if not wait:
            raise DirectoryBusy(f"{msg}; wait for it to finish or use another directory")
        if not told:
            log.warning("%s; waiting for it to finish", msg)
            told = True
        time.sleep(poll_s)
    _held[key] = [fd, 1]
    try:
        yield d
    finally:
        del _held[key]
        _release(lock, fd)
        for p in made:  # folders made only to hold the lock, if the work left them empty
            with contextlib.suppress(OSError):
                p.rmdir()


def _make_parents(parent: Path) -> list[Path]:
    """Create ``parent`` (and its missing ancestors); return the folders made, deepest first."""
    made = []
    p = parent
    while not p.exists():
        made.append(p)
        p = p.parent
    parent.mkdir(parents=True, exist_ok=True)
    return made


def _record(what: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": what,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _try_acquire(lock: Path, what: str) -> int | None:
    """Put a complete lock file in place and hold its ``flock``; None while a live process holds it."""
    mine = lock.with_name(temp_prefix(lock.name) + f"mine{threading.get_ident()}")
    write_json_atomic(mine, _record(what))
    fd = os.open(mine, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else knows this file yet: immediate
    try:
        while True:
            try:
                os.link(mine, lock)
                return fd
            except FileExistsError:
                pass
            if not _clear_if_stale(lock):
                os.close(fd)
                return None
    except BaseException:
        os.close(fd)
        raise
    finally:
        mine.unlink(missing_ok=True)


def _clear_if_stale(lock: Path) -> bool:
    """Remove ``lock`` if its holder is dead (its ``flock`` is free); False if a live process holds it."""
    try:
        other = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return True  # released meanwhile: try again
    try:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(other).st_ino:  # still the file we found dead
                log.info("taking over the stale lock %s (holder %s)", lock, _read(other).get("pid", "?"))
                os.unlink(lock)
        return True
    finally:
        os.close(other)


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 1 << 16, 0))
    except ValueError:
        return {}


def _release(lock: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.stat(lock).st_ino == os.fstat(fd).st_ino:
            os.unlink(lock)
    os.close(fd)
