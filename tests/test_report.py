"""The report: every section and figure present with data, claims computed from results, offline
HTML, PNG export and a real headless-browser screenshot (skipped without chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lensft.report.claims import claims_table
from lensft.report.data import StudyData
from lensft.report.render import png_available, write_report
from lensft.report.sections import SECTIONS, build_figures
from lensft.results import load_result, save_result
from lensft.study.record import StudyRecord

from study_support import png_distinct_bytes, tiny_study

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_study(tmp_path_factory)


def test_every_section_and_figure_has_data(study_dir: Path) -> None:
    html = (study_dir / "report.html").read_text(encoding="utf-8")
    for sec in SECTIONS:
        assert f"id='{sec.id}'" in html, sec.id
    figures = build_figures(StudyData.load(study_dir))
    expected = {f.id for s in SECTIONS for f in s.figures} - {"retrieval_mixes"}  # needs >= 10 copied needles per arm
    assert expected <= set(figures), expected - set(figures)
    for fid, drawn in figures.items():
        fig, caption = drawn.figure, drawn.caption
        assert fig.data or fig.layout.annotations, fid
        assert f"id='fig-{fid}'" in html
        assert len(caption) > 80 and re.search(r"\d", caption), (fid, caption)
        for ax in [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))]:
            title = fig.layout[ax].title.text
            if title:
                assert "(" in title, f"{fid} {ax} title without unit: {title!r}"
            if title and title.startswith(("layer", "head")):
                assert fig.layout[ax].dtick == 1 and fig.layout[ax].tickformat == "d", (fid, ax)
        for tr in fig.data:
            if tr.type in ("bar", "scatter"):
                assert tr.error_y is not None and tr.error_y.array is not None, f"{fid}: trace {tr.name} has no interval"
        assert (study_dir / "figures" / f"{fid}.html").is_file()
    assert "claims-table" in html and "steps-table" in html
    assert "sha256" in html and "lensft " in html


def test_claims_json_states_quantity_interval_verdict(study_dir: Path) -> None:
    claims = json.loads((study_dir / "claims.json").read_text())
    assert [c["id"] for c in claims] == list(range(1, 10))
    for c in claims:
        assert c["verdict"] in ("holds", "contradicted", "inconclusive", "not measured")
        assert c["quantity"] or c["verdict"] == "not measured"
        if c["verdict"] == "not measured":
            assert c["check"], c
        else:
            for part in c["parts"]:
                iv = part["interval"]
                assert part["support"] is not None or iv["low"] <= iv["estimate"] <= iv["high"], part


def _set_correct(copy: Path, label: str, value) -> None:  # noqa: ANN001
    record = StudyRecord.load(copy)
    unit = next(u for u in record.units("short_tasks") if u.model.label == label)
    r = load_result(copy / unit.file)
    for rec in r.records:
        rec["correct"] = value(rec)
    save_result(r, copy / unit.file)


def test_claims_are_computed_from_per_item_results(study_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "study"
    shutil.copytree(study_dir, copy)
    before = {c.id: c for c in claims_table(StudyData.load(copy))}
    assert len(before) == 9  # the tiny organism answers nothing: claim 1 is at the floor, not measured
    assert before[1].verdict == "not measured" and before[1].check.startswith("floor"), before[1].check
    # Make the long arm right on every item the short arm gets wrong, and vice versa: claim 1 must follow.
    record = StudyRecord.load(copy)
    short = load_result(copy / next(u for u in record.units("short_tasks") if u.model.label == "short").file)
    wrong = {x["id"] for x in short.records if not x["correct"]}
    _set_correct(copy, "long", lambda rec: True)
    after = {c.id: c for c in claims_table(StudyData.load(copy))}
    iv = after[1].parts[0].interval
    assert iv.estimate == pytest.approx(len(wrong) / len(short.records))
    assert after[1].verdict == "holds"
    _set_correct(copy, "long", lambda rec: False)
    _set_correct(copy, "short", lambda rec: True)
    assert claims_table(StudyData.load(copy))[0].verdict == "contradicted"
    write_report(copy, png=False)
    assert "contradicted" in (copy / "report.html").read_text(encoding="utf-8")


def test_a_ceiling_is_not_measured_and_one_wrong_item_lifts_it(study_dir: Path, tmp_path: Path) -> None:
    """Every arm right on every item: the accuracy claims cannot tell arms apart (check, not a finding)."""
    copy = tmp_path / "ceiling"
    shutil.copytree(study_dir, copy)
    labels = {u.model.label for u in StudyRecord.load(copy).units("short_tasks")}
    for label in labels:
        _set_correct(copy, label, lambda rec: True)
    claims = {c.id: c for c in claims_table(StudyData.load(copy))}
    assert claims[1].verdict == "not measured" and claims[1].check.startswith("ceiling"), claims[1].check
    assert claims[1].parts[0].interval.low == claims[1].parts[0].interval.high == 0.0  # what the check guards
    assert claims[8].verdict == "not measured" and claims[8].check.startswith("ceiling"), claims[8].check
    assert "ties shared" in claims[8].parts[0].detail
    first = {}
    _set_correct(copy, "long", lambda rec: first.setdefault("id", rec["id"]) != rec["id"])  # one item wrong
    assert claims_table(StudyData.load(copy))[0].check is None


def test_tied_best_arms_share_the_probability() -> None:
    from lensft.report.measures import Items
    from lensft.report.mixes import best_arms

    same = np.array([1.0, 0.0, 1.0, 1.0])
    t = [Items(["a", "b", "c", "d"], {"correct": same}) for _ in range(3)]
    assert best_arms(t)(np.ones((2, 4))).tolist() == [[1 / 3] * 3] * 2  # a three-way tie: a third each
    t[1] = Items(["a", "b", "c", "d"], {"correct": np.ones(4)})
    assert best_arms(t)(np.ones((1, 4))).tolist() == [[0.0, 1.0, 0.0]]


def test_report_rewrite_is_byte_identical(study_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(study_dir, copy)
    write_report(copy, png=False)
    for f in ("report.html", "claims.json", "captions.json"):
        assert (copy / f).read_bytes() == (study_dir / f).read_bytes(), f


def test_user_triple_report_says_mixes_not_measured(llama_triple, tmp_path: Path) -> None:
    from lensft.report.pipeline import run_study as run
    from lensft.study import STEP_NAMES, StepConfig, StudyConfig
    from lensft.variants import Variant

    only = {"short_tasks", "retrieval"}
    cfg = StudyConfig(short=str(llama_triple[Variant.SHORT]), long=str(llama_triple[Variant.LONG]), png=False,
                      steps={n: StepConfig(max_items=2, enabled=n in only) for n in STEP_NAMES})
    run(cfg, tmp_path)
    claims = json.loads((tmp_path / "claims.json").read_text())
    mix_claims = [c for c in claims if c["id"] in (8, 9)]
    assert all(c["verdict"] == "not measured" and "organism" in c["check"] for c in mix_claims)
    assert "organism-only" in (tmp_path / "report.html").read_text(encoding="utf-8")


@pytest.mark.skipif(not png_available(), reason="kaleido or chromium missing")
def test_png_export(study_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "png"
    shutil.copytree(study_dir, copy)
    write_report(copy, png=True)
    pngs = sorted((copy / "figures").glob("*.png"))
    assert len(pngs) == len(list((copy / "figures").glob("*.html")))
    assert all(png_distinct_bytes(p) > 8 for p in pngs)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_headless_browser_screenshot(study_dir: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp()
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           f"--screenshot={shot}", "--window-size=1400,4000", "--virtual-time-budget=8000",
           (study_dir / "report.html").resolve().as_uri()]
    try:
        subprocess.run(cmd, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file() and shot.stat().st_size > 50_000
    assert png_distinct_bytes(shot) > 64  # text, axes and coloured plots, not a blank page
