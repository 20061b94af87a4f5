"""Option types shared by the CLI commands (declared once, reused)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lensft.variants import Variant

BaseOpt = Annotated[Optional[Path], typer.Option("--base", help="base checkpoint directory (optional)")]
ShortOpt = Annotated[Optional[Path], typer.Option("--short", help="short-context SFT checkpoint directory")]
LongOpt = Annotated[Optional[Path], typer.Option("--long", help="long-context SFT checkpoint directory")]

# --- what a graft takes from where (lensft swap, lensft eval) --------------------------------
MhaOpt = Annotated[Optional[Variant], typer.Option("--mha", help="checkpoint that supplies the attention blocks (q/k/v/o)")]
FfnOpt = Annotated[Optional[Variant], typer.Option("--ffn", help="checkpoint that supplies the feed-forward blocks")]
HostOpt = Annotated[Optional[Variant], typer.Option("--host", help="checkpoint that supplies everything else [default: the --ffn source]")]
LayersOpt = Annotated[Optional[str], typer.Option("--layers", help="apply --mha/--ffn only to layers a..b-1, e.g. 8:24")]
NormsOpt = Annotated[str, typer.Option("--norms", help="'host': norms stay with the host; 'module': each block's norms move with it")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="interpolate: (1-alpha)*host + alpha*source; 1 takes the source whole")]
RoleOpt = Annotated[Optional[list[str]], typer.Option("--role", help="set one role's source explicitly, e.g. --role embed=base (repeatable; roles: mha, ffn, attn_norm, ffn_norm, embed, final_norm, lm_head)")]

# --- loading a model (to be replaced by perf's typed LoadOptions) ----------------------------
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device to run the model on (cpu, cuda, cuda:1 ...)")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="weights dtype: float32, bfloat16 or float16")]

ForceOpt = Annotated[bool, typer.Option("--force", help="replace an existing --out")]


def graft_spec_from_options(*, mha: Variant, ffn: Variant, host: Optional[Variant], layers: Optional[str],
                            norms: str, alpha: float, role: Optional[list[str]]):  # -> GraftSpec
    """The :class:`~lensft.graft.GraftSpec` the swap options describe (``--role`` parsed here)."""
    from lensft.errors import GraftError
    from lensft.graft import GraftSpec

    overrides = {}
    for item in role or []:
        if "=" not in item:
            raise GraftError(f"--role takes ROLE=SOURCE, e.g. embed=base (got {item!r})")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    return GraftSpec.build(mha=mha.value, ffn=ffn.value, host=host.value if host else None, norms=norms,
                           layers=layers, alpha=alpha, overrides=overrides)
