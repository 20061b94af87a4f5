"""The exceptions lensft raises.

Every error a user can cause (a bad path, an incompatible checkpoint, an unknown
family, a malformed option) is a :class:`LensftError`. Its message is one line
that says what is wrong and what to do; the CLI prints it and exits with code 1.
Anything else that escapes is a bug in lensft and exits with code 2.
"""

from __future__ import annotations


class LensftError(Exception):
    """A problem with the user's input that lensft can explain in one line."""


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


class EvaluationError(LensftError):
    """A benchmark run cannot start: an unknown task, a dataset missing offline, lm-eval not installed."""
