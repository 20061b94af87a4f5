"""``lensft study`` (the paper's experiments end to end) and ``lensft report RESULTS_DIR``."""

from __future__ import annotations

import contextlib
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lensft.cli.options import BatchSizeOpt, DeviceOpt, DtypeOpt, MixOpt, load_options, memory_errors_as_flags
from lensft.cli.progress import TrainingProgress
from lensft.study.config import PROMPT_ROLES, STEP_NAMES, StudyConfig, StudyConfigError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

STUDY_HELP = """Run the paper's analysis on a checkpoint triple and write a self-contained report.

Examples:

  lensft study --organism quick --out runs/quick            # the model organism (built or cached)

  lensft study --base B --short S --long L --out runs/mine  # your own triple (mixes are skipped)

  lensft study --organism quick --executor ray --address auto  # units as Ray tasks on a cluster

Results are cached per step under --out: rerunning resumes an interrupted study, and a changed
step reruns alone. The report (report.html, figures/) is written at the end. On Ray, every node
must see the checkpoints at the same paths (a shared filesystem).
"""


class ExecutorKind(str, Enum):
    """Where a study's units run (``--executor``)."""

    local = "local"
    ray = "ray"


def study(
    out: Annotated[Path, typer.Option("--out", help="results directory (an existing one is resumed)")] = Path("lensft-study"),
    organism: Annotated[Optional[str], typer.Option("--organism", help="organism preset: tiny, quick, full")] = None,
    base: Annotated[Optional[Path], typer.Option("--base", help="base checkpoint directory (optional)")] = None,
    short: Annotated[Optional[Path], typer.Option("--short", help="short-context SFT checkpoint directory")] = None,
    long: Annotated[Optional[Path], typer.Option("--long", help="long-context SFT checkpoint directory")] = None,
    mix: MixOpt = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="organism world seeds 0..N-1 (separately trained organisms)")] = None,
    sft_seeds: Annotated[Optional[int], typer.Option("--sft-seeds", help="organism SFT seeds 0..N-1 of every arm")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="study config YAML (options given here override it)")] = None,
    prompts: Annotated[Optional[list[str]], typer.Option("--prompts", help=f"ROLE=FILE prompt set (roles: {', '.join(PROMPT_ROLES)})")] = None,
    steps: Annotated[Optional[str], typer.Option("--steps", help=f"run only these steps (comma-separated: {', '.join(STEP_NAMES)})")] = None,
    band: Annotated[Optional[int], typer.Option("--band", help="layers per band in the per-layer swap sweep")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="do not write the report at the end")] = False,
    no_png: Annotated[bool, typer.Option("--no-png", help="skip PNG export of the figures")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    batch_size: BatchSizeOpt = None,
    executor: Annotated[ExecutorKind, typer.Option("--executor", help="where units run: here, one after another, or as "
                                               "Ray tasks on a cluster (needs lensft\\[ray])")] = ExecutorKind.local,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto (the one started on this "
                                                   "machine), HOST:PORT or ray://HOST:PORT; default: $RAY_ADDRESS, the "
                                                   "cluster on this machine or a new Ray instance here")] = None,
    gpus_per_unit: Annotated[float, typer.Option("--gpus-per-unit", help="GPUs each unit reserves on Ray")] = 0.0,
    cpus_per_unit: Annotated[float, typer.Option("--cpus-per-unit", help="CPUs (and torch threads) each unit "
                                                 "reserves on Ray")] = 1.0,
    retries: Annotated[int, typer.Option("--max-retries", help="times Ray reruns a unit that failed")] = 2,
) -> None:
    from lensft.report.pipeline import run_study

    if seeds is not None and seeds < 1:
        raise StudyConfigError("--seeds must be at least 1")
    load_options(device, dtype)  # a bad --device / --dtype is one line before any work
    cfg = StudyConfig.merged(config, {
        "organism": organism, "base": _path(base), "short": _path(short), "long": _path(long),
        "mixes": list(mix) if mix else None, "seeds": list(range(seeds)) if seeds else None, "sft_seeds": sft_seeds,
        "prompts": _roles(prompts) if prompts else None, "band": band,
        "report": False if no_report else None, "png": False if no_png else None,
        "device": device if device != "cpu" else None, "dtype": dtype.value if dtype else None, "batch_size": batch_size})
    only = _steps(steps)
    runner = _executor(executor, address, gpus_per_unit, cpus_per_unit, retries)
    if runner is not None:
        runner.check_device(load_options(cfg.device, None).device)  # the config file may name the device
    what = (f"organism {cfg.organism} (seeds {cfg.seeds}, {cfg.sft_seeds} SFT seed(s))" if cfg.is_organism
            else f"triple short={cfg.short} long={cfg.long}")
    console.print(f"[bold]lensft study[/] {what} -> {out}", soft_wrap=True)
    progress = None if quiet else TrainingProgress(err_console)
    with memory_errors_as_flags(), runner or contextlib.nullcontext(), progress or contextlib.nullcontext():
        outcome = run_study(cfg, out, console=None if quiet else err_console, only=only, organism_progress=progress,
                            executor=runner)
    _print_steps(outcome.record)
    if outcome.report:
        _print_claims(out)
        console.print(f"report: {outcome.report}")
    if outcome.failures:
        raise typer.Exit(1)


def _executor(kind: ExecutorKind, address: Optional[str], gpus: float, cpus: float, retries: int):  # noqa: ANN202
    """The executor the options ask for (None: the runner's local default)."""
    if kind is ExecutorKind.local:
        given = [f for f, v in (("--address", address), ("--gpus-per-unit", gpus), ("--max-retries", retries != 2),
                                ("--cpus-per-unit", cpus != 1.0)) if v]
        if given:
            raise StudyConfigError(f"{', '.join(given)} apply to Ray: add --executor ray")
        return None
    from lensft.study.ray_executor import RayExecutor, import_ray

    import_ray()  # a missing ray is one line before anything runs
    return RayExecutor(address=address, gpus_per_unit=gpus, cpus_per_unit=cpus, max_retries=retries)


def _path(p: Optional[Path]) -> Optional[str]:
    return None if p is None else str(p)


def _roles(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise StudyConfigError(f"--prompts takes ROLE=FILE (got {p!r}); roles: {', '.join(PROMPT_ROLES)}")
        role, path = p.split("=", 1)
        out[role.strip()] = path.strip()
    return out


def _steps(text: Optional[str]) -> Optional[set[str]]:
    if not text:
        return None
    only = {s.strip() for s in text.split(",") if s.strip()}
    bad = sorted(only - set(STEP_NAMES))
    if bad:
        raise StudyConfigError(f"--steps: unknown step(s) {', '.join(bad)}; steps are {', '.join(STEP_NAMES)}")
    return only


def _print_steps(record) -> None:  # noqa: ANN001
    t = Table(title="steps", title_justify="left")
    for c in ("step", "status", "run", "cached", "wall time (s)"):
        t.add_column(c)
    for s in record.steps:
        t.add_row(s.name, s.status, str(s.n_run), str(s.n_cached), f"{s.seconds:.1f}")
    console.print(t)
    for reason in record.skipped:
        console.print(f"[yellow]skipped[/] {escape(reason)}")
    for f in record.failures:
        console.print(f"[bold red]failed[/] {escape(f)}")


def report(
    results_dir: Annotated[Path, typer.Argument(help="a directory written by `lensft study`")],
    no_png: Annotated[bool, typer.Option("--no-png", help="skip PNG export of the figures")] = False,
) -> None:
    """Write report.html (self-contained), figures/*.html and, where Chromium is available, figures/*.png."""
    from lensft.report.render import write_report

    path = write_report(results_dir, png=not no_png)
    _print_claims(results_dir)
    console.print(f"report: {path}")


def _print_claims(results_dir: Path) -> None:
    import json

    p = Path(results_dir) / "claims.json"
    if not p.exists():
        return
    t = Table(title="the paper's claims, 95% intervals", title_justify="left")
    for c in ("#", "claim", "paper", "measured here", "verdict"):
        t.add_column(c, overflow="fold")
    for c in json.loads(p.read_text()):
        style = {"holds": "green", "contradicted": "red", "inconclusive": "white"}.get(c["verdict"], "dim")
        verdict = c["verdict"] + (f" ({c['check']})" if c.get("check") else "")
        t.add_row(str(c["id"]), c["claim"], c["paper"], c["measured"], f"[{style}]{verdict}[/]")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("study", help=STUDY_HELP)(study)
    app.command("report")(report)
