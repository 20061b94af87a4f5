"""The model organism: a base / short-SFT / long-SFT / mix Llama family trained on CPU.

``build("quick")`` copies the shipped reading base (or pretrains one), then trains SFT arms on
short-context data, long-context data and mixtures of the two (same tasks, same facts, same
token and answer-token budgets), and writes held-out prompt sets. The returned
:class:`OrganismBuild` holds the base's path, the arms as ``ArmRef -> Path``, the prompt sets
and the :class:`BuildManifest`. See :mod:`lensft.organism.build` for the directory layout and
:mod:`lensft.organism.config` for presets.
"""

from lensft.organism.build import (OrganismBuild, arm_refs, build, build_dir, default_cache_dir, first_base_steps,
                                   load)
from lensft.organism.config import PRESETS, OrganismConfig, preset
from lensft.organism.manifest import ArmRecord, BaseRecord, BuildManifest, TrainingRecord
from lensft.organism.progress import ProgressEvent, ProgressFn

__all__ = ["PRESETS", "ArmRecord", "BaseRecord", "BuildManifest", "OrganismBuild", "OrganismConfig", "ProgressEvent",
           "ProgressFn", "TrainingRecord", "arm_refs", "build", "build_dir", "default_cache_dir", "first_base_steps", "load",
           "preset"]
