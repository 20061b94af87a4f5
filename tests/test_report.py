"""The report: every section and figure present with data, claims computed from results, offline
HTML, PNG export and a real headless-browser screenshot (skipped without chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lensft.report.claims import claims_table
from lensft.report.data import StudyData
from lensft.report.render import SECTIONS, build_figures, png_available, write_report
from lensft.results import load_result, save_result

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
    expected = {f.id for s in SECTIONS for f in s.figures}
    assert set(figures) == expected, expected - set(figures)
    for fid, (fig, caption) in figures.items():
        assert fig.data, fid
        assert f"id='fig-{fid}'" in html
        assert len(caption) > 80 and re.search(r"\d", caption), (fid, caption)
        for ax in [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))]:
            title = fig.layout[ax].title.text
            if title:
                assert "(" in title, f"{fid} {ax} title without unit: {title!r}"
        assert (study_dir / "figures" / f"{fid}.html").is_file()
    assert "claims-table" in html and "steps-table" in html
    assert "sha256" in html and "lensft " in html


def test_html_is_self_contained(study_dir: Path) -> None:
    html = (study_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']?https?:", html, re.I)
    assert not re.search(r"<link[^>]+href=[\"']?https?:", html, re.I)
    assert not re.search(r"@import\s+url\(\s*[\"']?https?:", html, re.I)
    assert "Plotly" in html[:6_000_000] and html.count("<script") >= 2
    fig_html = (study_dir / "figures" / "task_accuracy.html").read_text(encoding="utf-8")
    assert "src='plotly.min.js'" in fig_html and not re.search(r"src=[\"']https?:", fig_html)
    assert (study_dir / "figures" / "plotly.min.js").stat().st_size > 1_000_000


def test_claims_are_computed_from_results(study_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "study"
    shutil.copytree(study_dir, copy)
    before = {c.id: c for c in claims_table(StudyData.load(copy))}
    assert len(before) == 9
    assert before[1].measured not in ("", "n/a") and before[7].measured != "n/a"
    assert before[8].holds is not None  # mixes ran on the organism
    # Edit the long arm's short-task accuracy in its result file: claim 1 must follow.
    manifest = json.loads((copy / "manifest.json").read_text())
    unit = next(u for s in manifest["steps"] if s["name"] == "short_tasks" for u in s["units"] if u["model"]["label"] == "long")
    r = load_result(copy / unit["file"])
    short = next(u for s in manifest["steps"] if s["name"] == "short_tasks" for u in s["units"] if u["model"]["label"] == "short")
    s_acc = load_result(copy / short["file"]).summary["accuracy"]
    r.summary["accuracy"] = min(1.0, s_acc + 0.25)
    save_result(r, copy / unit["file"])
    after = {c.id: c for c in claims_table(StudyData.load(copy))}
    assert after[1].measured == "+25.0 pp" or after[1].measured.startswith("25.0"), after[1].measured
    assert after[1].holds is True
    r.summary["accuracy"] = max(0.0, s_acc - 0.25)
    save_result(r, copy / unit["file"])
    assert claims_table(StudyData.load(copy))[0].holds is False
    write_report(copy, png=False)
    assert "does not hold" in (copy / "report.html").read_text(encoding="utf-8")


def test_user_triple_report_says_mixes_not_measured(llama_triple, tmp_path: Path) -> None:
    from lensft.report.pipeline import run_study as run
    from lensft.study import STEP_NAMES, StepConfig, StudyConfig
    from lensft.variants import Variant

    cfg = StudyConfig(short=str(llama_triple[Variant.SHORT]), long=str(llama_triple[Variant.LONG]), png=False,
                      steps={n: StepConfig(max_items=2) for n in STEP_NAMES})
    run(cfg, tmp_path)
    claims = json.loads((tmp_path / "claims.json").read_text())
    mix_claims = [c for c in claims if c["id"] in (8, 9)]
    assert all(c["verdict"] == "not measured" and "organism" in c["note"] for c in mix_claims)
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
