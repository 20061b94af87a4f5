"""lensft: long- vs short-context fine-tuning, taken apart.

Data flows one way: checkpoints -> graft -> model handle -> probes -> results -> report.
The names below are the public API; they are imported on first use, so ``import lensft``
stays cheap::

    import lensft
    triple = lensft.load_triple(base="b", short="s", long="l")
    graft = lensft.graft_model(triple, lensft.GraftSpec.build(mha="long", ffn="short"))
    result = lensft.get_probe("attention_spread").run(graft, lensft.read_prompt_set("p.jsonl"), None)
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: public name -> module that defines it
_API: dict[str, str] = {
    "load_triple": "lensft.checkpoints.load",
    "CheckpointTriple": "lensft.checkpoints.triple",
    "open_checkpoint": "lensft.checkpoints.reader",
    "check_compatibility": "lensft.checkpoints.compat",
    "convert_gguf": "lensft.checkpoints.gguf",
    "write_graft": "lensft.graft.export",
    "GraftSpec": "lensft.graft.spec",
    "LayerRange": "lensft.graft.spec",
    "plan_graft": "lensft.graft.plan",
    "apply_graft": "lensft.graft.plan",
    "graft_model": "lensft.graft.build",
    "variant_model": "lensft.graft.build",
    "ModelHandle": "lensft.handle",
    "LoadOptions": "lensft.devices",
    "load_model": "lensft.handle",
    "get_probe": "lensft.probes.registry",
    "list_probes": "lensft.probes.registry",
    "patch_across": "lensft.probes.patching",
    "run_harness": "lensft.evaluation.harness",
    "HarnessSettings": "lensft.evaluation.settings",
    "export_task_dir": "lensft.evaluation.export",
    "load_suite": "lensft.evaluation.suite",
    "read_prompt_set": "lensft.prompts.io",
    "write_prompt_set": "lensft.prompts.io",
    "build_needle_set": "lensft.prompts.needles",
    "ProbeResult": "lensft.results",
    "save_result": "lensft.results",
    "load_result": "lensft.results",
    "Variant": "lensft.variants",
    "Role": "lensft.variants",
    "LensftError": "lensft.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'lensft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
