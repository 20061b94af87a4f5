"""``lensft needles``: write a Wu et al.-style needle-in-a-haystack prompt set of any length."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from lensft.errors import LensftError, OutputExists
from lensft.prompts.needles import MIN_LENGTH

console = Console(highlight=False, soft_wrap=True)

NEEDLES_HELP = """Write a needle-in-a-haystack prompt set (Wu et al. 2024 format) for the retrieval_heads probe.

Each item hides a needle sentence at a random depth of offline filler text of about --length
tokens (repeat --length for several lengths) and asks for it.

  lensft needles --length 1000 --length 4000 --items 10 --tokenizer smollm2 --out needles.jsonl

  lensft probe retrieval_heads --model smollm2 --prompts needles.jsonl

--tokenizer sizes the haystacks in that checkpoint's tokens (otherwise lengths are estimated).
"""


def needles(
    out: Annotated[Path, typer.Option("--out", help="prompt-set JSONL file to write")],
    length: Annotated[Optional[list[int]], typer.Option("--length", help="haystack length in tokens (repeatable) [default: 1000 and 4000]")] = None,
    items: Annotated[int, typer.Option("--items", help="items per length")] = 10,
    style: Annotated[str, typer.Option("--style", help="needle style: wu ('the best thing to do in ...') or magic_number")] = "wu",
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="checkpoint directory whose tokenizer counts the tokens")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of needles, depths and filler")] = 0,
    chat: Annotated[bool, typer.Option("--chat/--no-chat", help="let probes chat-format the prompts")] = True,
    force: Annotated[bool, typer.Option("--force", help="replace an existing --out")] = False,
) -> None:
    from lensft.prompts import NEEDLE_STYLES, build_needle_set, write_prompt_set

    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to replace it or choose another --out")
    if items < 1:
        raise LensftError(f"--items {items}: give at least 1")
    if style not in NEEDLE_STYLES:
        raise LensftError(f"--style {style}: choose one of {', '.join(NEEDLE_STYLES)}")
    lengths = tuple(length or (1000, 4000))
    if min(lengths) < MIN_LENGTH:
        raise LensftError(f"--length {min(lengths)}: a haystack needs at least {MIN_LENGTH} tokens")
    tok = _load_tokenizer(tokenizer) if tokenizer is not None else None
    ps = build_needle_set(lengths, items, style=style, seed=seed, tokenizer=tok, chat=chat)
    write_prompt_set(ps, out)
    sizes = sorted({it.context_tokens for it in ps.items})
    console.print(f"saved {out}: {len(ps)} {style} needles, haystacks of {sizes[0]}..{sizes[-1]} tokens"
                  f"{'' if tok is not None else ' (estimated; pass --tokenizer to count exactly)'}")


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        raise LensftError(f"--tokenizer {path}: no tokenizer files there; pass a checkpoint directory")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise LensftError(f"--tokenizer {path}: cannot load its tokenizer ({str(e).splitlines()[0]})") from None


def register(app: typer.Typer) -> None:
    app.command("needles", help=NEEDLES_HELP, no_args_is_help=True)(needles)
