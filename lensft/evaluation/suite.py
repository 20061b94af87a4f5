"""Benchmark suites: named lists of lm-eval runs with the paper's settings and scores beside them.

A suite is a YAML file (the shipped one: ``lensft/evaluation/data/paper_benchmarks.yaml``, name
``paper``). Each :class:`Benchmark` is one lm-eval run (its tasks share one few-shot count) and
names the score that stands for it (``score``: task, metric and optionally lm-eval's filter).
The paper's Table 1 scores (percent, per SFT dataset) and Figure 1's MHA swaps ride along, so a
report can put a measurement next to the paper's number; ``difference`` says how lm-eval's task
differs from the paper's OpenCompass setup.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lensft.errors import EvaluationError
from lensft.evaluation.convert import MetricRow, metric_rows
from lensft.evaluation.settings import HarnessSettings
from lensft.results import ProbeResult

SHIPPED = {"paper": "paper_benchmarks.yaml"}


class ScoreRef(BaseModel):
    """Which reported number stands for a benchmark (``filter`` None: the first filter reported)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    metric: str
    filter: Optional[str] = None


class PaperSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cot: bool
    shots: int = Field(ge=0)
    metric: str


class Benchmark(BaseModel):
    """One lm-eval run of a suite, with the paper's setting and scores (percent) beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    tasks: list[str] = Field(min_length=1)
    num_fewshot: Optional[int] = Field(None, ge=0)
    score: ScoreRef
    unsafe_code: bool = False
    gen_kwargs: dict[str, Any] = Field(default_factory=dict)
    paper: Optional[PaperSetting] = None
    paper_scores: dict[str, float] = Field(default_factory=dict)
    difference: str = ""

    def settings(self, **overrides: Any) -> HarnessSettings:
        """The run's :class:`HarnessSettings` (``overrides``: limit, batch_size, data_files ...)."""
        base = {"tasks": self.tasks, "num_fewshot": self.num_fewshot, "gen_kwargs": dict(self.gen_kwargs)}
        return HarnessSettings(**{**base, **overrides})

    def headline(self, result: ProbeResult) -> Optional[MetricRow]:
        """The row of ``result`` that :attr:`score` names (None when lm-eval did not report it)."""
        for r in metric_rows(result):
            if (r.task, r.metric) == (self.score.task, self.score.metric) and self.score.filter in (None, r.filter):
                return r
        return None


class PaperSwap(BaseModel):
    """A swap result of the paper: ``host`` with ``block`` from the other arm, percent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str
    host: Literal["short", "long"]
    block: Literal["mha", "ffn"]
    own: float
    swapped: float


class BenchmarkSuite(BaseModel):
    """A named list of benchmarks; ``arms`` maps lensft's ``short``/``long`` to the paper's datasets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    source: str = ""
    arms: dict[str, str] = Field(default_factory=dict)
    swaps: list[PaperSwap] = Field(default_factory=list)
    benchmarks: list[Benchmark] = Field(min_length=1)

    def paper_score(self, benchmark: Benchmark, arm: str) -> Optional[float]:
        """The paper's score (percent) of ``benchmark`` for lensft's arm ``short`` or ``long``."""
        dataset = self.arms.get(arm)
        return benchmark.paper_scores.get(dataset) if dataset else None


def load_suite(name_or_path: str | Path) -> BenchmarkSuite:
    """A shipped suite by name (``paper``) or a suite YAML file.

    Raises:
        EvaluationError: unknown name, missing file, invalid YAML or fields.
    """
    key = str(name_or_path)
    if key in SHIPPED:
        text, where = (resources.files("lensft.evaluation") / "data" / SHIPPED[key]).read_text(encoding="utf-8"), key
    else:
        p = Path(key)
        if not p.is_file():
            raise EvaluationError(f"benchmark suite {key!r} is neither a shipped suite ({', '.join(SHIPPED)}) nor a file")
        text, where = p.read_text(encoding="utf-8"), str(p)
    try:
        data = yaml.safe_load(text)
        return BenchmarkSuite.model_validate(data)
    except yaml.YAMLError as e:
        raise EvaluationError(f"benchmark suite {where} is not valid YAML: {str(e).splitlines()[0]}") from None
    except ValidationError as e:
        err = e.errors()[0]
        raise EvaluationError(f"benchmark suite {where}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
