"""Option types and validators shared by the CLI commands (declared once, reused)."""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from lensft.errors import InsufficientMemory, LensftError
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
