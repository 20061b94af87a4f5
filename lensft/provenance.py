"""Provenance records: where a model's weights came from (no heavy imports)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field

from lensft import __version__


class Provenance(BaseModel):
    """Where a model's weights came from.

    ``label`` is a short display name (``short``, ``mha=long,ffn=short`` ...); ``sources`` maps
    variant names to checkpoint paths; ``graft`` is the graft specification (as a dict) if the
    model is a graft; ``file_hashes`` maps weight files to sha256 digests where known; ``dtype`` and
    ``device`` say how the model was loaded (``bfloat16``, ``cuda:0``, ``auto (cuda:0, cuda:1 + CPU offload)``).
    """

    label: str
    sources: dict[str, str] = Field(default_factory=dict)
    graft: Optional[dict[str, Any]] = None
    file_hashes: dict[str, str] = Field(default_factory=dict)
    dtype: Optional[str] = None
    device: Optional[str] = None
    lensft_version: str = __version__
