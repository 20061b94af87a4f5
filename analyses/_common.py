# Shared set-up for the analyses notebooks: which organism, where, and how many items per set.
# LENSFT_ORGANISM (quick | full | tiny), LENSFT_ORGANISM_DIR (build directory; default: the cache),
# LENSFT_MAX_ITEMS (items per task; default 40).
import os

from lensft import organism
from lensft.checkpoints.load import load_triple
from lensft.prompts import read_prompt_set
from lensft.prompts import cap_per_task

PRESET = os.environ.get("LENSFT_ORGANISM", "quick")
MAX_ITEMS = int(os.environ.get("LENSFT_MAX_ITEMS", "40"))


def load_organism(mixes=None):
    """Build (or load from cache) the organism; return (build, triple, prompt sets by name)."""
    out = os.environ.get("LENSFT_ORGANISM_DIR")
    b = organism.build(PRESET, mixes=mixes, out=out)
    triple = load_triple(base=b.base, short=b.short, long=b.long)
    sets = {name: cap_per_task(read_prompt_set(p), MAX_ITEMS) for name, p in b.prompt_sets.items()}
    return b, triple, sets
