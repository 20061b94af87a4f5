"""``lensft swap`` and ``lensft inspect``: graft MHA/FFN blocks between checkpoints; compare a triple."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lensft.cli.options import (AlphaOpt, BaseOpt, FfnOpt, ForceOpt, HostOpt, LayersOpt, LongOpt, MhaOpt, NormsOpt,
                                RoleOpt, ShortOpt, flag, graft_spec_from_options)
from lensft.variants import Role, Variant

# Library imports (torch, safetensors) happen inside the commands so `lensft --help` stays instant.

console = Console(highlight=False)

SWAP_HELP = """Graft the MHA and/or FFN blocks of one checkpoint onto another and write a loadable checkpoint.

Example (the paper's "short model with the long model's attention"):

  lensft swap --short S --long L --mha long --ffn short --out short+long-mha

Embeddings, norms, the final norm and the head come from --host (default: the FFN's source).
"""


def swap(
    short: ShortOpt,
    long: LongOpt,
    mha: MhaOpt,
    ffn: FfnOpt,
    out: Annotated[Path, typer.Option("--out", help="output directory (must not exist unless --force)")],
    base: BaseOpt = None,
    host: HostOpt = None,
    layers: LayersOpt = None,
    norms: NormsOpt = "host",
    alpha: AlphaOpt = 1.0,
    role: RoleOpt = None,
    force: ForceOpt = False,
    no_hash: Annotated[bool, flag("--no-hash", "skip sha256 of the source files in the manifest")] = False,
) -> None:
    from lensft.checkpoints.load import load_triple
    from lensft.graft.export import write_graft
    from lensft.graft import plan_graft

    spec = graft_spec_from_options(mha=mha, ffn=ffn, host=host, layers=layers, norms=norms, alpha=alpha, role=role)
    triple = load_triple(short=short, long=long, base=base)  # plan_graft says so if the spec needs a missing base
    plan = plan_graft(spec, triple.family, triple.n_layers, triple.metadata())
    with _bar("grafting") as (bar, task):
        result = write_graft(plan, triple, out, force=force, hash_sources=not no_hash,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    _print_plan_summary(spec, plan, triple.n_layers, str(result.path), result.n_bytes)


def _bar(what: str):
    from contextlib import contextmanager

    @contextmanager
    def cm():
        with Progress(TextColumn(f"[bold]{what}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=None)
            yield bar, task

    return cm()


def _print_plan_summary(spec, plan, n_layers: int, out: str, n_bytes: int) -> None:
    t = Table(title=f"graft {spec.label}", title_justify="left")
    t.add_column("role")
    t.add_column("from")
    t.add_column("layers")
    t.add_column("tensors", justify="right")
    rows: dict[tuple[Role, Variant], list[int | None]] = {}
    for e in plan:
        src = e.source if e.grafted else e.host
        rows.setdefault((e.role, src), []).append(e.layer)
    for (role, src), layers in sorted(rows.items(), key=lambda kv: (list(Role).index(kv[0][0]), kv[0][1].value)):
        ls = sorted({x for x in layers if x is not None})
        span = "-" if not ls else (f"{ls[0]}-{ls[-1]}" if ls == list(range(ls[0], ls[-1] + 1)) else ",".join(map(str, ls)))
        mark = f"{src} (α={spec.alpha:g})" if src != spec.host and spec.alpha != 1.0 else str(src)
        t.add_row(role.value, mark, span, str(len(layers)))
    console.print(t)
    console.print(f"wrote {out} ({n_bytes / 1e6:.1f} MB, {len(plan)} tensors, {n_layers} layers); "
                  f"provenance in {out}/lensft_manifest.json")


def inspect(
    short: Annotated[Path, typer.Argument(help="short-SFT checkpoint (or BASE SHORT LONG)")],
    long: Annotated[Path, typer.Argument(help="long-SFT checkpoint")],
    third: Annotated[Optional[Path], typer.Argument(help="when three paths are given: BASE SHORT LONG")] = None,
    no_weights: Annotated[bool, flag("--no-weights", "skip the per-layer weight-change pass")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the report as JSON")] = None,
) -> None:
    """Check that a triple is compatible and show where each SFT moved the weights.

    Pass BASE SHORT LONG, or SHORT LONG without a base.
    """
    from lensft.atomic import write_text_atomic
    from lensft.checkpoints.compat import check_compatibility
    from lensft.checkpoints.load import load_triple
    from lensft.checkpoints.outputs import refuse_inside_inputs

    if third is not None:
        base, s, l = short, long, third
    else:
        base, s, l = None, short, long
    if json_out is not None:
        refuse_inside_inputs(json_out, {k: v for k, v in (("base", base), ("short", s), ("long", l)) if v is not None})
    triple = load_triple(base=base, short=s, long=l, check=False)
    with _bar("reading weights") as (bar, task):
        report = check_compatibility(triple, weight_changes=not no_weights,
                                     progress=lambda d, n: bar.update(task, completed=d, total=n))
    _print_report(report)
    if json_out is not None:
        write_text_atomic(json_out, report.model_dump_json(indent=1))
    err = report.first_error()
    if err:
        from lensft.errors import IncompatibleCheckpoints

        raise IncompatibleCheckpoints(err)


def _print_report(report) -> None:
    console.print(f"[bold]family[/] {report.family}, {report.n_layers} layers")
    for v, p in report.paths.items():
        console.print(f"  {v:5s} {p}")
    if report.config_diffs or report.tensor_diffs or report.tokenizer_diffs:
        t = Table(title="differences", title_justify="left")
        t.add_column("what")
        t.add_column("values")
        t.add_column("severity")
        for d in report.config_diffs:
            t.add_row(f"config {d.field}", ", ".join(f"{k}={v}" for k, v in d.values.items()), d.severity)
        for d in report.tensor_diffs[:20]:
            t.add_row(f"tensor {d.name} ({d.kind})", ", ".join(f"{k}={v}" for k, v in d.values.items()), d.severity)
        if len(report.tensor_diffs) > 20:
            t.add_row(f"... {len(report.tensor_diffs) - 20} more tensor differences", "", "")
        for d in report.tokenizer_diffs:
            t.add_row(f"tokenizer {d.aspect}", d.detail, d.severity)
        console.print(t)
    else:
        console.print("[green]config, tensors and tokenizers agree[/]")
    table = report.change_table()
    if table:
        ref = report.weight_changes[0].reference
        t = Table(title=f"relative weight change ‖W − W_{ref}‖ / ‖W_{ref}‖ per layer", title_justify="left")
        t.add_column("variant")
        t.add_column("role")
        for i in range(report.n_layers):
            t.add_column(str(i), justify="right")
        for v, roles in table.items():
            for role, vals in roles.items():
                t.add_row(v, role, *[("-" if x is None else f"{x:.3g}") for x in vals])
        console.print(t)
    console.print("[green]compatible[/]" if report.compatible else f"[red]incompatible:[/] {report.first_error()}")


def register(app: typer.Typer) -> None:
    app.command("swap", help=SWAP_HELP, no_args_is_help=True)(swap)
    app.command("inspect", no_args_is_help=True)(inspect)
