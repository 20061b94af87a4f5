"""Option types and validators shared by the CLI commands (declared once, reused)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

BaseOpt = Annotated[Optional[Path], typer.Option("--base", help="base checkpoint directory (optional)")]
ShortOpt = Annotated[Path, typer.Option("--short", help="short-context SFT checkpoint directory")]
LongOpt = Annotated[Path, typer.Option("--long", help="long-context SFT checkpoint directory")]


def check_mixes(values: Optional[list[float]]) -> Optional[list[float]]:
    """Validate ``--mix`` values: each a long-data fraction in [0, 1]; None when none was given."""
    if not values:
        return None
    for m in values:
        if not 0.0 <= m <= 1.0:
            raise typer.BadParameter(f"{m} is not a fraction of long SFT data in [0, 1]", param_hint="--mix")
    return list(values)


MixOpt = Annotated[Optional[list[float]], typer.Option(
    "--mix", callback=check_mixes, metavar="F",
    help="an arm trained on this fraction of long SFT data (0 = the short arm, 1 = the long arm, both always "
         "built); repeat for several: --mix 0.25 --mix 0.5")]
