"""Needle-in-a-haystack prompt sets in the format of Wu et al. 2024 (arXiv 2404.15574), built offline.

Each item hides one *needle sentence* at a random depth of a haystack of about ``length``
tokens and asks for it, exactly in Wu et al.'s prompt words::

    <book>{haystack with the needle}</book>
    Based on the content of the book, Question: {question}
    Answer:

The item's ``answer`` is the part of the needle the model must copy (Wu et al.'s
``real_needle``) and ``needle`` is its character span in the prompt, which the
``retrieval_heads`` probe maps to tokens. Two needle styles:

- ``wu``: Wu et al.'s "best thing to do" needle, e.g. *The best thing to do in Lisbon is to
  ride the old tram up the hill and eat grilled sardines by the harbour.* (answer: the
  activities). City and activities are drawn at random per item, so the model cannot answer
  from memory.
- ``magic_number``: *The special magic number for Lisbon is 4072915.* (answer: the 7 digits).

Differences from Wu et al.: the haystack is lensft's own filler prose
(:mod:`lensft.prompts.haystack`) instead of Paul Graham's essays; needles are drawn from
phrase lists instead of Wu et al.'s three fixed needles; the needle goes between two sentences
at a stratified random depth (item i of n in ``[i/n, (i+1)/n)``) instead of a fixed depth grid;
``length`` counts the haystack (with the needle), not the whole prompt; and the ``<book>`` tags
are kept for plain (non-chat) prompts too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from lensft.errors import PromptSetError
from lensft.prompts.haystack import filler_paragraphs
from lensft.prompts.io import make_prompt_set
from lensft.prompts.schema import NeedleItem, PromptSet, Span

NEEDLE_STYLES: tuple[str, ...] = ("wu", "magic_number")

#: Tokens per whitespace word of the filler, used when no tokenizer counts the tokens
#: (1.16 measured with SmolLM2's BPE tokenizer on 25k words of this filler).
TOKENS_PER_WORD = 1.17
#: Shortest haystack (tokens) a needle item is built with.
MIN_LENGTH = 64
_MAX_MISSES = 32

CITIES = (
    "Lisbon", "Oslo", "Nairobi", "Kyoto", "Montreal", "Valparaiso", "Tbilisi", "Hanoi", "Reykjavik", "Seville",
    "Krakow", "Marrakesh", "Adelaide", "Cusco", "Bergen", "Istanbul", "Tallinn", "Quebec", "Porto", "Salzburg",
    "Havana", "Zanzibar", "Edinburgh", "Ljubljana", "Bruges", "Cartagena", "Melbourne", "Vancouver", "Dubrovnik",
    "Granada", "Helsinki", "Lima", "Santiago", "Bologna", "Antwerp", "Galway", "Cairo", "Mumbai", "Seoul", "Manila",
)
ACTIVITIES = (
    "ride the old tram up the hill", "eat grilled sardines by the harbour", "take a walk along the river at dusk",
    "drink a cup of mint tea in the covered market", "climb the tower before sunrise",
    "rent a bicycle and follow the canal", "listen to a string quartet in the cathedral",
    "swim in the cold lake near the station", "buy fresh bread from the corner bakery",
    "watch the fishing boats come in", "visit the glass museum on a rainy afternoon",
    "sit in the botanical garden with a good book", "share a plate of dumplings with friends",
    "walk across the stone bridge at midnight", "take the ferry to the small island",
    "browse the second hand bookshops", "hike to the waterfall above the town",
    "try the spicy noodle soup at the night market", "paint the rooftops from the old fort",
    "join the locals dancing in the square", "picnic on the grass beside the castle",
    "sail a small boat around the bay", "explore the caves under the old town",
    "eat an ice cream on the pier in the evening",
)


@dataclass(frozen=True)
class Needle:
    """One needle: the sentence hidden in the haystack, the part to copy, and the question."""

    sentence: str
    answer: str
    question: str

    def __post_init__(self) -> None:
        assert self.answer in self.sentence


def draw_needle(style: str, rng: random.Random) -> Needle:
    """A random needle of ``style`` (``wu`` or ``magic_number``)."""
    city = rng.choice(CITIES)
    if style == "wu":
        a, b = rng.sample(ACTIVITIES, 2)
        answer = f"{a} and {b}"
        return Needle(f"The best thing to do in {city} is to {answer}.", answer,
                      f"What is the best thing to do in {city}?")
    if style == "magic_number":
        answer = str(rng.randrange(1_000_000, 10_000_000))
        return Needle(f"The special magic number for {city} is {answer}.", answer,
                      f"What is the special magic number for {city}?")
    raise PromptSetError(f"unknown needle style {style!r}; choose one of {', '.join(NEEDLE_STYLES)}")


def estimate_tokens(text: str) -> int:
    """Approximate token count of filler prose (:data:`TOKENS_PER_WORD` per whitespace word)."""
    return round(len(text.split()) * TOKENS_PER_WORD)


def needle_prompt(haystack: str, question: str) -> str:
    """Wu et al.'s needle prompt around a haystack (the user turn)."""
    return f"<book>{haystack}</book>\nBased on the content of the book, Question: {question}\nAnswer:"


def _filler(budget: int, seed: int, count: Callable[[str], int]) -> list[tuple[int, str, int]]:
    """Filler sentences ``(paragraph, sentence, tokens)`` adding up to at most ``budget`` tokens:
    a sentence that would overflow is skipped for a shorter one, up to :data:`_MAX_MISSES` times."""
    flat: list[tuple[int, str, int]] = []
    total = misses = 0
    for p, para in enumerate(filler_paragraphs(seed)):
        for s in para:
            sep = "" if not flat else (" " if flat[-1][0] == p else "\n\n")
            c = count(sep + s)
            if flat and total + c > budget:
                misses += 1
                if misses > _MAX_MISSES or total == budget:
                    return flat
                continue
            flat.append((p, s, c))
            total += c
    raise AssertionError("unreachable: the filler stream is endless")


def build_haystack(length: int, needle: Needle, depth: float, seed: int,
                   count: Callable[[str], int]) -> tuple[str, int, float]:
    """Filler of about ``length`` tokens (needle included) with the needle sentence between two
    sentences at relative position ``depth`` (0 = first, 1 = last).

    Returns ``(haystack, needle_sentence_char_start, actual_depth)``; the actual depth is the
    share of filler tokens before the needle.
    """
    flat = _filler(length - count(" " + needle.sentence), seed, count)
    total = sum(c for _, _, c in flat)
    k = min(len(flat), max(0, round(depth * len(flat))))
    before = sum(c for _, _, c in flat[:k])
    flat.insert(k, (flat[k - 1][0] if k else flat[0][0], needle.sentence, 0))
    text, start, prev = "", -1, None
    for i, (p, s, _) in enumerate(flat):
        if prev is not None:
            text += " " if p == prev else "\n\n"
        if i == k:
            start = len(text)
        text += s
        prev = p
    return text, start, before / total if total else 0.0


def build_needle_item(item_id: str, length: int, depth: float, *, style: str = "wu", seed: int = 0,
                      count_tokens: Optional[Callable[[str], int]] = None) -> NeedleItem:
    """One Wu-style needle item with a haystack of about ``length`` tokens (see the module doc).

    ``count_tokens`` counts the tokens of a string with the model's tokenizer; without it the
    length is estimated (:func:`estimate_tokens`).
    """
    if length < MIN_LENGTH:
        raise PromptSetError(f"needle haystack length {length} is too short; use at least {MIN_LENGTH} tokens")
    rng = random.Random(f"lensft-needle/{seed}/{item_id}")
    needle = draw_needle(style, rng)
    count = count_tokens or estimate_tokens
    hay, sent_start, actual = build_haystack(length, needle, depth, rng.randrange(2**31), count)
    prompt = needle_prompt(hay, needle.question)
    start = len("<book>") + sent_start + needle.sentence.index(needle.answer)
    assert prompt[start:start + len(needle.answer)] == needle.answer
    return NeedleItem(
        id=item_id, prompt=prompt, needle=Span(name="needle", start=start, end=start + len(needle.answer)),
        answer=needle.answer, context_tokens=count(hay), depth=round(actual, 4),
        meta={"style": style, "question": needle.question, "needle_sentence": needle.sentence,
              "target_tokens": length, "target_depth": round(depth, 4),
              "counted": "tokenizer" if count_tokens else "estimate"},
    )


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """``text -> number of tokens`` with a Hugging Face tokenizer (no special tokens)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_needle_set(lengths: Sequence[int] = (1000, 4000), items_per_length: int = 10, *, style: str = "wu",
                     seed: int = 0, tokenizer: Any = None, chat: bool = True,
                     name: Optional[str] = None) -> PromptSet:
    """A needle prompt set: ``items_per_length`` items at each haystack length (tokens).

    Item ``i`` of ``n`` at a length puts its needle at a depth drawn uniformly from
    ``[i/n, (i+1)/n)`` (stratified, so depths cover the haystack). Deterministic in ``seed``
    (and the tokenizer). Pass the model's ``tokenizer`` to size haystacks in its tokens;
    without one lengths are estimated from word counts (within a few percent for English BPE
    tokenizers). ``chat`` goes into the header: whether probes chat-format the prompts.
    """
    count_tokens = token_counter(tokenizer) if tokenizer is not None else None
    if style not in NEEDLE_STYLES:
        raise PromptSetError(f"unknown needle style {style!r}; choose one of {', '.join(NEEDLE_STYLES)}")
    if items_per_length < 1 or not lengths:
        raise PromptSetError("a needle set needs at least one length and one item per length")
    items = []
    for length in lengths:
        rng = random.Random(f"lensft-needle-depths/{seed}/{length}")
        for i in range(items_per_length):
            depth = (i + rng.random()) / items_per_length
            items.append(build_needle_item(f"needle-{length}-{i}", length, depth, style=style, seed=seed,
                                           count_tokens=count_tokens))
    label = "+".join(str(n) for n in lengths)
    return make_prompt_set(
        name or f"needle_{style}_{label}", "1", "needle", items, chat=chat,
        description=f"Wu et al.-style needles ({style}) in lensft filler at {label} tokens, "
                    f"{items_per_length} per length, seed {seed}")
