"""Switch the Hugging Face stack to offline mode for the length of an evaluation.

``huggingface_hub``, ``datasets`` and ``evaluate`` read their offline flags from the environment
*when they are imported* and keep them as module constants, so setting ``HF_HUB_OFFLINE`` after
an import changes nothing. :func:`hf_offline` therefore sets the environment variables (for
anything imported later, including lm-eval's task code) and the already-imported constants, and
restores both on exit. Inside it, a dataset or metric script that is not in the local cache
fails at once with ``OfflineModeIsEnabled`` / ``ConnectionError`` instead of reaching for the Hub.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

ENV_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")

#: (module, attribute) pairs holding an offline flag read at import time
MODULE_FLAGS = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
    ("evaluate.config", "HF_EVALUATE_OFFLINE"),
)


@contextmanager
def hf_offline() -> Iterator[None]:
    """Run the body with every Hugging Face library in offline mode (restored afterwards)."""
    modules = _import_flag_modules()  # first, so they read the caller's settings, which we restore
    old_env = {k: os.environ.get(k) for k in ENV_FLAGS}
    old_attrs: list[tuple[Any, str, Any]] = []
    os.environ.update({k: "1" for k in ENV_FLAGS})
    try:
        for mod_name, attr in MODULE_FLAGS:
            mod = modules.get(mod_name)
            if mod is not None and hasattr(mod, attr):
                old_attrs.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, True)
        yield
    finally:
        for mod, attr, value in reversed(old_attrs):
            setattr(mod, attr, value)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _import_flag_modules() -> dict[str, Any]:
    """The modules of :data:`MODULE_FLAGS`: the Hub client and ``datasets`` imported now (lm-eval
    needs both), ``evaluate`` only if already imported (its import takes seconds; imported later,
    by a task's metric, it reads the offline environment and keeps it)."""
    import importlib

    out: dict[str, Any] = {}
    for mod_name, _ in MODULE_FLAGS:
        if mod_name in sys.modules:
            out[mod_name] = sys.modules[mod_name]
        elif not mod_name.startswith("evaluate"):
            out[mod_name] = importlib.import_module(mod_name)
    return out


def is_offline() -> bool:
    """True when the Hub client is in offline mode (what :func:`hf_offline` guarantees)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
