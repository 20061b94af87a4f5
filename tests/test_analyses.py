"""Every analyses/ notebook script runs top to bottom on the tiny organism and parses as a notebook."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from study_support import tiny_organism_dir, tiny_study

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
SCRIPTS = sorted(p for p in ANALYSES.glob("[0-9]*.py"))


@pytest.fixture(scope="module")
def organism_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny_study(tmp_path_factory)  # builds the tiny organism (shared with the study/report tests)
    return tiny_organism_dir(tmp_path_factory) / "seed-0"


def test_scripts_are_notebooks() -> None:
    jupytext = pytest.importorskip("jupytext")
    assert len(SCRIPTS) >= 6
    for p in SCRIPTS:
        nb = jupytext.read(p)
        kinds = {c.cell_type for c in nb.cells}
        assert kinds == {"markdown", "code"}, p.name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_runs_on_tiny_organism(script: Path, organism_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LENSFT_ORGANISM": "tiny", "LENSFT_ORGANISM_DIR": str(organism_dir), "LENSFT_MAX_ITEMS": "3",
           "LENSFT_STUDY_OUT": str(tmp_path / "study"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if script.stem == "00_study":  # resume the shared tiny study (cached units), only the report is rewritten
        study = tmp_path / "study"
        shutil.copytree(organism_dir.parents[1] / "tiny-study", study)
        env.pop("LENSFT_MAX_ITEMS")
        env.update(LENSFT_STUDY_OUT=str(study), LENSFT_STUDY_ORGANISM_DIR=str(organism_dir.parent))
    r = subprocess.run([sys.executable, script.name], cwd=ANALYSES, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip()
