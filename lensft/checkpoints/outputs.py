"""Where outputs may go: never into an input checkpoint (inputs are only ever read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from lensft.errors import OutputInsideInput


def refuse_inside_inputs(out: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str]]) -> None:
    """Refuse an output path (file or directory) that is an input checkpoint directory or lies
    inside one. ``inputs`` maps a name used in the message (``short`` ...) to a directory.

    Raises:
        OutputInsideInput: naming the output and the checkpoint.
    """
    o = Path(out).resolve()
    for name, path in inputs.items():
        src = Path(path).resolve()
        if o == src or o.is_relative_to(src):
            raise OutputInsideInput(f"output {out} is inside the {name} checkpoint {path}; lensft never writes into "
                                    "an input checkpoint: choose an output outside it")
