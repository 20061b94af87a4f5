"""Fault injection for lensft's reliability tests: die or fail a write at a named point.

Library code calls :func:`point` at its natural boundaries, where a crash is most likely to leave
something half done:

- ``atomic.staged``: :mod:`lensft.atomic` has written a file's bytes to its temporary sibling and
  is about to rename it over the target; ``atomic.installed``: it has just renamed it;
- ``write``: the checkpoint writer is about to put one tensor (or byte range) into a shard;
- ``install``: a finished output directory is about to be renamed into place;
- ``train.step``: the organism's training loop finished one optimiser step.

With ``LENSFT_FAULT`` unset (always, outside tests) a point costs one dictionary lookup. Tests set
``LENSFT_FAULT`` to one or more comma-separated faults ``ACTION@SITE#N``: on the ``N``-th time (from
1) this process reaches ``SITE`` (``*``: any site), ACTION happens:

- ``kill``: the process sends itself ``SIGKILL``, exactly what ``kill -9`` does (no cleanup runs);
- ``enospc``: :func:`point` raises ``OSError(ENOSPC)``, as a full disk would.

Example: ``LENSFT_FAULT="kill@atomic.staged#3"`` dies while installing the third file written.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections import Counter

ENV = "LENSFT_FAULT"

_hits: Counter[str] = Counter()
_lock = threading.Lock()


def point(site: str) -> None:
    """Count a visit to ``site``; apply the fault ``LENSFT_FAULT`` names for this visit, if any.

    Raises:
        OSError: ``ENOSPC``, when an ``enospc`` fault is due here.
    """
    spec = os.environ.get(ENV)
    with _lock:  # points are reached from several threads (the checkpoint writer's readers)
        _hits[site] += 1
        _hits["*"] += 1
        counts = {site: _hits[site], "*": _hits["*"]}
    if not spec:
        return
    for action, where, n in _parse(spec):
        if where in counts and counts[where] == n:
            _apply(action, site)


def hits() -> dict[str, int]:
    """How often each site was reached in this process (``*``: all sites together)."""
    return dict(_hits)


def reset() -> None:
    """Forget the visits counted so far (a test starting a new run in the same process)."""
    _hits.clear()


def _parse(spec: str) -> list[tuple[str, str, int]]:
    faults = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        action, _, rest = part.partition("@")
        where, _, n = rest.partition("#")
        if action not in ("kill", "enospc") or not where or not n.isdigit():
            raise ValueError(f"{ENV}={spec!r}: expected ACTION@SITE#N with ACTION kill or enospc")
        faults.append((action, where, int(n)))
    return faults


def _apply(action: str, site: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, f"No space left on device (injected at {site})")
