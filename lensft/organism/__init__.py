"""The model organism: a base / short-SFT / long-SFT / hybrid Llama family trained on CPU.

``build("quick")`` trains (or loads from cache) a small Llama-architecture base model on a
synthetic world, then SFT arms on short-context data, long-context data and mixtures of the two
(same tasks, same facts, same token budget), and writes held-out prompt sets. See
:mod:`lensft.organism.build` for the directory layout and :mod:`lensft.organism.config` for presets.
"""

from lensft.organism.build import (
    OrganismBuild,
    arm_name,
    build,
    default_cache_dir,
    load,
)
from lensft.organism.config import PRESETS, OrganismConfig, preset

__all__ = ["PRESETS", "OrganismBuild", "OrganismConfig", "arm_name", "build", "default_cache_dir", "load", "preset"]
