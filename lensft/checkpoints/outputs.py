"""Where outputs may go: never into, over or around an input checkpoint (inputs are only read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from lensft.errors import OutputInsideInput


def refuse_inside_inputs(out: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str]]) -> None:
    """Refuse an output path (file or directory) that is an input checkpoint directory, lies inside
    one, or contains one. ``inputs`` maps a name used in the message (``short`` ...) to a directory.

    Raises:
        OutputInsideInput: naming the output and the checkpoint.
    """
    o = Path(out).resolve()
    for name, path in inputs.items():
        src = Path(path).resolve()
        if o == src or o.is_relative_to(src) or src.is_relative_to(o):
            where = "contains" if src.is_relative_to(o) and o != src else "is inside"
            raise OutputInsideInput(f"output {out} {where} the {name} checkpoint {path}; lensft never writes into "
                                    "an input checkpoint: choose an output outside it")
