"""The reading base that ships inside the package.

Pretraining a base that reads takes longer than the quick preset's budget, so lensft ships one:
``lensft/organism/base/`` is the ``checkpoints/base`` directory of a from-scratch build of the
shared base configuration (:func:`lensft.organism.config.reading_base`, seed 0), made by
``lensft organism build full --from-scratch``'s own code and copied in unchanged (weights,
config, tokenizer, ``training_log.jsonl`` and ``organism.json``, which records the base
configuration, its hash and the lensft version). A build whose base configuration has that hash
copies it instead of training one, unless it is asked to train from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lensft.atomic import staging_dir
from lensft.organism.config import BaseConfig

SHIPPED_DIR = Path(__file__).resolve().parent / "base"


def shipped_meta() -> dict | None:
    """``organism.json`` of the shipped base (None when the package has none)."""
    p = SHIPPED_DIR / "organism.json"
    if not (p.is_file() and (SHIPPED_DIR / "model.safetensors").is_file()):
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def ships(cfg: BaseConfig) -> bool:
    """Whether the package holds a trained base for ``cfg``."""
    meta = shipped_meta()
    return meta is not None and meta.get("base", {}).get("base_key") == cfg.key()


def install(dst: Path) -> Path:
    """Copy the shipped base into ``dst`` (atomically: ``dst`` appears complete or not at all)."""
    tmp = staging_dir(dst)
    try:
        for f in sorted(SHIPPED_DIR.iterdir()):
            if f.is_file() and f.suffix != ".py":
                shutil.copy2(f, tmp / f.name)
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
