"""A rich progress display for training: stage, steps, tokens/s, loss and time left.

:class:`TrainingProgress` is a :data:`lensft.organism.ProgressFn` (call it with each
:class:`~lensft.organism.ProgressEvent`) and a context manager that starts and stops the display::

    with TrainingProgress(console) as progress:
        organism.build("quick", progress=progress)

Each stage (the base, every arm) gets its own line, created at its first event.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from lensft.organism.progress import ProgressEvent


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class TrainingProgress:
    """Renders :class:`ProgressEvent` values as one progress line per stage."""

    def __init__(self, console: Console | None = None, *, transient: bool = False):
        self.progress = Progress(
            TextColumn("{task.description:<22}"), BarColumn(bar_width=28), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9} tokens/s"), TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("{task.fields[left]} left"), console=console, transient=transient)
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        fields = {"rate": f"{event.tokens_per_s:,.0f}", "loss": event.loss,
                  "left": format_seconds(event.seconds_left)}
        if event.stage not in self._tasks:
            self._tasks[event.stage] = self.progress.add_task(event.stage, total=event.total_steps, **fields)
        self.progress.update(self._tasks[event.stage], completed=event.step, **fields)

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()
