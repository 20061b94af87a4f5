"""Write a study's report: ``report.html`` (self-contained: plotly.js inline, nothing fetched)
plus every figure as its own HTML under ``figures/`` (sharing one local ``plotly.min.js``) and,
where kaleido finds a Chrome/Chromium, as PNG.

The report reads only the results directory (:class:`~lensft.report.data.StudyData`).
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from lensft import __version__
from lensft.report import captions as C
from lensft.report import figures as F
from lensft.report.claims import Claim, claims_table
from lensft.report.data import StudyData

log = logging.getLogger(__name__)


@dataclass
class FigureSpec:
    id: str
    paper: str
    make: Callable[[StudyData], Optional[go.Figure]]
    caption: Callable[[StudyData], str]


@dataclass
class Section:
    id: str
    title: str
    intro: str
    steps: tuple[str, ...]
    figures: list[FigureSpec]


SECTIONS: list[Section] = [
    Section("short-tasks", "1. Long-context SFT and short tasks",
            "The paper's starting point (Table 1): SFT on long-context data helps short-context tasks. Here every SFT arm "
            "of the triple is scored on held-out short tasks.", ("short_tasks",),
            [FigureSpec("task_accuracy", "Table 1", F.task_accuracy, C.task_accuracy),
             FigureSpec("mix_curve", "Figure 7", F.mix_curve, C.mix_curve)]),
    Section("module-grid", "2. Decoupling MHA and FFN",
            "Module replacement (§3.2): attention and feed-forward blocks are taken from either arm. The paper ran two "
            "halves (MHA swap on GSM8K, FFN swap on World Capital); this is the full 2×2 grid on every task, followed by a "
            "per-layer sweep the paper did not run.", ("module_grid", "layer_sweep"),
            [FigureSpec("module_grid", "Figures 1–2", F.module_grid, C.module_grid),
             FigureSpec("layer_sweep", "new", F.layer_sweep, C.layer_sweep)]),
    Section("mha", "3. What changes in attention",
            "Retrieval heads (Wu et al. 2024) and attention entropy (Zhang et al. 2024) compare how the arms' attention "
            "finds and spreads over context.", ("retrieval", "attention_spread"),
            [FigureSpec("retrieval_heatmaps", "Figure 3", F.retrieval_heatmaps, C.retrieval_heatmaps),
             FigureSpec("retrieval_mixes", "Figure 9", F.retrieval_mixes, C.retrieval_mixes),
             FigureSpec("entropy_layers", "Figure 4", F.entropy_layers, C.entropy_layers),
             FigureSpec("entropy_heatmaps", "Figures 11–12", F.entropy_heatmaps, C.entropy_heatmaps)]),
    Section("ffn", "4. What changes in the FFN",
            "FFN activation statistics on fact questions (the World Capital analogue).", ("ffn_activations",),
            [FigureSpec("ffn_delta", "Figure 5", F.ffn_delta, C.ffn_delta),
             FigureSpec("ffn_layers", "Figure 10", F.ffn_layers, C.ffn_layers)]),
    Section("knowledge", "5. Knowledge-preference bias",
            "Conflict items put a counterfactual statement in context and ask about the memorised fact (§4). The paper: "
            "short SFT keeps its memory (99.8%), long SFT follows the context (50%).", ("knowledge", "patching"),
            [FigureSpec("knowledge_bars", "Table 6 / §4", F.knowledge_bars, C.knowledge_bars),
             FigureSpec("knowledge_mix", "Figure 6", F.knowledge_mix, C.knowledge_mix),
             FigureSpec("lens_margin", "new", F.lens_margin, C.lens_margin),
             FigureSpec("patching", "new", F.patching, C.patching)]),
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1280px;margin:0 auto;padding:1em 2em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.caption{background:#f7f7f9;border-left:4px solid #1f77b4;padding:.6em 1em;margin:.3em 0 1.6em 0;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1em 0;font-size:.92em} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0} .holds{color:#137333;font-weight:600} .fails{color:#b3261e;font-weight:600} .na{color:#777}
.skip{color:#8a5300} code,pre{background:#f4f4f4;font-size:.88em} pre{padding:.6em;overflow:auto}
.fig{margin-top:1em} .figlabel{font-size:.85em;color:#555}
"""


def _esc(x: object) -> str:
    return html.escape(str(x))


def _figure_div(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def build_figures(d: StudyData) -> dict[str, tuple[go.Figure, str]]:
    """Every figure with data, with its caption: ``{figure id: (figure, caption)}``."""
    out = {}
    for sec in SECTIONS:
        for fs in sec.figures:
            fig = fs.make(d)
            if fig is not None and any(_has_data(t) for t in fig.data):
                out[fs.id] = (fig, fs.caption(d))
    return out


def _has_data(trace: object) -> bool:
    for attr in ("y", "z"):
        v = getattr(trace, attr, None)
        if v is not None and len(v):
            return True
    return False


def _claims_html(claims: list[Claim]) -> str:
    rows = []
    for c in claims:
        cls = {True: "holds", False: "fails", None: "na"}[c.holds]
        rows.append(f"<tr><td>{c.id}</td><td>{_esc(c.claim)}</td><td>{_esc(c.quantity)}</td><td>{_esc(c.paper)}</td>"
                    f"<td>{_esc(c.measured)}</td><td class='{cls}'>{c.verdict}</td><td>{_esc(c.note)}</td></tr>")
    return ("<table id='claims-table'><tr><th>#</th><th>claim (paper §7)</th><th>quantity</th><th>paper</th>"
            "<th>measured here</th><th>here</th><th>note</th></tr>" + "".join(rows) + "</table>")


def _provenance_html(d: StudyData) -> str:
    m = d.manifest
    rows = []
    for seed, models in m.get("models", {}).items():
        for name, info in models.items():
            hashes = "<br>".join(f"{_esc(f)}: <code>{_esc(h)}</code>" for f, h in info.get("sha256", {}).items())
            rows.append(f"<tr><td>{_esc(seed)}</td><td>{_esc(name)}</td><td><code>{_esc(info['path'])}</code></td><td>{hashes}</td></tr>")
    sets = "".join(f"<tr><td>{_esc(r)}</td><td>{_esc(p['name'])}</td><td>{_esc(p['version'])}</td><td>{_esc(p['kind'])}</td>"
                   f"<td>{p['n_items']}</td><td>{_esc(p.get('description', ''))}</td></tr>" for r, p in m.get("prompt_sets", {}).items())
    return ("<table><tr><th>seed</th><th>model</th><th>path</th><th>sha256</th></tr>" + "".join(rows) + "</table>"
            "<h3>Prompt sets</h3><table><tr><th>role</th><th>name</th><th>version</th><th>kind</th><th>items</th><th>description</th></tr>"
            + sets + "</table>")


def _steps_html(d: StudyData) -> str:
    rows = []
    for s in d.manifest.get("steps", []):
        skipped = "<br>".join(_esc(r) for r in s.get("skipped", []))
        rows.append(f"<tr><td>{_esc(s['name'])}</td><td>{_esc(s.get('status', ''))}</td><td>{s.get('n_run', 0)}</td>"
                    f"<td>{s.get('n_cached', 0)}</td><td>{s.get('seconds', 0):.1f}</td><td class='skip'>{skipped}</td></tr>")
    fails = "".join(f"<li>{_esc(f)}</li>" for f in d.manifest.get("failures", []))
    prep = d.manifest.get("prepare_seconds")
    return ("<table id='steps-table'><tr><th>step</th><th>status</th><th>units run</th><th>cached</th><th>wall time (s)</th>"
            "<th>skipped, and why</th></tr>" + "".join(rows) + "</table>"
            + (f"<p>Preparing the models (organism build or cache lookup, loading the triple): {prep:.1f} s. " if prep is not None else "<p>")
            + f"Study total: {d.manifest.get('total_seconds', 0):.1f} s.</p>"
            + (f"<p class='fails'>Failed units:</p><ul>{fails}</ul>" if fails else ""))


def render_html(d: StudyData, figures: dict[str, tuple[go.Figure, str]], claims: list[Claim]) -> str:
    """The report as one self-contained HTML string (plotly.js inline)."""
    m = d.manifest
    src = (f"the model organism, preset <b>{_esc(m.get('organism'))}</b>, seeds {_esc(m.get('seeds'))}"
           if m.get("source") == "organism" else "a user-supplied checkpoint triple")
    body = [f"<h1>lensft study: {_esc(m.get('study', 'study'))}</h1>",
            f"<p>Reproduction of Zheng et al. 2025, <i>When Long Helps Short</i> (EMNLP 2025), on {src}. "
            f"lensft {_esc(m.get('lensft_version', __version__))}; report written by lensft {_esc(__version__)}; "
            f"study started {_esc(m.get('started', ''))}. Every number and caption below is computed from the result files "
            f"in this directory.</p>",
            "<nav><b>Sections:</b> " + " · ".join(f"<a href='#{s.id}'>{_esc(s.title)}</a>" for s in SECTIONS)
            + " · <a href='#claims'>Claims</a> · <a href='#provenance'>Models and configuration</a></nav>",
            "<h2 id='claims'>Claims table</h2><p>Each of the paper's claims (§7 of the digest) with the value measured on "
            "this triple, the paper's value and whether the claim holds here.</p>", _claims_html(claims)]
    for sec in SECTIONS:
        body.append(f"<section id='{sec.id}' class='report-section'><h2>{_esc(sec.title)}</h2><p>{_esc(sec.intro)}</p>")
        for st in sec.steps:
            entry = d.step_entry(st)
            for r in entry.get("skipped", []):
                body.append(f"<p class='skip'>Skipped: {_esc(r)}</p>")
        shown = 0
        for fs in sec.figures:
            if fs.id not in figures:
                continue
            fig, cap = figures[fs.id]
            shown += 1
            body.append(f"<div class='fig' id='fig-{fs.id}'>{_figure_div(fig, 'plot-' + fs.id)}"
                        f"<div class='caption'><span class='figlabel'>[{_esc(fs.id)} · paper {_esc(fs.paper)}]</span> "
                        f"{_esc(cap)}</div></div>")
        if not shown:
            body.append("<p class='na'>No results for this section.</p>")
        body.append("</section>")
    body += ["<h2 id='provenance'>Models and configuration</h2>", _provenance_html(d),
             "<h3>Steps and wall time</h3>", _steps_html(d),
             "<h3>Study configuration (study.yaml)</h3>", f"<pre>{_esc(d.config_yaml)}</pre>"]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>lensft study report</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def png_available() -> bool:
    """kaleido is installed and a Chrome/Chromium binary is on PATH (or BROWSER_PATH)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return bool(os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("google-chrome")
                or shutil.which("chromium-browser"))


def write_report(results_dir: str | os.PathLike[str], *, png: bool = True) -> Path:
    """Write ``report.html``, ``figures/<id>.html`` (+ ``.png``) and ``claims.json``; return the report path."""
    root = Path(results_dir)
    d = StudyData.load(root)
    figures = build_figures(d)
    claims = claims_table(d)
    out = root / "report.html"
    tmp = out.with_name(".report.html.tmp")
    tmp.write_text(render_html(d, figures, claims), encoding="utf-8")
    os.replace(tmp, out)
    figdir = root / "figures"
    figdir.mkdir(exist_ok=True)
    (figdir / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    for fid, (fig, cap) in figures.items():
        div = pio.to_html(fig, full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        (figdir / f"{fid}.html").write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + _esc(fid) + "</title>"
            "<script src='plotly.min.js'></script></head><body>" + div + f"<p style='font-family:sans-serif;max-width:1100px'>{_esc(cap)}</p>"
            "</body></html>", encoding="utf-8")
    (root / "claims.json").write_text(json.dumps([c.__dict__ | {"verdict": c.verdict} for c in claims], indent=1), encoding="utf-8")
    (root / "captions.json").write_text(json.dumps({k: v[1] for k, v in figures.items()}, indent=1), encoding="utf-8")
    if png and figures:
        if png_available():
            try:
                figs = list(figures.items())
                pio.write_images([f for _, (f, _) in figs], [figdir / f"{fid}.png" for fid, _ in figs],
                                 width=1200, height=None)
            except Exception as e:  # the exporter is optional; the HTML report stands alone
                log.warning("PNG export failed (%s: %s); figures are in HTML only", type(e).__name__, e)
        else:
            log.info("PNG export skipped: kaleido or a Chromium binary is missing")
    return out
