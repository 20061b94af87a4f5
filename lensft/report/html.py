"""The report as one self-contained HTML page (plotly.js inline; nothing fetched).

The page holds no timestamps or timings, so the same results give the same bytes.
"""

from __future__ import annotations

import html

import plotly.io as pio
from plotly.offline import get_plotlyjs

from lensft import __version__
from lensft.report.benchmarks import BenchmarkTable
from lensft.report.data import StudyData
from lensft.report.figures import Drawn
from lensft.report.sections import SECTIONS
from lensft.report.verdicts import Claim

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1280px;margin:0 auto;padding:1em 2em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.caption{background:#f7f7f9;border-left:4px solid #1f77b4;padding:.6em 1em;margin:.3em 0 1.6em 0;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1em 0;font-size:.92em} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0} .holds{color:#137333;font-weight:600} .contradicted{color:#b3261e;font-weight:600}
.inconclusive{color:#555;font-weight:600} .notmeasured{color:#8a5300}
.skip{color:#8a5300} code,pre{background:#f4f4f4;font-size:.88em} pre{padding:.6em;overflow:auto}
.fig{margin-top:1em} .figlabel{font-size:.85em;color:#555}
"""


def esc(x: object) -> str:
    return html.escape(str(x))


def figure_div(fig_id: str, drawn: Drawn) -> str:
    """A figure's plotly div with a fixed id (random ids would change the bytes of every report)."""
    return pio.to_html(drawn.figure, full_html=False, include_plotlyjs=False, div_id=f"plot-{fig_id}",
                       config={"displaylogo": False, "responsive": True})


def claims_html(claims: list[Claim]) -> str:
    rows = []
    for c in claims:
        cls = c.verdict.replace(" ", "")
        why = f"not measured: {c.check}" if c.check else c.note
        rows.append(f"<tr><td>{c.id}</td><td>{esc(c.claim)}</td><td>{esc(c.quantity)}</td><td>{esc(c.paper)}</td>"
                    f"<td>{esc(c.measured)}</td><td class='{cls}'>{c.verdict}</td><td>{esc(why)}</td></tr>")
    return ("<table id='claims-table'><tr><th>#</th><th>claim (paper)</th><th>quantity</th><th>paper</th>"
            "<th>measured here (95% interval)</th><th>verdict</th><th>note</th></tr>" + "".join(rows) + "</table>")


def provenance_html(d: StudyData) -> str:
    r = d.record
    rows = "".join(
        f"<tr><td>{esc(c.replicate.label)}</td><td>{esc(c.model.label)}</td><td><code>{esc(c.path)}</code></td><td>"
        + "<br>".join(f"{esc(f)}: <code>{esc(h)}</code>" for f, h in c.sha256.items()) + "</td></tr>"
        for c in r.checkpoints)
    sets = "".join(f"<tr><td>{esc(p.role)}</td><td>{esc(p.name)}</td><td>{esc(p.version)}</td><td>{esc(p.kind)}</td>"
                   f"<td>{p.n_items}</td><td>{esc(p.description)}</td></tr>" for p in r.prompt_sets)
    training = "".join(f"<tr><td>{esc(t.replicate.label)}</td><td>{esc(t.model.label)}</td><td>{t.tokens:,}</td>"
                       f"<td>{t.answer_tokens:,}</td><td>{t.examples:,}</td></tr>" for t in r.training)
    return ("<table><tr><th>replicate</th><th>model</th><th>path</th><th>sha256</th></tr>" + rows + "</table>"
            + ("<h3>SFT data per arm</h3><table><tr><th>replicate</th><th>arm</th><th>tokens</th><th>supervised answer "
               "tokens</th><th>examples</th></tr>" + training + "</table>" if training else "")
            + "<h3>Prompt sets</h3><table><tr><th>role</th><th>name</th><th>version</th><th>kind</th><th>items</th>"
            "<th>description</th></tr>" + sets + "</table>")


def steps_html(d: StudyData) -> str:
    rows = "".join(f"<tr><td>{esc(s.name)}</td><td>{esc(s.status)}</td><td>{len(s.units)}</td>"
                   f"<td class='skip'>{'<br>'.join(esc(x) for x in s.skipped)}</td></tr>" for s in d.record.steps)
    fails = "".join(f"<li>{esc(f)}</li>" for f in d.record.failures)
    return ("<table id='steps-table'><tr><th>step</th><th>status</th><th>units</th><th>skipped, and why</th></tr>"
            + rows + "</table>" + (f"<p class='contradicted'>Failed units:</p><ul>{fails}</ul>" if fails else "")
            + "<p>Wall times are in manifest.json.</p>")


def _pct(iv, signed: bool = False) -> str:  # noqa: ANN001
    return "n/a" if iv is None else iv.fmt(100, 1, " pp" if signed else "%", signed=signed)


def benchmark_table_html(t: BenchmarkTable) -> str:
    """One benchmark score: model, score [95%], Δ [95%] against the named model, the paper's percent."""
    rows = []
    for r in t.rows:
        mark = " †" if r.stderr_only else ""
        paper = "" if r.paper is None else f"{r.paper:.1f}%" + ("" if r.paper_delta is None else f" (Δ {r.paper_delta:+.1f} pp)")
        delta = "" if r.versus is None else f"{_pct(r.delta, signed=True)} vs {esc(r.versus)}"
        rows.append(f"<tr><td>{esc(r.model.label)}</td><td>{esc(_pct(r.score))}{mark}</td><td>{delta}</td>"
                    f"<td>{esc(paper)}</td></tr>")
    note = f"<p class='figlabel'>{esc(t.difference)}</p>" if t.difference else ""
    dagger = ("<p class='figlabel'>† lm-eval's value ± 1.96 × its standard error (no per-document values).</p>"
              if any(r.stderr_only for r in t.rows) else "")
    return (f"<h3>{esc(t.benchmark)} <code>{esc(t.score)}</code> ({t.n_docs} documents)</h3>"
            "<table class='benchmark-table'><tr><th>model</th><th>score (95% interval)</th>"
            "<th>Δ, paired over documents (95% interval)</th><th>paper</th></tr>" + "".join(rows) + "</table>" + note + dagger)


def _section(sec, d: StudyData, figures: dict[str, Drawn]) -> str:  # noqa: ANN001
    out = [f"<section id='{sec.id}' class='report-section'><h2>{esc(sec.title)}</h2><p>{esc(sec.intro)}</p>"]
    out += [f"<p class='skip'>Skipped: {esc(r)}</p>" for st in sec.steps for r in d.skipped(st)]
    shown = [fs for fs in sec.figures if fs.id in figures]
    for fs in shown:
        drawn = figures[fs.id]
        out.append(f"<div class='fig' id='fig-{fs.id}'>{figure_div(fs.id, drawn)}<div class='caption'>"
                   f"<span class='figlabel'>[{esc(fs.id)} · paper {esc(fs.paper)}]</span> {esc(drawn.caption)}</div></div>")
    tables = sec.tables(d) if sec.tables is not None else []
    out += [benchmark_table_html(t) for t in tables]
    if not shown and not tables:
        out.append("<p class='notmeasured'>No results for this section.</p>")
    return "".join(out) + "</section>"


def render_html(d: StudyData, figures: dict[str, Drawn], claims: list[Claim]) -> str:
    """The report as one self-contained HTML string."""
    r = d.record
    src = (f"the model organism, preset <b>{esc(r.config.organism)}</b>, {len(r.replicates)} replicate(s)"
           if r.source == "organism" else "a user-supplied checkpoint triple")
    counts = {v: sum(c.verdict == v for c in claims) for v in ("holds", "contradicted", "inconclusive", "not measured")}
    body = [f"<h1>lensft study: {esc(r.config.name)}</h1>",
            f"<p>Zheng et al. 2025, <i>When Long Helps Short</i> (EMNLP 2025), measured on {src}. Results by lensft "
            f"{esc(r.lensft_version)}; report by lensft {esc(__version__)}. Every number and caption below is computed "
            "from the result files in this directory; every comparison carries a 95% paired bootstrap interval.</p>",
            "<nav><b>Sections:</b> " + " · ".join(f"<a href='#{s.id}'>{esc(s.title)}</a>" for s in SECTIONS)
            + " · <a href='#claims'>Claims</a> · <a href='#provenance'>Models and configuration</a></nav>",
            "<h2 id='claims'>Claims table</h2><p>Each claim of the paper restated as quantities with 95% intervals. "
            "<b>holds</b>: every interval excludes zero in the paper's direction; <b>contradicted</b>: one excludes zero "
            "the other way; <b>inconclusive</b>: neither; <b>not measured</b>: the experiment did not run or a validity "
            "check failed (not a negative finding). Here: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".</p>",
            claims_html(claims)]
    body += [_section(sec, d, figures) for sec in SECTIONS]
    body += ["<h2 id='provenance'>Models and configuration</h2>", provenance_html(d), "<h3>Steps</h3>", steps_html(d),
             "<h3>Study configuration (study.yaml)</h3>", f"<pre>{esc(d.config_yaml)}</pre>"]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>lensft study report</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>")
