"""The ``benchmarks`` step's settings and the lm-eval runs they ask for.

The step scores every arm and every graft of the module grid and the layer sweep with
lm-evaluation-harness (the ``lm_eval`` probe), one unit per (model, run). A *run* is one lm-eval
invocation:

- each benchmark of a suite (``suite: paper`` -> MMLU, BBH, ..., each with the paper's few-shot
  count and headline score, :mod:`lensft.evaluation.suite`);
- each task of ``tasks`` (lm-eval task, group or tag names; datasets from the local Hugging Face
  cache, ``data_files`` or ``include_path``);
- ``organism`` in ``tasks``: the organism's held-out task sets (the study's ``tasks`` prompt set),
  exported as an lm-eval task directory and scored item for item as ``short_tasks`` scores them.

The step is off until something is asked for (no suite, no tasks: no units, and the record says
why). Nothing here imports lm-eval; :func:`lm_eval_missing` only looks for it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lensft.errors import EvaluationError
from lensft.evaluation.settings import HarnessSettings
from lensft.evaluation.suite import BenchmarkSuite, ScoreRef, load_suite
from lensft.hashing import sha256_file

#: the name in ``tasks`` that stands for the organism's own task sets
ORGANISM_TASKS = "organism"
STEP = "benchmarks"
ModelGroup = Literal["arms", "grid", "sweep"]


class BenchmarkStepSettings(BaseModel):
    """``steps.benchmarks.settings`` of a study config.

    ``suite`` (a shipped suite name such as ``paper``, or a suite YAML file) and/or ``tasks``
    (lm-eval task/group/tag names; ``organism`` for the organism's task sets) say what is scored;
    ``benchmarks`` keeps only the named benchmarks of the suite. ``num_fewshot`` applies to
    ``tasks`` (a suite's benchmarks carry their own); ``limit``, ``batch_size``, ``include_path``,
    ``data_files``, ``apply_chat_template``, ``gen_kwargs`` go to every run. ``models`` picks the
    models: ``arms`` (base, short, mixes, long), ``grid`` (the four module swaps), ``sweep`` (the
    per-layer swaps, ``band`` layers at a time).
    """

    model_config = ConfigDict(extra="forbid")

    suite: Optional[str] = None
    benchmarks: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    num_fewshot: Optional[int] = Field(None, ge=0)
    limit: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, ge=1)
    include_path: list[str] = Field(default_factory=list)
    data_files: dict[str, Any] = Field(default_factory=dict)
    apply_chat_template: Optional[bool] = None
    gen_kwargs: dict[str, Any] = Field(default_factory=dict)
    allow_code_execution: bool = False
    models: list[ModelGroup] = Field(default_factory=lambda: ["arms", "grid", "sweep"])

    @field_validator("tasks", "benchmarks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        out = [t.strip() for t in v if t.strip()]
        if len(set(out)) != len(out):
            raise ValueError(f"names repeat: {out}")
        return out

    @field_validator("include_path")
    @classmethod
    def _absolute(cls, v: list[str]) -> list[str]:
        return [str(Path(p).expanduser().resolve()) for p in v]

    @property
    def asks(self) -> bool:
        """Whether anything is to be scored."""
        return bool(self.suite or self.tasks)


@dataclass(frozen=True)
class BenchmarkRun:
    """One lm-eval run of the step: its name, the ``lm_eval`` probe's settings, the headline score
    (None: every score lm-eval reports) and, for a suite benchmark, the paper's percent per arm."""

    name: str
    settings: dict[str, Any]
    score: Optional[ScoreRef] = None
    paper: dict[str, float] = field(default_factory=dict)
    difference: str = ""
    organism: bool = False
    paper_swaps: dict[str, float] = field(default_factory=dict)  # graft label -> the paper's percent

    @property
    def key(self) -> tuple[str, ...]:
        """What tells this run's units apart from the other runs': its task names."""
        return tuple(self.settings.get("tasks") or ())


def parse(settings: dict[str, Any]) -> BenchmarkStepSettings:
    return BenchmarkStepSettings(**settings)


def runs(s: BenchmarkStepSettings) -> tuple[list[BenchmarkRun], list[str]]:
    """The runs ``s`` asks for, and why any benchmark is left out (not measured).

    Raises:
        EvaluationError: the suite cannot be loaded, or ``benchmarks`` names one it lacks.
        pydantic.ValidationError: a run's settings are not valid ``lm_eval`` probe settings.
    """
    common: dict[str, Any] = {"limit": s.limit, "include_path": list(s.include_path),
                              "apply_chat_template": s.apply_chat_template}
    if s.batch_size is not None:
        common["batch_size"] = s.batch_size
    out: list[BenchmarkRun] = []
    skipped: list[str] = []
    if s.suite:
        out, skipped = _suite_runs(load_suite(s.suite), s, common)
    for t in s.tasks:
        if t == ORGANISM_TASKS:
            out.append(BenchmarkRun("organism tasks", _settings(**common), organism=True))
            continue
        out.append(BenchmarkRun(t, _settings(tasks=[t], num_fewshot=s.num_fewshot, gen_kwargs=dict(s.gen_kwargs),
                                             data_files={t: s.data_files[t]} if t in s.data_files else {},
                                             confirm_run_unsafe_code=s.allow_code_execution, **common)))
    return out, skipped


def _settings(**kw: Any) -> dict[str, Any]:
    """Validated ``lm_eval`` probe settings, as the JSON the unit records (defaults left out)."""
    return HarnessSettings(**kw).model_dump(mode="json", exclude_defaults=True)


def _suite_runs(suite: BenchmarkSuite, s: BenchmarkStepSettings,
                common: dict[str, Any]) -> tuple[list[BenchmarkRun], list[str]]:
    names = [b.name for b in suite.benchmarks]
    unknown = sorted(set(s.benchmarks) - set(names))
    if unknown:
        raise EvaluationError(f"suite {suite.name!r} has no benchmark {unknown}; it has {', '.join(names)}")
    out, skipped = [], []
    for b in suite.benchmarks:
        if s.benchmarks and b.name not in s.benchmarks:
            continue
        if b.unsafe_code and not s.allow_code_execution:
            skipped.append(f"{STEP}: {b.name} not measured: it executes model-written code; allow it only where that "
                           "is acceptable (allow_code_execution: true)")
            continue
        settings = _settings(tasks=list(b.tasks), num_fewshot=b.num_fewshot, gen_kwargs={**b.gen_kwargs, **s.gen_kwargs},
                             data_files={t: f for t, f in s.data_files.items() if t in b.tasks},
                             confirm_run_unsafe_code=b.unsafe_code, **common)
        paper = {arm: v for arm in suite.arms if (v := suite.paper_score(b, arm)) is not None}
        swaps = {f"{w.host} + {'long' if w.host == 'short' else 'short'}.{w.block}": w.swapped
                 for w in suite.swaps if w.benchmark == b.name}
        out.append(BenchmarkRun(b.name, settings, b.score, paper, b.difference, paper_swaps=swaps))
    return out, skipped


def lm_eval_missing() -> Optional[str]:
    """One line saying lm-eval is not installed (and how to install it), or None when it is."""
    try:
        found = importlib.util.find_spec("lm_eval") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (f"{STEP}: not measured: lm-evaluation-harness is not installed; install it with "
            "pip install 'lensft[eval]' (after torch==2.13.0), or remove the step's tasks")


def input_identity(run: BenchmarkRun) -> dict[str, Any]:
    """What, besides the model and the settings, determines a run's scores: lm-eval's version and
    the sha256 of every file under its include paths and of its data files (so editing a local
    task or its data reruns the unit). Datasets in the Hugging Face cache are identified by the
    task versions lm-eval records in the result, not here."""
    files: dict[str, str] = {}
    for d in run.settings.get("include_path") or []:
        root = Path(d)
        if root.is_dir():
            for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                files[str(f)] = sha256_file(f)
    for spec in (run.settings.get("data_files") or {}).values():
        for f in ([spec] if isinstance(spec, str) else list(dict(spec).values())):
            p = Path(f).expanduser().resolve()
            files[str(p)] = sha256_file(p) if p.is_file() else "missing"
    try:
        version = metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        version = None
    return {"lm_eval": version, "files": files}
