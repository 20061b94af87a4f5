"""Architecture families: tensor-name templates with roles, loaded from ``data/*.json``."""

from lensft.families.registry import family_for_config, get_family, supported_families
from lensft.families.spec import FamilySpec, ModulePaths, TensorInfo, TensorTemplate

__all__ = [
    "FamilySpec",
    "ModulePaths",
    "TensorInfo",
    "TensorTemplate",
    "family_for_config",
    "get_family",
    "supported_families",
]
