"""Golden probe values: every probe's summary on fixed-seed pico checkpoints equals the stored one.

The values and the script that regenerates them live in ``tests/golden/``. A failure here means a
probe now measures something else; if that is intended, regenerate with
``python tests/golden/make_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    threads = torch.get_num_threads()
    try:
        return _make_golden().measure(tmp_path_factory.mktemp("golden"))
    finally:
        torch.set_num_threads(threads)


STORED = json.loads((GOLDEN / "probe_summaries.json").read_text(encoding="utf-8"))
CASES = [(family, probe) for family, probes in STORED.items() for probe in probes]


@pytest.mark.parametrize(("family", "probe"), CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_probe_summary_matches_golden(measured: dict, family: str, probe: str) -> None:
    want, got = STORED[family][probe], measured[family][probe]
    assert sorted(got) == sorted(want), "the probe's summary keys changed"
    for key, w in want.items():
        g = got[key]
        if w is None:
            assert g is None, f"{key}: expected no value, got {g}"
            continue
        assert g is not None, f"{key}: expected {w}, got no value"
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=key)


def test_golden_covers_every_probe_family_pair_it_names() -> None:
    mg = _make_golden()
    expected = {(f, p) for f, _ in mg.MODELS for p in mg.PROBES if p not in mg.SKIP.get(f, ())}
    assert set(CASES) == expected
