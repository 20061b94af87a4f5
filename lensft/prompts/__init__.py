"""Typed, versioned prompt sets that probes consume."""

from lensft.prompts.io import make_prompt_set, read_prompt_set, write_prompt_set
from lensft.prompts.needles import NEEDLE_STYLES, build_needle_item, build_needle_set
from lensft.prompts.ops import cap_per_task, combine, content_hash
from lensft.prompts.schema import (
    ConflictItem,
    NeedleItem,
    PromptItem,
    PromptSet,
    PromptSetHeader,
    Span,
    TaskItem,
    TextItem,
)

__all__ = [
    "NEEDLE_STYLES",
    "ConflictItem",
    "NeedleItem",
    "PromptItem",
    "PromptSet",
    "PromptSetHeader",
    "Span",
    "TaskItem",
    "TextItem",
    "build_needle_item",
    "build_needle_set",
    "cap_per_task",
    "combine",
    "content_hash",
    "make_prompt_set",
    "read_prompt_set",
    "write_prompt_set",
]
