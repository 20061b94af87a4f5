"""Write a study's report: ``report.html`` (self-contained), every figure as its own HTML under
``figures/`` (sharing one local ``plotly.min.js``) and, where kaleido finds a Chrome/Chromium, as
PNG; ``claims.json`` and ``captions.json`` beside them. Reads only the results directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from lensft.atomic import write_json_atomic, write_text_atomic
from lensft.locks import locked
from lensft.report.benchmarks import benchmark_tables
from lensft.report.claims import claims_table
from lensft.report.data import StudyData
from lensft.report.figures import Drawn
from lensft.report.html import esc, figure_div, render_html
from lensft.report.sections import build_figures

log = logging.getLogger(__name__)


def png_available() -> bool:
    """kaleido is installed and a Chrome/Chromium binary is on PATH (or BROWSER_PATH)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return bool(os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("google-chrome")
                or shutil.which("chromium-browser"))


def _write_pngs(figures: dict[str, Drawn], figdir: Path) -> None:
    if not png_available():
        log.info("PNG export skipped: kaleido or a Chromium binary is missing")
        return
    try:
        pio.write_images([d.figure for d in figures.values()], [figdir / f"{fid}.png" for fid in figures],
                         width=1200, height=None)
    except Exception as e:  # the exporter is optional; the HTML report stands alone
        log.warning("PNG export failed (%s: %s); figures are in HTML only", type(e).__name__, e)


def write_report(results_dir: str | os.PathLike[str], *, png: bool = True) -> Path:
    """Write ``report.html``, ``figures/<id>.html`` (+ ``.png``), ``claims.json`` and ``captions.json``;
    return the report's path. Refuses (:class:`~lensft.locks.DirectoryBusy`) while another
    process writes the directory."""
    root = Path(results_dir)
    with locked(root, "lensft report"):
        return _write_report(root, png)


def _write_report(root: Path, png: bool) -> Path:
    d = StudyData.load(root)
    figures = build_figures(d)
    claims = claims_table(d)
    figdir = root / "figures"
    write_text_atomic(figdir / "plotly.min.js", get_plotlyjs())
    for fid, drawn in figures.items():
        write_text_atomic(figdir / f"{fid}.html",
                          f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(fid)}</title>"
                          f"<script src='plotly.min.js'></script></head><body>{figure_div(fid, drawn)}"
                          f"<p style='font-family:sans-serif;max-width:1100px'>{esc(drawn.caption)}</p></body></html>")
    write_json_atomic(root / "claims.json", [c.as_dict() for c in claims])
    write_json_atomic(root / "captions.json", {k: v.caption for k, v in figures.items()})
    tables = benchmark_tables(d)
    if tables:
        write_json_atomic(root / "benchmarks.json", [t.as_dict() for t in tables])
    if png and figures:
        _write_pngs(figures, figdir)
    return write_text_atomic(root / "report.html", render_html(d, figures, claims))
