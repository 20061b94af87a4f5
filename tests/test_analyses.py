"""Every analyses/ notebook script runs top to bottom on an organism and parses as a notebook.

The tiny organism (seconds to train) is built once per test session under pytest's base temp
directory, with the 0.5 mix the mixes notebook reads: the scripts' code paths are what is tested
here; what the quick organism measures is in the README (its build takes minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lensft import organism

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
SCRIPTS = sorted(p for p in ANALYSES.glob("[0-9]*.py"))


@pytest.fixture(scope="module")
def organism_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny organism (seed 0, mix 0.5) in the study's layout: <dir>/seed-0."""
    out = tmp_path_factory.getbasetemp() / "tiny-organism-analyses" / "seed-0"
    organism.build("tiny", mixes=[0.5], out=out)
    return out


def test_scripts_are_notebooks() -> None:
    jupytext = pytest.importorskip("jupytext")
    assert len(SCRIPTS) >= 6
    for p in SCRIPTS:
        nb = jupytext.read(p)
        kinds = {c.cell_type for c in nb.cells}
        assert kinds == {"markdown", "code"}, p.name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_runs_on_the_organism(script: Path, organism_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LENSFT_ORGANISM": "tiny", "LENSFT_ORGANISM_DIR": str(organism_dir), "LENSFT_MAX_ITEMS": "8",
           "LENSFT_STUDY_OUT": str(tmp_path / "study"), "LENSFT_STUDY_ORGANISM_DIR": str(organism_dir.parent),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, script.name], cwd=ANALYSES, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip()
