"""Find the family of a checkpoint from its config (``model_type`` / ``architectures``)."""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

from lensft.errors import UnknownFamily
from lensft.families.spec import FamilySpec


@lru_cache(maxsize=1)
def _load_all() -> dict[str, FamilySpec]:
    families: dict[str, FamilySpec] = {}
    for entry in sorted(resources.files("lensft.families").joinpath("data").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        spec = FamilySpec.model_validate(json.loads(entry.read_text()))
        if spec.name in families:
            raise RuntimeError(f"family {spec.name!r} is defined twice in lensft/families/data")
        families[spec.name] = spec
    return families


def supported_families() -> list[str]:
    """Names of every family lensft has a map for."""
    return sorted(_load_all())


def get_family(name: str) -> FamilySpec:
    """The family called ``name`` (as in the data file's ``name``)."""
    fams = _load_all()
    if name not in fams:
        raise UnknownFamily(_unknown_message(name))
    return fams[name]


def family_for_config(config: Mapping[str, Any] | Any) -> FamilySpec:
    """The family of a checkpoint, looked up by ``model_type`` then by ``architectures``.

    Args:
        config: a ``transformers`` config object or the dict from ``config.json``.
    """
    get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
    model_type = get("model_type", None)
    architectures = list(get("architectures", None) or [])
    for spec in _load_all().values():
        if model_type is not None and model_type in spec.model_types:
            return spec
    for spec in _load_all().values():
        if any(a in spec.architectures for a in architectures):
            return spec
    shown = model_type or (architectures[0] if architectures else "<no model_type>")
    raise UnknownFamily(_unknown_message(str(shown)))


def _unknown_message(name: str) -> str:
    fams = _load_all()
    known = sorted({t for s in fams.values() for t in s.model_types})
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" (nearest: {near[0]})" if near else ""
    return (
        f"unknown model family {name!r}{hint}; supported model types: {', '.join(known)}. "
        "Add a family file under lensft/families/data to support it."
    )
