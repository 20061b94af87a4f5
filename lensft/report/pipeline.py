"""A study and its report in one call: what ``lensft study`` and the notebooks run."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Optional

from lensft.report.render import write_report
from lensft.study import StudyConfig
from lensft.study.execute import Executor
from lensft.study.runner import StudyOutcome, run

log = logging.getLogger(__name__)


def run_study(config: StudyConfig, out: str | os.PathLike[str], *, console: Any = None,
              only: Optional[set[str]] = None, organism_progress: Optional[Callable[..., None]] = None,
              executor: Optional[Executor] = None) -> StudyOutcome:
    """Run (or resume) a study into ``out`` (:func:`lensft.study.run`, with ``executor``), then write
    its report when ``config.report`` is set; the outcome's ``report`` is the report's path."""
    outcome = run(config, out, console=console, only=only, organism_progress=organism_progress, executor=executor)
    if config.report:
        t0 = time.perf_counter()
        outcome.report = write_report(out, png=config.png)
        log.info("report written in %.1f s", time.perf_counter() - t0)
    return outcome
