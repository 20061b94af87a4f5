"""Offline haystack text: seeded, grammatical filler prose for needle-in-a-haystack prompts.

Wu et al. (2024) fill the haystack with Paul Graham's essays, which lensft may not ship. This
generator writes plain English narrative instead: sentences assembled from hand-written
phrase lists (people, places, actions, objects, times) in several sentence shapes, grouped
into paragraphs. The combinations run to the billions, so a 4k-token haystack does not repeat
itself (repetition would invite the copy-paste attention that retrieval scoring looks for).
The filler holds no digits and never mentions a "magic number" or "the best thing to do", so
it cannot compete with the needles of :mod:`lensft.prompts.needles`.
"""

from __future__ import annotations

import random
from typing import Iterator

PEOPLE = (
    "the old ferryman", "a travelling merchant", "the village council", "my grandmother", "the night watchman",
    "a young apprentice", "the schoolteacher", "a retired sailor", "the baker's daughter", "a group of engineers",
    "the head gardener", "an elderly bookbinder", "the harbour master", "a pair of cartographers",
    "the choir director", "a quiet stonemason", "the lighthouse keeper", "a visiting historian", "the weaver",
    "the innkeeper's son", "a shepherd from the hills", "the mayor's secretary", "a clockmaker", "the potter",
)
PLACES = (
    "the northern valley", "the old market square", "a fishing village", "the mountain pass", "the river delta",
    "the eastern quarter", "a hill town", "the salt marshes", "the cathedral close", "the harbour district",
    "a farming hamlet", "the pine forest", "the upper meadows", "the canal bank", "the walled garden",
    "the railway yard", "a coastal town", "the copper mines", "the open moor", "the university library",
)
ACTIONS = (
    "spent the winter repairing", "argued for hours about", "wrote a long letter describing", "carefully measured",
    "made a rough sketch of", "told a story about", "kept a diary about", "asked the neighbours about",
    "spent an afternoon cleaning", "could not stop thinking about", "slowly rebuilt", "found an old drawing of",
    "complained loudly about", "quietly admired", "tried to sell", "read aloud a passage about",
    "searched the attic for", "painted a picture of", "gave a short speech about", "forgot all about",
)
OBJECTS = (
    "the broken lighthouse lamp", "the price of salt", "a forgotten recipe for rye bread", "the leaking roof",
    "the mill wheel", "a box of letters", "the bell tower", "the faded tapestry", "the stone bridge",
    "a cart of apples", "the winter stores", "the ship's figurehead", "the crooked chimney", "the orchard wall",
    "a collection of sea shells", "the parish records", "the ferry timetable", "the cracked church window",
    "a set of brass scales", "the flooded cellar", "a map of the coastline", "the village well",
)
TIMES = (
    "before the first snow arrived", "while the rain kept falling", "as the market emptied",
    "during the long summer evenings", "early in the spring", "after the harvest was in",
    "late one autumn night", "when the tide was out", "on the morning of the fair", "as the bells rang for noon",
    "while the kettle boiled", "long after the lamps were lit", "before anyone else was awake",
    "in the weeks after the storm",
)
REMARKS = (
    "Nobody could agree on what had gone wrong", "It was the kind of work that nobody noticed until it stopped",
    "Some of the neighbours thought it was a waste of time", "Everyone remembered that season for a long while",
    "The weather had been strange all year", "Most people in town had an opinion about it",
    "The work was slower than anyone expected", "It seemed a small thing at the time",
    "Later that week the wind changed direction", "There was a great deal of talk at the inn",
    "The old records said very little about it", "Patience turned out to matter more than skill",
)
DEEDS = ("repaired", "sold", "painted", "measured", "lost", "found", "described", "moved", "cleaned", "borrowed",
         "restored", "hidden")
FEELINGS = ("pleased", "tired", "puzzled", "relieved", "restless", "hopeful", "worried", "content", "amused")
ADJECTIVES = ("narrow", "quiet", "crowded", "windy", "muddy", "bright", "damp", "peaceful", "busy", "cold")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentence(rng: random.Random) -> str:
    """One filler sentence in one of several shapes."""
    c = rng.choice
    shape = rng.randrange(7)
    if shape == 0:
        return f"{_cap(c(PEOPLE))} {c(ACTIONS)} {c(OBJECTS)} {c(TIMES)}."
    if shape == 1:
        return f"In {c(PLACES)}, {c(PEOPLE)} {c(ACTIONS)} {c(OBJECTS)}."
    if shape == 2:
        return f"{c(REMARKS)}, and {c(PEOPLE)} felt {c(FEELINGS)} about {c(OBJECTS)}."
    if shape == 3:
        return f"{_cap(c(TIMES))}, the streets of {c(PLACES)} were {' and '.join(rng.sample(ADJECTIVES, 2))}."
    if shape == 4:
        return f"{_cap(c(PEOPLE))} said that {c(PEOPLE)} had once {c(DEEDS)} {c(OBJECTS)}."
    if shape == 5:
        return f"{c(REMARKS)}, {c(PEOPLE)} said {c(TIMES)}."
    return f"Few people in {c(PLACES)} knew that {c(PEOPLE)} {c(ACTIONS)} {c(OBJECTS)}."


def filler_paragraphs(seed: int) -> Iterator[list[str]]:
    """An endless, seeded stream of paragraphs, each a list of 3 to 8 sentences."""
    rng = random.Random(seed)
    while True:
        yield [_sentence(rng) for _ in range(rng.randint(3, 8))]
