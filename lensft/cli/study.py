"""``lensft study`` (the paper's experiments end to end) and ``lensft report RESULTS_DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from lensft.study.config import STEP_NAMES, StudyConfig, StudyConfigError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

STUDY_HELP = """Run the paper's analysis on a checkpoint triple and write a self-contained report.

Examples:

  lensft study --organism quick --out runs/quick            # the model organism (built or cached)

  lensft study --base B --short S --long L --out runs/mine  # your own triple (mixes are skipped)

Results are cached per step under --out: rerunning resumes an interrupted study, and a changed
step reruns alone. The report (report.html, figures/) is written at the end.
"""


def study(
    out: Annotated[Path, typer.Option("--out", help="results directory (an existing one is resumed)")] = Path("lensft-study"),
    organism: Annotated[Optional[str], typer.Option("--organism", help="organism preset: quick, full (or tiny)")] = None,
    base: Annotated[Optional[Path], typer.Option("--base", help="base checkpoint directory (optional)")] = None,
    short: Annotated[Optional[Path], typer.Option("--short", help="short-context SFT checkpoint directory")] = None,
    long: Annotated[Optional[Path], typer.Option("--long", help="long-context SFT checkpoint directory")] = None,
    mix: Annotated[Optional[list[float]], typer.Option("--mix", help="organism hybrid mix (long-data fraction), repeatable")] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="organism seeds 0..N-1 (confidence intervals across seeds)")] = 1,
    config: Annotated[Optional[Path], typer.Option("--config", help="study config YAML (options given here override it)")] = None,
    prompts: Annotated[Optional[list[str]], typer.Option("--prompts", help="ROLE=FILE prompt set (roles: tasks, needle, conflict, spread, ffn)")] = None,
    steps: Annotated[Optional[str], typer.Option("--steps", help=f"run only these steps (comma-separated: {', '.join(STEP_NAMES)})")] = None,
    band: Annotated[Optional[int], typer.Option("--band", help="layers per band in the per-layer swap sweep")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="do not write the report at the end")] = False,
    no_png: Annotated[bool, typer.Option("--no-png", help="skip PNG export of the figures")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    from lensft.report.pipeline import run_study as run

    data = StudyConfig.read_options(config) if config else {}
    if organism or short or long or base:
        for k in ("organism", "base", "short", "long"):
            data.pop(k, None)
    if organism:
        data["organism"] = organism
    for k, v in (("base", base), ("short", short), ("long", long)):
        if v is not None:
            data[k] = str(v)
    if mix:
        data["mixes"] = list(mix)
    if seeds != 1 or "seeds" not in data:
        if seeds < 1:
            raise StudyConfigError("--seeds must be at least 1")
        data["seeds"] = list(range(seeds))
    if prompts:
        roles = dict(data.get("prompts", {}))
        for p in prompts:
            if "=" not in p:
                raise StudyConfigError(f"--prompts takes ROLE=FILE (got {p!r}); roles: tasks, needle, conflict, spread, ffn")
            role, path = p.split("=", 1)
            roles[role.strip()] = path.strip()
        data["prompts"] = roles
    if band is not None:
        data["band"] = band
    if no_report:
        data["report"] = False
    if no_png:
        data["png"] = False
    if not data.get("organism") and not (data.get("short") and data.get("long")):
        data["organism"] = "quick"  # the default triple: the model organism
    cfg = StudyConfig.validate_dict(data, where="study options")
    only = None
    if steps:
        only = {s.strip() for s in steps.split(",") if s.strip()}
        bad = sorted(only - set(STEP_NAMES))
        if bad:
            raise StudyConfigError(f"unknown step(s) {', '.join(bad)}; steps are {', '.join(STEP_NAMES)}")
    what = f"organism {cfg.organism} (seeds {cfg.seeds})" if cfg.is_organism else f"triple short={cfg.short} long={cfg.long}"
    err_console.print(f"[bold]lensft study[/] {what} -> {out}")
    outcome = run(cfg, out, console=None if quiet else err_console, only=only)

    t = Table(title="steps", title_justify="left")
    for c in ("step", "status", "run", "cached", "wall time (s)"):
        t.add_column(c)
    for s in outcome.manifest["steps"]:
        t.add_row(s["name"], s["status"], str(s["n_run"]), str(s["n_cached"]), f"{s['seconds']:.1f}")
    console.print(t)
    for reason in outcome.skipped:
        console.print(f"[yellow]skipped[/] {reason}")
    for f in outcome.failures:
        console.print(f"[bold red]failed[/] {f}")
    if outcome.report:
        _print_claims(out)
        console.print(f"report: {outcome.report}")
    if outcome.failures:
        raise typer.Exit(1)


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
    t = Table(title="claims (paper §7)", title_justify="left")
    for c in ("#", "claim", "paper", "measured", "here"):
        t.add_column(c, overflow="fold")
    for c in json.loads(p.read_text()):
        style = {"holds": "green", "does not hold": "red"}.get(c["verdict"], "dim")
        t.add_row(str(c["id"]), c["claim"], c["paper"], c["measured"], f"[{style}]{c['verdict']}[/]")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("study", help=STUDY_HELP)(study)
    app.command("report")(report)
