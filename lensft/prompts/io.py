"""Read and write prompt-set JSONL files (the only disk access for prompt sets)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from lensft.atomic import write_text_atomic
from lensft.errors import PromptSetError
from lensft.prompts.schema import ITEM_TYPES, PromptItem, PromptSet, PromptSetHeader


def read_prompt_set(path: str | os.PathLike[str]) -> PromptSet:
    """Read a prompt-set JSONL file; raise :class:`PromptSetError` naming the bad line."""
    p = Path(path)
    if not p.is_file():
        raise PromptSetError(f"prompt set {p} does not exist; pass a JSONL file written by lensft or in the documented format")
    # JSONL lines end at "\n" only: str.splitlines would also split inside JSON strings that hold
    # U+0085, U+2028 ... (JSON writers leave those unescaped). Line numbers count blank lines too.
    lines = [(i, ln) for i, ln in enumerate(p.read_text(encoding="utf-8").split("\n"), start=1) if ln.strip()]
    if not lines:
        raise PromptSetError(f"prompt set {p} is empty")
    first, head = lines[0]
    try:
        header = PromptSetHeader.model_validate(json.loads(head))
    except (json.JSONDecodeError, ValidationError) as e:
        raise PromptSetError(f"{p}:{first}: not a prompt-set header ({_first_error(e)}); the first line must be "
                             '{"lensft_prompt_set": 1, "name": ..., "version": ..., "kind": ...}') from None
    item_type = ITEM_TYPES[header.kind]
    items: list[PromptItem] = []
    for i, line in lines[1:]:
        try:
            items.append(item_type.model_validate(json.loads(line)))  # type: ignore[arg-type]
        except (json.JSONDecodeError, ValidationError) as e:
            raise PromptSetError(f"{p}:{i}: not a valid {header.kind} item ({_first_error(e)})") from None
    return PromptSet(header=header, items=items)


def write_prompt_set(prompt_set: PromptSet, path: str | os.PathLike[str]) -> Path:
    """Write a prompt set atomically (:func:`lensft.atomic.write_text_atomic`)."""
    lines = [prompt_set.header.model_dump_json()] + [item.model_dump_json() for item in prompt_set.items]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def make_prompt_set(name: str, version: str, kind: str, items: Iterable[PromptItem], **header: object) -> PromptSet:
    """Build a :class:`PromptSet` in memory."""
    return PromptSet(header=PromptSetHeader(name=name, version=version, kind=kind, **header), items=list(items))  # type: ignore[arg-type]


def _first_error(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    return str(e).splitlines()[0]
