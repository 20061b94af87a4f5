"""Prompt sets: the typed, versioned inputs every probe consumes.

A prompt set is a JSONL file whose first line is a header
``{"lensft_prompt_set": 1, "name": ..., "version": ..., "kind": ..., "description": ...}``
and whose other lines are items of that kind. Field names are documented here and in the
README so a user can write their own file without lensft.

Kinds:
- ``task``: a short-context question with a gold answer (exact match) or choices (log-likelihood).
- ``needle``: a long context with an inserted needle, for retrieval-head scoring.
- ``conflict``: a context that contradicts a memorised fact, with both answers recorded.
- ``text``: plain text with optional named character spans (for attention/FFN statistics).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

PromptKind = Literal["task", "needle", "conflict", "text"]


class Span(BaseModel):
    """A named character span ``[start, end)`` inside an item's prompt text."""

    model_config = ConfigDict(frozen=True)

    name: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Span":
        if self.end < self.start:
            raise ValueError(f"span {self.name!r} ends ({self.end}) before it starts ({self.start})")
        return self

    def check_inside(self, text: str, where: str) -> None:
        """Raise ``ValueError`` when the span runs past the end of ``text`` (``where`` names the field)."""
        if self.end > len(text):
            raise ValueError(f"span {self.name!r} [{self.start}, {self.end}) runs past the end of {where} "
                             f"({len(text)} characters)")


class TaskItem(BaseModel):
    """A short-context task item.

    ``prompt`` is the user turn (chat-formatted by the scorer when the tokenizer has a chat
    template, unless the prompt set says ``chat: false``). Greedy scoring compares the
    normalised completion to ``answer`` (or any of ``aliases``); multiple-choice scoring picks
    the choice with the highest log-likelihood and compares its index to ``label``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    task: str = Field(description="task name, e.g. 'fact_recall', 'arithmetic', 'cloze', 'reading'")
    prompt: str
    answer: str
    aliases: list[str] = Field(default_factory=list)
    choices: Optional[list[str]] = None
    label: Optional[int] = None
    reasoning: Optional[str] = Field(None, description="gold chain of thought, if the task has one")
    meta: dict = Field(default_factory=dict)


class NeedleItem(BaseModel):
    """A needle-in-a-haystack item: ``prompt`` holds the haystack with the needle at ``needle``."""

    model_config = ConfigDict(frozen=True)

    id: str
    prompt: str = Field(description="full user turn: haystack (with the needle) followed by the question")
    needle: Span = Field(description="character span of the needle answer inside prompt")
    answer: str = Field(description="the text the model should copy from the needle")
    context_tokens: int = Field(description="approximate haystack length in tokens")
    depth: float = Field(ge=0.0, le=1.0, description="relative position of the needle in the haystack")
    meta: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needle_inside(self) -> "NeedleItem":
        self.needle.check_inside(self.prompt, "prompt")
        return self


class ConflictItem(BaseModel):
    """A knowledge-conflict item: a context states a counterfactual version of a memorised fact.

    ``closed_book_prompt`` asks the question with no context (to check the model knows the
    memorised answer). ``prompt`` is the context followed by the open question. The yes/no form
    (``yn_prompt``, ``yn_label``) follows the paper: ``yn_label`` is the answer under the
    *memorised* (parametric) knowledge, so higher yes/no accuracy means following memory.
    ``context_answer`` is None when the context does not address the question (Jin et al.'s fixed
    new-knowledge sentence about another city): such items have no context answer to follow.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    domain: str = "general"
    context: str
    question: str
    prompt: str = Field(description="context + question, the user turn")
    closed_book_prompt: str
    memory_answer: str
    context_answer: Optional[str] = None
    yn_prompt: Optional[str] = None
    yn_label: Optional[bool] = None
    meta: dict = Field(default_factory=dict)


class TextItem(BaseModel):
    """Free text with optional named spans (e.g. 'reasoning', 'answer', 'passage')."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    spans: list[Span] = Field(default_factory=list)
    meta: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _spans_inside(self) -> "TextItem":
        for span in self.spans:
            span.check_inside(self.text, "text")
        return self


PromptItem = Union[TaskItem, NeedleItem, ConflictItem, TextItem]

ITEM_TYPES: dict[str, type[BaseModel]] = {
    "task": TaskItem,
    "needle": NeedleItem,
    "conflict": ConflictItem,
    "text": TextItem,
}


class PromptSetHeader(BaseModel):
    """First line of a prompt-set JSONL file."""

    model_config = ConfigDict(frozen=True)

    lensft_prompt_set: int = 1
    name: str
    version: str
    kind: PromptKind
    description: str = ""
    chat: bool = Field(True, description="format prompts with the tokenizer's chat template when it has one")


class PromptSet(BaseModel):
    """A named, versioned list of items of one kind."""

    model_config = ConfigDict(frozen=True)

    header: PromptSetHeader
    items: list[PromptItem]

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def version(self) -> str:
        return self.header.version

    @property
    def kind(self) -> str:
        return self.header.kind

    def __len__(self) -> int:
        return len(self.items)
