"""Opening a base / short / long triple: lazy readers, checked for compatibility before any work."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lensft.checkpoints.compat import check_compatibility
from lensft.checkpoints.reader import open_checkpoint
from lensft.checkpoints.triple import CheckpointTriple
from lensft.errors import IncompatibleCheckpoints
from lensft.variants import Variant

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def load_triple(*, short: PathLike, long: PathLike, base: PathLike | None = None, check: bool = True) -> CheckpointTriple:
    """Open a base/short/long triple of local HF checkpoints lazily.

    Only configs and tensor headers are read. With ``check`` (the default) the triple's
    compatibility (family, config, tensor names/shapes/dtypes, tokenizer vocab) is verified and an
    incompatible triple is refused before any work.

    Raises:
        CheckpointError: a path is missing or is not a readable checkpoint.
        IncompatibleCheckpoints: naming the first offending field or tensor and both values.
    """
    paths = {Variant.SHORT: short, Variant.LONG: long}
    if base is not None:
        paths = {Variant.BASE: base, **paths}
    readers = {v: open_checkpoint(p) for v, p in paths.items()}
    resolved = {v: r.path.resolve() for v, r in readers.items()}
    seen: dict[Path, Variant] = {}
    for v, p in resolved.items():
        if p in seen:
            log.warning("%s and %s are the same directory (%s)", seen[p], v, p)
        seen[p] = v
    triple = CheckpointTriple(readers)
    if check:
        report = check_compatibility(triple, weight_changes=False)
        err = report.first_error()
        if err:
            raise IncompatibleCheckpoints(err)
    return triple

