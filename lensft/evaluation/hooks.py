"""``process_results`` hooks of task sets exported by lensft, so lm-eval scores them with lensft's
answer matching (:mod:`lensft.probes.scoring`), exactly as the ``short_tasks`` probe does.

An exported task directory holds a two-line ``lensft_hooks.py`` that imports these functions;
its YAML names them with ``process_results: !function lensft_hooks.exact_match``. A greedy
completion is cut at its first line (after leading whitespace), as ``short_tasks`` cuts it, and
compared with the document's ``answer`` and ``aliases``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from lensft.probes import scoring


def _golds(doc: Mapping[str, Any]) -> list[str]:
    return [str(doc["answer"]), *[str(a) for a in (doc.get("aliases") or [])]]


def exact_match(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
    """1.0 when the completion's first line equals the answer or an alias after normalisation."""
    return {"exact_match": float(scoring.exact_match(scoring.first_line(results[0]), _golds(doc)))}


def contains_match(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
    """1.0 when the completion's first line contains the answer or an alias as whole words."""
    return {"contains_match": float(scoring.contains_match(scoring.first_line(results[0]), _golds(doc)))}
