"""Studies: the paper's experiments end to end, cached unit by unit, recorded in a typed study record.

``lensft.study.run(StudyConfig(organism="quick"), "out/")`` builds (or loads) the organism, runs
every step (short-task accuracy, the module swaps, the per-layer swap sweep, attention spread,
retrieval heads, FFN activations, knowledge preference, patching), caches each probe result on
disk and writes the study record ``out/manifest.json``. The report is written by
:func:`lensft.report.pipeline.run_study` (``lensft study``) or ``lensft report``.
"""

from __future__ import annotations

from typing import Any

from lensft.study.config import STEP_NAMES, StepConfig, StudyConfig, StudyConfigError

__all__ = ["STEP_NAMES", "StepConfig", "StudyConfig", "StudyConfigError", "StudyOutcome", "iter_results", "run"]


def __getattr__(name: str) -> Any:
    # The runner pulls in torch, transformers and every probe; load it only when used, so
    # `lensft --help` and config validation stay fast.
    if name in ("StudyOutcome", "iter_results", "run"):
        from lensft.study import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'lensft.study' has no attribute {name!r}")
