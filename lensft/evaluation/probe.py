"""The ``lm_eval`` probe: standard benchmarks (or a task prompt set) scored by lm-evaluation-harness.

Registered like every probe, so ``lensft probe lm_eval``, the Python API and the study run it as
ordinary units. Importing this module does not import lm-eval (``lensft probe --list`` stays
fast and works without it); running the probe does.

- ``settings.tasks`` non-empty: lm-eval tasks / groups / tags (from the include paths and lm-eval's
  registry; datasets from the local Hugging Face cache or ``data_files``); a prompt set passed
  along is not scored.
- ``settings.tasks`` empty: the prompt set (kind ``task``) is exported to a temporary lm-eval task
  directory (:mod:`lensft.evaluation.export`) and scored there, item for item as ``short_tasks``
  scores it.
"""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic import BaseModel

from lensft.evaluation.convert import PROBE_NAME
from lensft.evaluation.settings import HarnessSettings
from lensft.handle import ModelHandle
from lensft.probes.registry import register_probe
from lensft.prompts import PromptSet
from lensft.results import ProbeResult


@register_probe
class LmEvalProbe:
    name: ClassVar[str] = PROBE_NAME
    description: ClassVar[str] = ("lm-evaluation-harness tasks (GSM8K, MMLU, your own YAML) or a task prompt set, "
                                  "scored offline with standard errors")
    kinds: ClassVar[tuple[str, ...]] = ("task",)
    Settings: ClassVar[type[BaseModel]] = HarnessSettings

    def evaluate(self, handle: ModelHandle, prompts: Optional[PromptSet] = None,
                 settings: HarnessSettings | None = None):  # -> HarnessRun (lm-eval imported lazily)
        """The full run: the lensft result plus lm-eval's results JSON and samples."""
        from lensft.evaluation.harness import run_harness

        return run_harness(handle, settings, prompts)

    def run(self, handle: ModelHandle, prompts: Optional[PromptSet] = None,
            settings: HarnessSettings | None = None) -> ProbeResult:
        return self.evaluate(handle, prompts, settings).result
