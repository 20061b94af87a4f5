"""Names built from a small alphabet of syllables, so that copying a name from context is cheap to learn.

Every name in the organism's world, and every *novel* name a reading task invents, is a run of
capitalised consonant-vowel syllables (``KaRo``, ``LuBaSi``). The tokenizer splits names at
each capital letter (:mod:`lensft.organism.tokenizer`), so a name is a sequence of syllable
tokens drawn from :data:`SYLLABLES` (50 syllables, each with and without a leading space).
Copying an unseen name then means copying a few well-trained tokens in order, which a small
model learns early (measured: ``shared/notes/organism-feasibility.md``), instead of copying
one rare token per name, which it does not.

Novel names are split by a fixed hash into a training part and an evaluation part
(:func:`is_eval_name`), so an evaluation item's protagonist was never seen in training.
"""

from __future__ import annotations

import numpy as np

from lensft.hashing import sha256_bytes

CONSONANTS = "bdgklmnrst"
VOWELS = "aeiou"
#: The syllable alphabet, capitalised as it appears inside a name (``Ka``, ``Ro``, ...).
SYLLABLES: tuple[str, ...] = tuple((c + v).capitalize() for c in CONSONANTS for v in VOWELS)
#: Share of novel names reserved for evaluation items.
EVAL_NAME_SHARE = 0.2


def word(rng: np.random.Generator, n_syllables: int) -> str:
    """One capitalised-syllable word (``KaRoMi`` for three syllables)."""
    return "".join(SYLLABLES[int(i)] for i in rng.integers(len(SYLLABLES), size=n_syllables))


def person(rng: np.random.Generator) -> str:
    """A first and a last name of two syllables each (``KaRo MiTe``)."""
    return f"{word(rng, 2)} {word(rng, 2)}"


def is_eval_name(name: str) -> bool:
    """Whether a novel name belongs to the evaluation part (a fixed hash of the name)."""
    return int(sha256_bytes(name.encode("utf-8"))[:8], 16) / 16**8 < EVAL_NAME_SHARE


class NovelNames:
    """Draws names that are not in the world, from the training or the evaluation part only.

    Args:
        taken: words the world's names already use (a novel name uses none of them).
        rng: the random stream.
        eval_part: draw evaluation names (True) or training names (False).
    """

    def __init__(self, taken: set[str], rng: np.random.Generator, *, eval_part: bool):
        self.taken, self.rng, self.eval_part = taken, rng, eval_part

    def _draw(self, make) -> str:
        while True:
            name = make()
            if is_eval_name(name) == self.eval_part and not any(w in self.taken for w in name.split()):
                return name

    def person(self) -> str:
        """A novel person's name."""
        return self._draw(lambda: person(self.rng))

    def city(self) -> str:
        """A novel city's name (three syllables)."""
        return self._draw(lambda: word(self.rng, 3))
