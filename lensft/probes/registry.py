"""The probe registry: probes register by name; the CLI and the study runner look them up.

A probe is a class with a ``name``, a one-line ``description``, a pydantic ``Settings`` model and
the prompt-set ``kinds`` it accepts, and either

- ``run(handle, prompts, settings) -> ProbeResult`` (a :class:`Probe`: one model), or
- ``run_pair(host, donor, prompts, settings) -> ProbeResult`` (a :class:`PairProbe`: two aligned
  models, e.g. activation patching: the host runs, the donor's activations are patched in).

Register it with ``@register_probe``; a duplicate name is refused. The study runs both kinds as
units (a pair probe's unit names its donor); ``lensft probe --list`` lists both.
"""

from __future__ import annotations

import difflib
from importlib import import_module
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.prompts import PromptSet
from lensft.results import ProbeResult


@runtime_checkable
class Probe(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    Settings: ClassVar[type[BaseModel]]

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: Any) -> ProbeResult: ...


@runtime_checkable
class PairProbe(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    Settings: ClassVar[type[BaseModel]]

    def run_pair(self, host: ModelHandle, donor: ModelHandle, prompts: PromptSet, settings: Any) -> ProbeResult: ...


def is_pair_probe(probe: Any) -> bool:
    """True for a probe that runs on a host and a donor model."""
    return callable(getattr(probe, "run_pair", None))


_PROBES: dict[str, type] = {}

# Modules that define built-in probes; imported on first lookup so registration needs no import list elsewhere.
_BUILTIN_MODULES: tuple[str, ...] = (
    "lensft.probes.attention_spread",
    "lensft.probes.retrieval",
    "lensft.probes.ffn_activations",
    "lensft.probes.short_tasks",
    "lensft.probes.knowledge",
    "lensft.probes.patching",
    "lensft.evaluation.probe",  # imports lm-eval only when run
)

P = TypeVar("P", bound=type)


def register_probe(cls: P) -> P:
    """Class decorator: add a probe (or a pair probe) to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no 'name'")
    if callable(getattr(cls, "run", None)) == callable(getattr(cls, "run_pair", None)):
        raise TypeError(f"probe {name!r} must define exactly one of run(handle, ...) and run_pair(host, donor, ...)")
    if name in _PROBES and _PROBES[name] is not cls:
        raise ValueError(f"probe {name!r} already registered by {_PROBES[name].__qualname__}")
    _PROBES[name] = cls
    return cls


def _load_builtins() -> None:
    for m in _BUILTIN_MODULES:
        import_module(m)


def list_probes() -> dict[str, str]:
    """Registered probe names and one-line descriptions."""
    _load_builtins()
    return {n: c.description for n, c in sorted(_PROBES.items())}


def get_probe(name: str) -> Any:
    """An instance of the probe registered as ``name``."""
    _load_builtins()
    if name not in _PROBES:
        near = difflib.get_close_matches(name, list(_PROBES), n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise LensftError(f"unknown probe {name!r}.{hint} Available: {', '.join(sorted(_PROBES))}")
    return _PROBES[name]()
