"""Running one unit: build its model(s) from the replicate's triple and call the probe.

:class:`ModelCache` builds a :class:`~lensft.handle.ModelHandle` for a
:class:`~lensft.study.record.ModelRef` (a checkpoint of the triple, an in-memory graft of it, or
an organism mix checkpoint) and keeps the two most recent, so a host/donor pair or consecutive
units on one model are built once. Grafts share the triple's cached tensors.
"""

from __future__ import annotations

from typing import Any, Optional

from lensft.handle import ModelHandle, load_model
from lensft.prompts import PromptSet
from lensft.results import ProbeResult
from lensft.study.plan import UnitPlan
from lensft.study.record import ModelRef
from lensft.study.sources import ReplicateSource


class ModelCache:
    """Builds the models of one replicate, keeping the two most recently used."""

    def __init__(self, src: ReplicateSource, keep: int = 2) -> None:
        self.src, self.keep = src, keep
        self._cache: list[tuple[str, ModelHandle]] = []

    def get(self, model: ModelRef) -> ModelHandle:
        for k, h in self._cache:
            if k == model.key:
                return h
        h = self._build(model)
        self._cache = (self._cache + [(model.key, h)])[-self.keep:]
        return h

    def _build(self, model: ModelRef) -> ModelHandle:
        from lensft.graft import graft_model, variant_model

        if model.is_mix:
            h = load_model(self.src.mixes[float(model.long_fraction)], label=model.label)  # type: ignore[arg-type]
        elif model.kind == "graft":
            h = graft_model(self.src.triple, model.graft)  # type: ignore[arg-type]
        else:
            h = variant_model(self.src.triple, model.variant)  # type: ignore[arg-type]
        h.provenance.label = model.label
        return h


def run_probe(probe: Any, settings: Any, prompts: PromptSet, models: ModelCache, model: ModelRef,
              donor: Optional[ModelRef] = None) -> ProbeResult:
    """Run ``probe`` on ``model`` (a pair probe on ``model`` as host and ``donor``)."""
    handle = models.get(model)
    if donor is not None:
        result = probe.run_pair(handle, models.get(donor), prompts, settings)
    else:
        result = probe.run(handle, prompts, settings)
    result.model = handle.provenance.model_copy(deep=True)
    return result


class StudyProgress:
    """A rich progress line (step, model, replicate, prompt count, units done) or nothing."""

    def __init__(self, console: Any, total: int) -> None:
        self.bar = None
        if console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.fields[step]}[/]"), TextColumn("{task.fields[model]}"),
                                BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
            self.task = self.bar.add_task("study", total=total, step="", model="")

    def __enter__(self) -> "StudyProgress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def show(self, u: UnitPlan, with_replicate: bool) -> None:
        if self.bar is not None:
            label = u.model.label + (f" ← {u.donor.label}" if u.donor else "")
            label += f" ({u.replicate.label})" if with_replicate else ""
            self.bar.update(self.task, step=u.step, model=label)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)
