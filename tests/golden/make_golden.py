"""Regenerate ``probe_summaries.json``, the golden probe values that ``tests/test_golden.py`` checks.

    python tests/golden/make_golden.py

Each probe runs with its built-in prompt set on pico checkpoints built from fixed seeds
(:func:`lensft.pico.build_pico`), on one CPU thread. Regenerate only when a probe's definition
changes on purpose, and say why in the commit: a changed golden value is a changed measurement.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import torch

from lensft.cli.probe import load_probe_prompts
from lensft.handle import load_model
from lensft.pico import build_pico
from lensft.probes.registry import get_probe

#: (family, seed) of the pico checkpoints the golden values come from.
MODELS = (("llama", 11), ("gpt2", 12))
PROBES = ("attention_spread", "ffn_activations", "retrieval_heads", "knowledge_preference")
#: Probes skipped per family (GPT-2 pico has 512 learned positions; the built-in needles are longer).
SKIP = {"gpt2": ("retrieval_heads",)}
OUT = Path(__file__).with_name("probe_summaries.json")


def measure(root: Path) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{family: {probe: summary}}`` for every model and probe above (pico checkpoints built under ``root``)."""
    torch.set_num_threads(1)
    values: dict[str, dict[str, dict[str, float | None]]] = {}
    for family, seed in MODELS:
        handle = load_model(build_pico(root / family, family, seed=seed))
        values[family] = {}
        for name in (p for p in PROBES if p not in SKIP.get(family, ())):
            probe = get_probe(name)
            result = probe.run(handle, load_probe_prompts(probe, None), None)
            values[family][name] = {k: (None if v is None or math.isnan(v) else float(v))
                                    for k, v in sorted(result.summary.items())}
    return values


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        values = measure(Path(tmp))
    OUT.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
