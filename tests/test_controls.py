"""Controls for the study's verdicts: a null study (long = a copy of short) must not find any effect,
and a planted effect (long = short with sharpened attention) must be found, in the planted
direction, with an interval that excludes zero."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lensft.handle import load_model
from lensft.report.claims import claims_table
from lensft.report.data import StudyData
from lensft.report.figures.attention import entropy_band
from lensft.report.pipeline import run_study
from lensft.study import STEP_NAMES, StepConfig, StudyConfig
from lensft.variants import Variant


def _study(short: Path, long: Path, out: Path, steps: dict[str, StepConfig]) -> StudyData:
    cfg = StudyConfig(short=str(short), long=str(long), png=False,
                      steps={n: steps.get(n, StepConfig(enabled=False)) for n in STEP_NAMES})
    outcome = run_study(cfg, out)
    assert not outcome.failures, outcome.failures
    return StudyData.load(out)


def test_null_study_finds_nothing(llama_triple, tmp_path: Path) -> None:
    short = llama_triple[Variant.SHORT]
    twin = shutil.copytree(short, tmp_path / "long-is-short")
    steps = {n: StepConfig(max_items=3) for n in ("short_tasks", "module_grid", "attention_spread", "ffn_activations")}
    steps["knowledge"] = StepConfig(max_items=12, settings={"generate": False})
    d = _study(short, twin, tmp_path / "null", steps)
    claims = claims_table(d)
    assert not [c.id for c in claims if c.verdict == "holds"]
    measured = [c for c in claims if c.verdict != "not measured"]
    assert measured, "the null study measured nothing at all"
    for c in measured:
        for p in c.parts:
            if p.interval is not None:
                assert p.interval.low <= 0 <= p.interval.high, (c.id, p.name, p.interval)


@pytest.fixture(scope="module")
def sharpened(llama_triple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The short checkpoint with every query projection scaled by 3 (sharper attention, lower entropy)."""
    h = load_model(llama_triple[Variant.SHORT])
    with torch.no_grad():
        for i in range(h.n_layers):
            h.attention(i).q_proj.weight.mul_(3.0)
    out = tmp_path_factory.mktemp("planted") / "sharp"
    h.model.save_pretrained(out)
    h.tokenizer.save_pretrained(out)
    return out


def test_planted_sharpening_lowers_entropy_with_an_interval_below_zero(llama_triple, sharpened, tmp_path: Path) -> None:
    steps = {"attention_spread": StepConfig(max_items=8)}
    d = _study(llama_triple[Variant.SHORT], sharpened, tmp_path / "planted", steps)
    phases = [str(p) for p in d.first("attention_spread").result.coords["phase"]]
    assert phases == ["prompt", "answer"]
    for ph in phases:
        b = entropy_band(d, ph)  # per layer: short − long (the paper's sign): planted => above zero
        assert (b.low > 0).all(), (ph, b.low)
    c5 = {c.id: c for c in claims_table(d)}[5]
    assert [p.interval.high < 0 for p in c5.parts] == [True, True]  # long − short < 0 in both phases
    assert c5.verdict == "contradicted"  # the paper says reasoning entropy rises; the planted effect lowers it
