"""Option types shared by the CLI commands (declared once, reused)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

BaseOpt = Annotated[Optional[Path], typer.Option("--base", help="base checkpoint directory (optional)")]
ShortOpt = Annotated[Path, typer.Option("--short", help="short-context SFT checkpoint directory")]
LongOpt = Annotated[Path, typer.Option("--long", help="long-context SFT checkpoint directory")]
