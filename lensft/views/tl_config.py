"""HookedTransformer configs from a Hugging Face config, driven by a family's TransformerLens map.

TransformerLens 3.9 builds a ``HookedTransformerConfig`` only from a hub name or a checkpoint
path (``loading_from_pretrained.get_pretrained_model_config``), which reads ``config.json``
again and, for paths that contain "llama" or "gemma", skips it altogether. lensft already has
the config in memory, so it resolves every field itself from the family file
(:class:`~lensft.families.spec.HookedTransformerMap`): no disk, no network.
"""

from __future__ import annotations

from typing import Any, Mapping

from lensft.errors import ViewError
from lensft.families.spec import ConfigSource, HookedTransformerMap

_MISSING = object()


def read_hf(config: Any, path: str) -> Any:
    """The value at a dotted ``path`` of an HF config (attributes, then dict keys); None if any
    step is missing."""
    cur = config
    for part in path.split("."):
        if isinstance(cur, Mapping):
            cur = cur.get(part, _MISSING)
        else:
            cur = getattr(cur, part, _MISSING)
        if cur is _MISSING or cur is None:
            return None
    return cur


def unmet_requirements(config: Any, hooked: HookedTransformerMap) -> list[str]:
    """``"path=value"`` for every HF config value outside what the HookedTransformer map is faithful for."""
    bad = []
    for path, allowed in hooked.requires.items():
        value = read_hf(config, path)
        if value not in allowed:
            bad.append(f"{path}={value!r}")
    return bad


def _resolve(config: Any, src: str | ConfigSource, done: Mapping[str, Any]) -> Any:
    s = ConfigSource(hf=src) if isinstance(src, str) else src
    base = read_hf(config, s.hf) if s.hf else done.get(s.tl) if s.tl else None
    if base is None or (s.factor == 1.0 and not s.times and not s.divide_by):
        return base
    value = base * s.factor
    if s.times:
        value = value * done[s.times]
    if s.divide_by:
        value = value / done[s.divide_by]
    return int(round(value))


def hooked_config_fields(config: Any, hooked: HookedTransformerMap) -> dict[str, Any]:
    """The ``HookedTransformerConfig`` keyword arguments for a model with HF ``config``.

    Fields are resolved in the map's order; a field whose sources are all null is left to
    TransformerLens's default (``n_key_value_heads`` for models without grouped-query attention).

    Raises:
        ViewError: a source names a field the map has not resolved yet (a broken family file).
    """
    done: dict[str, Any] = {}
    for name, sources in hooked.config.items():
        for src in sources:
            try:
                value = _resolve(config, src, done)
            except KeyError as e:
                raise ViewError(f"the TransformerLens map of field {name!r} uses {e.args[0]!r} before it is "
                                "resolved; list that field earlier in the family file") from None
            if value is not None:
                done[name] = value
                break
    return {**done, **hooked.constants}
