"""Keep lm-eval's chatter out of lensft's output while a run lasts (restored afterwards).

- lm-eval logs INFO/WARNING notes on every run (``pretrained`` is not a string, seeds, default
  aggregations of custom tasks); they are raised to ERROR unless lensft itself logs at INFO.
- lm-eval records ``git describe`` of the working directory in its results; outside a git
  repository ``git`` prints ``fatal: not a git repository`` to the terminal. The same command is
  run here with its stderr discarded (the recorded value is unchanged: the hash, or None).
"""

from __future__ import annotations

import logging
import subprocess
from contextlib import contextmanager
from typing import Iterator, Optional


def _git_hash() -> Optional[str]:
    try:
        out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=True)
        return out.stdout.strip() or None
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


@contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """Run the body with lm-eval's log notes and ``git`` stderr silenced."""
    import lm_eval.evaluator as ev

    logger = logging.getLogger("lm_eval")
    level = logger.level
    if not logging.getLogger("lensft").isEnabledFor(logging.INFO):
        logger.setLevel(logging.ERROR)
    saved = getattr(ev, "get_git_commit_hash", None)
    if saved is not None:
        ev.get_git_commit_hash = _git_hash  # type: ignore[attr-defined]
    try:
        yield
    finally:
        logger.setLevel(level)
        if saved is not None:
            ev.get_git_commit_hash = saved  # type: ignore[attr-defined]
