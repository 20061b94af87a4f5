"""``lensft organism build|info``: train (or find in the cache) the model organism and describe it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from lensft.cli.options import MixOpt

console = Console(highlight=False)

PresetArg = Annotated[str, typer.Argument(help="organism preset: quick (a few minutes), full (about an hour "
                                                "from scratch), tiny (seconds, learns little)", metavar="PRESET")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="the world's seed (default: the preset's); another "
                                                                "seed than the shipped base's pretrains a base")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="build directory (default: the cache, "
                                                              "$LENSFT_CACHE/organism/<config hash>)")]
ScratchOpt = Annotated[bool, typer.Option("--from-scratch", help="pretrain the base instead of copying the shipped one")]
SftSeedsOpt = Annotated[Optional[int], typer.Option("--sft-seeds", min=1, help="train every arm this many times from "
                                                                               "the one base (SFT seeds 0..N-1)")]


def register(app: typer.Typer) -> None:
    """Add the ``organism`` sub-app (``build``, ``info``) to ``app``."""
    org = typer.Typer(help="Train lensft's own base / short / long / mix model family on the CPU.",
                      no_args_is_help=True)

    @org.command("build")
    def build_cmd(preset: PresetArg, mix: MixOpt = None, sft_seeds: SftSeedsOpt = None, from_scratch: ScratchOpt = False,
                  seed: SeedOpt = None, out: OutOpt = None,
                  rebuild: Annotated[bool, typer.Option("--rebuild", help="delete the build directory and train again")] = False) -> None:
        """Build the organism (instant when it is already built; only missing arms are trained)."""
        import transformers

        from lensft import organism
        from lensft.cli.progress import TrainingProgress

        transformers.utils.logging.disable_progress_bar()
        with TrainingProgress(console) as progress:
            b = organism.build(preset, seed=seed, mixes=mix, sft_seeds=sft_seeds, from_scratch=from_scratch, out=out,
                               rebuild=rebuild, progress=progress)
        print_build(b)

    @org.command("info")
    def info_cmd(preset: PresetArg, seed: SeedOpt = None, out: OutOpt = None, from_scratch: ScratchOpt = False,
                 evaluate: Annotated[bool, typer.Option("--eval", help="score every checkpoint on the held-out sets "
                                                                       "with lensft's probes")] = False) -> None:
        """Describe a built organism: where it is, its checkpoints, and what each training stage saw."""
        import transformers

        from lensft import organism

        transformers.utils.logging.disable_progress_bar()
        cfg = organism.preset(preset).with_overrides(seed=seed)
        b = organism.load(out if out is not None else organism.build_dir(cfg, from_scratch=from_scratch))
        print_build(b)
        if evaluate:
            print_scores(b)

    app.add_typer(org, name="organism")


def print_build(b) -> None:
    """The build's checkpoints and what each training stage saw."""
    cfg, m = b.config, b.manifest
    mc = cfg.base.model
    console.print(f"[bold]organism[/] {cfg.name} (seed {cfg.seed}) at {b.root}")
    console.print(f"world: {cfg.base.world.n_people} people, {cfg.base.world.n_cities} cities, "
                  f"{cfg.base.world.n_countries} countries, {cfg.base.world.n_companies} companies; model: Llama "
                  f"d={mc.hidden_size} L={mc.n_layers} heads={mc.n_heads}/{mc.n_kv_heads} kv; base "
                  f"{m.base.origin if m.base else '?'}")
    t = Table("checkpoint", "path", "examples", "tokens", "answer tokens", "seconds", "tokens/s")
    if m.base is not None:
        tr = m.base.training
        t.add_row("base", m.base.path, "", f"{tr.tokens:,}", f"{tr.answer_tokens:,}", f"{tr.seconds:.0f}", f"{tr.tokens_per_s:,.0f}")
    for a in m.arms:
        tr = a.training
        t.add_row(a.arm.label, a.path, f"{a.examples:,} ({a.long_examples:,} long)", f"{tr.tokens:,}",
                  f"{tr.answer_tokens:,}", f"{tr.seconds:.0f}", f"{tr.tokens_per_s:,.0f}")
    console.print(t)
    if m.arms:
        console.print(f"arms differ by at most {100 * m.spread('tokens'):.1f}% in tokens and "
                      f"{100 * m.spread('answer_tokens'):.1f}% in answer tokens")
    console.print("prompt sets: " + ", ".join(b.prompt_sets))


def print_scores(b) -> None:
    """Every checkpoint scored by lensft's probes on the held-out sets."""
    from lensft.organism.evaluate import evaluate_build

    scores = evaluate_build(b)
    tasks = sorted({n for s in scores.values() for n in s.accuracy})
    t = Table("checkpoint", *tasks, "needle copy", "retrieval heads", "conflict ctx / mem", title="greedy exact match, "
              "held-out sets", title_justify="left")
    for label, s in scores.items():
        c = s.conflict
        t.add_row(label, *(f"{s.accuracy[n]:.2f}" for n in tasks),
                  "" if s.needle_copy_accuracy is None else f"{s.needle_copy_accuracy:.2f}",
                  "" if s.n_retrieval_heads is None else str(s.n_retrieval_heads),
                  f"{c.get('ctx_follow_rate') or 0:.2f} / {c.get('mem_follow_rate') or 0:.2f}" if c else "")
    console.print(t)
