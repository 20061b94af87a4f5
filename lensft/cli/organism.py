"""``lensft organism build|info``: train (or find in the cache) the model organism and describe it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

console = Console(highlight=False)

PresetOpt = Annotated[str, typer.Option("--preset", help="organism preset: quick (about 3 min), full (about 20 min), test (seconds)")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="seed of the world, data and training (default: the preset's)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="build directory (default: the cache, $LENSFT_CACHE/organism/<config hash>)")]
MixOpt = Annotated[list[str] | None, typer.Option(
    "--mix", help="fractions of long SFT data to build besides the pure arms, comma-separated or repeated, "
                  "e.g. --mix 0,0.5,1 (0 = short arm, 1 = long arm; both are always built)")]


def parse_mixes(values: list[str] | None) -> list[float] | None:
    """``["0,0.5", "1"]`` -> ``[0.0, 0.5, 1.0]``; None when no --mix was given."""
    if not values:
        return None
    out: list[float] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                m = float(part)
            except ValueError:
                raise typer.BadParameter(f"{part!r} is not a number; give long-data fractions like 0,0.5,1",
                                         param_hint="--mix") from None
            if not 0.0 <= m <= 1.0:
                raise typer.BadParameter(f"{m} is not a fraction in [0, 1]", param_hint="--mix")
            out.append(m)
    return out


def _progress_bar() -> tuple[Progress, callable]:
    progress = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=console, transient=False)
    tasks: dict[str, int] = {}

    def update(stage: str, step: int, total: int, loss: float) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, loss=loss)
        progress.update(tasks[stage], completed=step, loss=loss)

    return progress, update


def register(app: typer.Typer) -> None:
    """Add the ``organism`` sub-app (``build``, ``info``) to ``app``."""
    org = typer.Typer(help="Train lensft's own base / short / long / hybrid model family on the CPU.",
                      no_args_is_help=True)

    @org.command("build")
    def build_cmd(preset: PresetOpt = "quick", mix: MixOpt = None, seed: SeedOpt = None, out: OutOpt = None,
                  rebuild: Annotated[bool, typer.Option("--rebuild", help="delete the build directory and train again")] = False) -> None:
        """Build the organism (instant when the same configuration is already cached)."""
        import transformers

        from lensft import organism

        transformers.utils.logging.disable_progress_bar()
        progress, update = _progress_bar()
        with progress:
            b = organism.build(preset, seed=seed, mixes=parse_mixes(mix), out=out, rebuild=rebuild, progress=update)
        _print_build(b)

    @org.command("info")
    def info_cmd(preset: PresetOpt = "quick", seed: SeedOpt = None, out: OutOpt = None,
                 evaluate: Annotated[bool, typer.Option("--eval", help="score every checkpoint on the task and conflict sets (greedy)")] = False) -> None:
        """Describe a built organism: where it is, what it holds, how long each stage took."""
        from lensft import organism

        cfg = organism.preset(preset).with_overrides(seed=seed)
        root = out if out is not None else organism.default_cache_dir() / cfg.cache_key()
        b = organism.load(root)
        _print_build(b)
        if evaluate:
            _print_eval(b)

    app.add_typer(org, name="organism")


def _print_build(b) -> None:
    cfg = b.config
    m = cfg.model
    console.print(f"[bold]organism[/] {cfg.name} (seed {cfg.seed}) at {b.root}")
    console.print(f"world: {cfg.world.n_people} people, {cfg.world.n_cities} cities, {cfg.world.n_countries} countries, "
                  f"{cfg.world.n_companies} companies; model: Llama d={m.hidden_size} L={m.n_layers} "
                  f"heads={m.n_heads}/{m.n_kv_heads} kv; pretrain rows {cfg.pretrain.seq_len} tokens")
    t = Table("checkpoint", "path", "seconds", "tokens", "tokens/s")
    for name, path in b.checkpoints.items():
        s = b.stages.get(name, {})
        t.add_row(name, str(path), str(s.get("seconds", "")), str(s.get("tokens", "")), str(s.get("tokens_per_s", "")))
    console.print(t)
    console.print("prompt sets: " + ", ".join(f"{n} ({p.name})" for n, p in b.prompt_sets.items()))


def _print_eval(b) -> None:
    from lensft.organism.evaluate import evaluate_checkpoint

    sets = {n: p for n, p in b.prompt_sets.items() if n != "needle"}
    rows = {name: evaluate_checkpoint(path, sets, num_threads=b.config.num_threads) for name, path in b.checkpoints.items()}
    task_names = [n for n in sets if n != "conflict"]
    t = Table("checkpoint", *task_names, "conflict: context", "memory", "yn memory acc")
    for name, r in rows.items():
        c = r.get("conflict", {})
        t.add_row(name, *(f"{r[n]['accuracy']:.2f}" for n in task_names),
                  f"{c.get('context_rate', 0):.2f}", f"{c.get('memory_rate', 0):.2f}", f"{c.get('yn_memory_accuracy', 0):.2f}")
    console.print(t)
