"""The exceptions lensft raises.

Every error a user can cause (a bad path, an incompatible checkpoint, an unknown
family, a malformed option) is a :class:`LensftError`. Its message is one line
that says what is wrong and what to do; the CLI prints it and exits with code 1.
Anything else that escapes is a bug in lensft and exits with code 2.
"""

from __future__ import annotations


class LensftError(Exception):
    """A problem with the user's input that lensft can explain in one line.

    ``field`` names the input at fault in library terms (``alpha``, ``layers``, ``mha`` ...), so
    a front end can point at its own name for it (the CLI adds the flag: ``--alpha``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CheckpointError(LensftError):
    """A checkpoint directory is missing, empty, truncated or unreadable."""


class IncompatibleCheckpoints(LensftError):
    """Two checkpoints cannot be compared or grafted (different shapes, vocab, family ...)."""


class UnknownFamily(LensftError):
    """The model's architecture has no family map in ``lensft/families/data``."""


class GraftError(LensftError):
    """A graft specification cannot be applied (bad source name, layer range, alpha ...)."""


class OutputExists(LensftError):
    """An output path exists and ``force`` was not given."""


class PromptSetError(LensftError):
    """A prompt-set or dataset file is missing or malformed."""


class InsufficientMemory(LensftError):
    """A model would not fit in the free memory of its device (raised before loading it).

    ``remedies`` are keys of what to try (``dtype``, ``auto``, ``tokens``); the message renders
    them with ``phrases`` (library words), and the CLI renders them again as flags.
    """

    def __init__(self, message: str, *, remedies: tuple[str, ...] = (), phrases: dict[str, str] | None = None) -> None:
        self.base = message
        self.remedies = remedies
        super().__init__(self.render(phrases or {}))

    def render(self, phrases: dict[str, str]) -> str:
        """The one-line message with each remedy written as ``phrases[key]``."""
        tries = [phrases.get(r, r) for r in self.remedies]
        if not tries:
            return f"{self.base}; free some memory or use a machine with more"
        return f"{self.base}; try {' or '.join(tries)}"


class OutputInsideInput(LensftError):
    """An output path lies inside an input checkpoint, which lensft never writes into."""


class ViewError(LensftError):
    """A model cannot be opened in another library (TransformerLens) faithfully."""


class EvaluationError(LensftError):
    """A benchmark run cannot start: an unknown task, a dataset missing offline, lm-eval not installed."""
