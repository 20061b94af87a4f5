"""Token encoding of knowledge-conflict items, shared by ``knowledge_preference`` and ``patch_across``.

Conventions are :mod:`lensft.probes.scoring`'s: the user turn is chat-formatted when ``chat``;
an answer is the tokens of :func:`~lensft.probes.scoring.continuation_text` appended to the
prompt tokens (tokenized separately, so the prompt's tokens never depend on the answer).
"""

from __future__ import annotations

from typing import Optional

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.scoring import continuation_text, encode_continuation, encode_prompt, prompt_text
from lensft.prompts import ConflictItem


def conflict_prompt(handle: ModelHandle, item: ConflictItem, *, chat: bool,
                    closed_book: bool = False) -> tuple[str, list[int]]:
    """(fed text, token ids) of the open prompt (context + question) or the closed-book question."""
    text = prompt_text(handle, item.closed_book_prompt if closed_book else item.prompt, chat=chat)
    return text, encode_prompt(handle, text, chat=chat)


def yes_no_prompt(handle: ModelHandle, item: ConflictItem, *, chat: bool) -> list[int]:
    """Token ids of the yes/no form; raises if the item has none."""
    if item.yn_prompt is None:
        raise LensftError(f"conflict item {item.id!r} has no yes/no form (yn_prompt)")
    return encode_prompt(handle, prompt_text(handle, item.yn_prompt, chat=chat), chat=chat)


def answer_ids(handle: ModelHandle, text: str, answer: str, *, chat: bool) -> list[int]:
    """Token ids of ``answer`` as it continues the fed prompt ``text``."""
    return encode_continuation(handle, continuation_text(text, answer, chat=chat))


def encode_answers(handle: ModelHandle, item: ConflictItem, *, chat: bool,
                   closed_book: bool = False) -> tuple[list[int], Optional[list[int]], list[int]]:
    """(prompt ids, context-answer ids or None when the item has no context answer, memory-answer ids)."""
    text, p = conflict_prompt(handle, item, chat=chat, closed_book=closed_book)
    c = None if item.context_answer is None else answer_ids(handle, text, item.context_answer, chat=chat)
    return p, c, answer_ids(handle, text, item.memory_answer, chat=chat)


def encode_conflict(handle: ModelHandle, item: ConflictItem, *, chat: bool,
                    closed_book: bool = False) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, context-answer ids, memory-answer ids) for the open (or closed-book) prompt.

    For measures that need both answers (the margin); an item whose context does not address the
    question (no ``context_answer``) raises :class:`LensftError`.
    """
    p, c, m = encode_answers(handle, item, chat=chat, closed_book=closed_book)
    if c is None:
        raise LensftError(f"conflict item {item.id!r} has no context answer (its context does not address the "
                          "question), so it has no context-vs-memory margin; drop it or give it a context_answer")
    return p, c, m
