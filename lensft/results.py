"""Probe results: typed records that save to and load from JSON readable without lensft.

A result file is one JSON object (``ProbeResult.model_dump``):

- ``probe``: registered probe name; ``settings``: the probe's settings;
- ``model``: provenance of the model (label, source paths, graft spec, hashes);
- ``prompt_set``: name, version and size of the prompt set;
- ``summary``: headline scalars (``{"mean_entropy": 2.31, ...}``);
- ``arrays``: named arrays as nested lists, with ``dims`` giving each array's axis names
  (e.g. ``{"entropy": ["phase", "layer", "head"]}``) and ``coords`` the labels of named axes
  (e.g. ``{"phase": ["reasoning", "answer"]}``);
- ``records``: per-item records (one dict per prompt or item) for error bars and inspection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, Field

from lensft import __version__
from lensft.atomic import write_text_atomic
from lensft.errors import LensftError
from lensft.provenance import Provenance

RESULT_SCHEMA_VERSION = 1


class PromptSetRef(BaseModel):
    """Which prompt set a result was measured on."""

    name: str
    version: str
    n_items: int


class ProbeResult(BaseModel):
    """The output of one probe on one model and one prompt set."""

    schema_version: int = RESULT_SCHEMA_VERSION
    probe: str
    model: Provenance
    prompt_set: Optional[PromptSetRef] = None
    settings: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Optional[float]] = Field(default_factory=dict)
    arrays: dict[str, Any] = Field(default_factory=dict, description="name -> nested list")
    dims: dict[str, list[str]] = Field(default_factory=dict, description="array name -> axis names")
    coords: dict[str, list[Any]] = Field(default_factory=dict, description="axis name -> labels")
    records: list[dict[str, Any]] = Field(default_factory=list)
    lensft_version: str = __version__

    def array(self, name: str) -> np.ndarray:
        """A stored array as a float numpy array (NaN where the list held None)."""
        if name not in self.arrays:
            raise KeyError(f"result of probe {self.probe!r} has no array {name!r}; it has {sorted(self.arrays)}")
        return np.array(self.arrays[name], dtype=float)

    def set_array(self, name: str, value: Any, dims: list[str]) -> None:
        """Store an array (numpy / torch / nested list) under ``name`` with its axis names."""
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=float)
        if arr.ndim != len(dims):
            raise ValueError(f"array {name!r} has {arr.ndim} axes but dims {dims}")
        self.arrays[name] = _to_jsonable(arr)
        self.dims[name] = list(dims)


def _to_jsonable(arr: np.ndarray) -> Any:
    """Nested lists with NaN/inf replaced by None (JSON has no NaN)."""
    obj = arr.tolist()

    def fix(x: Any) -> Any:
        if isinstance(x, list):
            return [fix(v) for v in x]
        if isinstance(x, float) and not np.isfinite(x):
            return None
        return x

    return fix(obj)


def save_result(result: ProbeResult, path: str | os.PathLike[str]) -> Path:
    """Write a result as JSON atomically. The file holds no timestamp, so equal results are equal bytes."""
    return write_text_atomic(path, result.model_dump_json(indent=1))


def load_result(path: str | os.PathLike[str]) -> ProbeResult:
    """Read a result written by :func:`save_result`."""
    p = Path(path)
    if not p.is_file():
        raise LensftError(f"result file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LensftError(f"{p} is not a lensft result (invalid JSON: {e})") from None
    if data.get("schema_version") != RESULT_SCHEMA_VERSION:
        raise LensftError(f"{p} has result schema {data.get('schema_version')}; this lensft reads {RESULT_SCHEMA_VERSION}")
    return ProbeResult.model_validate(data)
