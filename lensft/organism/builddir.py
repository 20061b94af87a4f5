"""Build directories of the organism: where they live, how often a stage saves its state, and the
checks that refuse a directory holding something else (another build, a file, a checkpoint).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lensft import __version__
from lensft.atomic import remove_stale
from lensft.checkpoints.outputs import refuse_inside_inputs
from lensft.errors import LensftError, OutputExists
from lensft.organism.config import OrganismConfig
from lensft.organism.manifest import BuildManifest

#: Pretraining saves a resumable state this often (steps); an interrupted build continues from it.
RESUME_EVERY = 200
#: Environment variable that overrides :data:`RESUME_EVERY` (a positive integer; tests set it small).
RESUME_EVERY_ENV = "LENSFT_ORGANISM_RESUME_EVERY"


def resume_every() -> int:
    """Steps between saved pretraining states: ``$LENSFT_ORGANISM_RESUME_EVERY`` or :data:`RESUME_EVERY`."""
    raw = os.environ.get(RESUME_EVERY_ENV, "").strip()
    if not raw:
        return RESUME_EVERY
    if not raw.isdigit() or int(raw) < 1:
        raise LensftError(f"{RESUME_EVERY_ENV}={raw!r} is not a positive number of steps; set it to one or unset it")
    return int(raw)


def default_cache_dir() -> Path:
    """``$LENSFT_CACHE/organism`` if ``LENSFT_CACHE`` is set, else ``~/.cache/lensft/organism``."""
    root = os.environ.get("LENSFT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "lensft") / "organism"


def build_dir(config: OrganismConfig, *, from_scratch: bool = False) -> Path:
    """The default build directory of ``config``."""
    return default_cache_dir() / (config.cache_key() + ("-scratch" if from_scratch else ""))


def check_path(root: Path) -> None:
    """Refuse an output that is a file, lies under a file, or lies inside a model checkpoint."""
    if root.exists() and not root.is_dir():
        raise OutputExists(f"{root} is a file, not a build directory; choose a directory for the organism")
    for parent in root.absolute().parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise OutputExists(f"{root} lies under the file {parent}; choose a directory for the organism")
        if (parent / "config.json").is_file() and any((parent / w).exists() for w in _WEIGHTS):
            refuse_inside_inputs(root, {"model": parent})


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_dir(root: Path, cfg: OrganismConfig, from_scratch: bool) -> BuildManifest | None:
    """The manifest of the build in ``root`` (None for a new build); refuse a directory that holds
    another build (another configuration or lensft version), a corrupt one, or anything else."""
    cfg_path, man_path = root / "config.json", root / "manifest.json"
    if not cfg_path.exists():
        if root.is_dir():
            remove_stale(root)  # a killed build's temporary config.json is not "something else"
        if root.exists() and any(root.iterdir()):
            raise OutputExists(f"{root} is not empty and holds no organism; choose an empty or new output directory")
        return None
    try:
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        old_cfg = OrganismConfig.model_validate(old["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise _corrupt(cfg_path, e) from None
    try:
        manifest = BuildManifest.read(root) if man_path.exists() else None
    except ValueError as e:
        raise _corrupt(man_path, e) from None
    if old_cfg.cache_key() != cfg.cache_key() or bool(old.get("from_scratch")) != from_scratch:
        raise OutputExists(f"{root} holds an organism built with another configuration; "
                           "rebuild it or choose another output directory")
    if manifest is not None and manifest.lensft_version != __version__:
        raise OutputExists(f"{root} holds an organism built by lensft {manifest.lensft_version}, not this lensft "
                           f"{__version__}; rebuild it or choose another output directory")
    return manifest


def _corrupt(path: Path, e: Exception) -> LensftError:
    what = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return LensftError(f"{path} is not a readable organism build file ({what}); rebuild the organism or choose "
                       "another output directory")
