"""Character spans of prompt text mapped onto tokens (shared by every probe that reads spans)."""

from __future__ import annotations


def char_span_to_tokens(offsets: list[tuple[int, int]], start: int, end: int) -> list[bool]:
    """Which tokens overlap the character span ``[start, end)``.

    ``offsets`` are the tokenizer's ``(char_start, char_end)`` per token (an offsets mapping);
    special tokens, whose offsets are empty, never overlap.
    """
    return [e > b and b < end and e > start for b, e in offsets]
