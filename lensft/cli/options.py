"""Option types shared by the CLI commands (declared once, reused)."""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from lensft.errors import InsufficientMemory, LensftError

BaseOpt = Annotated[Optional[Path], typer.Option("--base", help="base checkpoint directory (optional)")]
ShortOpt = Annotated[Path, typer.Option("--short", help="short-context SFT checkpoint directory")]
LongOpt = Annotated[Path, typer.Option("--long", help="long-context SFT checkpoint directory")]


def flag(name: str, help: str) -> Any:
    """A boolean flag (``--force``): shown without a value in --help, as it takes none."""
    return typer.Option(name, help=help, metavar="")


ForceOpt = Annotated[bool, flag("--force", "replace an existing --out")]


class DTypeChoice(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


DeviceOpt = Annotated[str, typer.Option(
    "--device", help="cpu, cuda, cuda:N, or auto (every visible GPU, then CPU offload for what does not fit)")]
DtypeOpt = Annotated[Optional[DTypeChoice], typer.Option(
    "--dtype", help="weights and activations dtype (default: the checkpoint's own, from its config)")]
BatchSizeOpt = Annotated[Optional[int], typer.Option(
    "--batch-size", min=1, help="prompts per forward pass (default: the probe's batch_size setting)")]

#: what to try when a model does not fit, as flags (the library says the same in words)
CLI_REMEDIES = {"dtype": "--dtype bfloat16", "auto": "--device auto",
                "tokens": "a smaller --batch-size or fewer, shorter --prompts"}


def load_options(device: str, dtype: Optional[DTypeChoice], tokens_per_batch: int = 0) -> Any:
    """The :class:`~lensft.devices.LoadOptions` of ``--device`` / ``--dtype`` (one-line error if invalid)."""
    from lensft.devices import LoadOptions

    try:
        return LoadOptions.parse(device=device, dtype=dtype.value if dtype else None, tokens_per_batch=tokens_per_batch)
    except LensftError as e:
        raise LensftError(str(e).replace("load option device", "--device").replace("load option dtype", "--dtype")) \
            from None


@contextmanager
def memory_errors_as_flags() -> Iterator[None]:
    """Re-word an :class:`~lensft.errors.InsufficientMemory` refusal with the flags to try."""
    try:
        yield
    except InsufficientMemory as e:
        raise LensftError(e.render(CLI_REMEDIES)) from None
