"""The paper's claims (paper.md §7), each measured on this study's results.

Every claim is computed from result files; nothing here is a stored measurement. A claim whose
experiment did not run (e.g. mixes on a user triple) is reported as not measured, with the reason.
The organism stands in for the paper's benchmarks: ``arithmetic`` for GSM8K, ``fact_recall``
for World Capital / NQ / MMLU, ``cloze`` for LAMBADA (:data:`~lensft.report.data.ANALOGUE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from lensft.report.data import ANALOGUE, Stat, StudyData, select
from lensft.report.figures import entropy, ffn_stat, grid_label


@dataclass
class Claim:
    """One row of the claims table."""

    id: int
    claim: str
    quantity: str
    paper: str
    measured: str
    holds: Optional[bool]  # None: not measured
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "not measured"}[self.holds]


def _pp(s: Optional[Stat]) -> str:
    return "n/a" if s is None else s.fmt(100, 1, " pp")


def _diff(a: Optional[Stat], b: Optional[Stat]) -> Optional[Stat]:
    if a is None or b is None:
        return None
    return Stat(a.mean - b.mean, float(np.hypot(a.ci, b.ci)), min(a.n, b.n))


def _seed_diff(d: StudyData, step_a: tuple[str, ...], label_a: str, step_b: tuple[str, ...], label_b: str,
               key: str) -> Optional[Stat]:
    """Per-seed difference of a summary value (paired by seed) -> Stat."""
    a = {u.seed: u.result.summary.get(key) for u in d.find(label_a, *step_a)}
    b = {u.seed: u.result.summary.get(key) for u in d.find(label_b, *step_b)}
    return Stat.of(a[s] - b[s] for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None)


def claim_long_beats_short(d: StudyData) -> Claim:
    s = _seed_diff(d, ("short_tasks",), "long", ("short_tasks",), "short", "accuracy")
    per = {t: _seed_diff(d, ("short_tasks",), "long", ("short_tasks",), "short", f"accuracy_{t}") for t in d.tasks()}
    note = "; ".join(f"{t} {_pp(v)}" for t, v in per.items() if v is not None)
    return Claim(1, "Long-context SFT beats short-context SFT on short tasks",
                 "accuracy(long) − accuracy(short), all short tasks", "+2.68 pp (58.12 vs 55.45 avg)",
                 _pp(s), None if s is None else s.mean > 0, f"per task: {note}" if note else "")


def _swap(d: StudyData, block: str, task: str) -> tuple[Optional[Stat], Optional[Stat]]:
    key = f"accuracy_{task}"
    steps = ("module_grid", "short_tasks")
    if block == "mha":
        a = _seed_diff(d, steps, grid_label("long", "short"), steps, "short", key)
        b = _seed_diff(d, steps, grid_label("short", "long"), steps, "long", key)
    else:
        a = _seed_diff(d, steps, grid_label("short", "long"), steps, "short", key)
        b = _seed_diff(d, steps, grid_label("long", "short"), steps, "long", key)
    return a, b


def _swap_claim(d: StudyData, n: int, block: str, benchmark: str, paper: str) -> Claim:
    """Claims 2 and 3: long's block helps the short host, short's block hurts the long host."""
    t = ANALOGUE[benchmark]
    a, b = _swap(d, block, t)
    holds = None if a is None or b is None else (a.mean > 0 and b.mean < 0)
    name = {"gsm8k": "GSM8K", "world_capital": "World Capital"}[benchmark]
    return Claim(n, f"Swapping in long's {block.upper()} helps short; short's {block.upper()} hurts long ({name} → {t})",
                 f"short+long.{block} − short ; long+short.{block} − long", paper, f"{_pp(a)} ; {_pp(b)}", holds)


def claim_mha_swap(d: StudyData) -> Claim:
    return _swap_claim(d, 2, "mha", "gsm8k", "+13.1 pp ; −3.6 pp")


def claim_ffn_swap(d: StudyData) -> Claim:
    return _swap_claim(d, 3, "ffn", "world_capital", "+2.4 / −2.0 pp (World Capital); +5.0 / −3.7 pp (NQ)")


def claim_retrieval(d: StudyData) -> Claim:
    f = lambda r: select(r, "score")  # noqa: E731
    lo, sh = d.array("retrieval", "long", f), d.array("retrieval", "short", f)
    if lo is None or sh is None:
        return Claim(4, "Long SFT has higher retrieval scores", "overall retrieval score long vs short; heads improved",
                     "16.94 vs 15.39; 35 vs 11 heads", "n/a", None, "retrieval step did not run")
    if not (np.isfinite(lo).any() and np.isfinite(sh).any()):
        return Claim(4, "Long SFT has higher retrieval scores", "overall retrieval score long vs short; heads improved",
                     "16.94 vs 15.39; 35 vs 11 heads", "n/a", None, "not measured: an arm copied no needle")
    thr = next((float(u.result.settings.get("threshold", 0.1)) for u in d.step("retrieval")), 0.1)
    ret = (lo > thr) | (sh > thr)
    up, down = int(((lo > sh) & ret).sum()), int(((lo < sh) & ret).sum())
    ol, os_ = 100 * float(np.nanmean(lo)), 100 * float(np.nanmean(sh))
    return Claim(4, "Long SFT has higher retrieval scores (more retrieval heads improved)",
                 "mean head score ×100, long vs short; retrieval heads higher in long vs in short",
                 "16.94 vs 15.39; 35 vs 11 heads", f"{ol:.2f} vs {os_:.2f}; {up} vs {down} heads",
                 bool(ol > os_ and not np.isclose(ol, os_) and up > down),
                 f"{int(ret.sum())} heads score > {thr} in either arm; the claim needs both a higher mean "
                 "score and more retrieval heads improved than worsened")


def _late_layers(n: int) -> slice:
    return slice(n // 3, n)


def claim_entropy(d: StudyData) -> Claim:
    rp = d.reasoning_phase()
    if rp is None or entropy(d, "long", "answer") is None or entropy(d, "short", "answer") is None:
        return Claim(5, "Long SFT: higher reasoning entropy, lower answer entropy (middle-to-late layers)",
                     "Δ entropy long − short", "reasoning ↑, answer ↓ in layers 10, 12, 18–30", "n/a", None,
                     "attention spread did not run")
    n = entropy(d, "long", "answer").shape[0]  # type: ignore[union-attr]
    sl = _late_layers(n)
    dr = float(np.nanmean((entropy(d, "long", rp) - entropy(d, "short", rp))[sl]))  # type: ignore[operator]
    da = float(np.nanmean((entropy(d, "long", "answer") - entropy(d, "short", "answer"))[sl]))  # type: ignore[operator]
    note = "" if rp == "reasoning" else "the prompt sets have no chain of thought: the prompt phase stands in for reasoning"
    return Claim(5, "Long SFT: higher reasoning entropy, lower answer entropy (middle-to-late layers)",
                 f"mean Δ entropy long − short over layers {sl.start}–{n - 1} ({rp} ; answer)",
                 "> 0 ; < 0 (layers 10, 12, 18–30 of 32)", f"{dr:+.3f} nats ; {da:+.3f} nats", dr > 0 and da < 0, note)


def claim_ffn(d: StudyData) -> Claim:
    vals = {}
    for stat in ("mean", "var", "sparsity"):
        s, l = ffn_stat(d, "short", stat), ffn_stat(d, "long", stat)
        if s is None or l is None:
            return Claim(6, "Long SFT: higher FFN activation mean and variance, lower sparsity",
                         "relative Δ (long − short)/|short|", "mean ↑, variance ↑, sparsity ↓", "n/a", None,
                         "FFN step did not run")
        vals[stat] = 100 * float(np.nanmean((l - s) / np.where(np.abs(s) > 0, np.abs(s), np.nan)))
    holds = vals["mean"] > 0 and vals["var"] > 0 and vals["sparsity"] < 0
    return Claim(6, "Long SFT: higher FFN activation mean and variance, lower sparsity",
                 "relative Δ (long − short)/|short|, mean over layers: mean ; variance ; sparsity",
                 "mean ↑, variance ↑, sparsity ↓", f"{vals['mean']:+.1f}% ; {vals['var']:+.1f}% ; {vals['sparsity']:+.1f}%",
                 holds)


def claim_knowledge(d: StudyData) -> Claim:
    s, l = d.summary("knowledge", "short", "yn_accuracy"), d.summary("knowledge", "long", "yn_accuracy")
    if s is None or l is None:
        return Claim(7, "Conflict accuracy falls from short-only to long-only (memory → context)",
                     "yes/no conflict accuracy short vs long", "99.8% vs 50%", "n/a", None, "knowledge step did not run")
    labels = [x for x in d.arm_labels("knowledge") if d.long_fraction(x) is not None]
    seq = [d.summary("knowledge", x, "yn_accuracy") for x in labels]
    note = ""
    if len(labels) > 2 and all(v is not None for v in seq):
        m = [v.mean for v in seq]  # type: ignore[union-attr]
        mono = all(b <= a + 1e-9 for a, b in zip(m, m[1:]))
        note = ("monotone non-increasing" if mono else "not monotone") + " over " + ", ".join(
            f"{x} {100 * v:.0f}%" for x, v in zip(labels, m))
    return Claim(7, "Conflict accuracy falls from short-only to long-only (memory → context)",
                 "yes/no conflict accuracy short vs long", "99.8% vs 50%",
                 f"{s.fmt(100, 1, '%')} vs {l.fmt(100, 1, '%')}", s.mean > l.mean, note)


def claim_mix_peaks(d: StudyData) -> Claim:
    labels = d.sft_arms("short_tasks")
    g, m = ANALOGUE["gsm8k"], ANALOGUE["mmlu"]
    if not d.has_mixes("short_tasks"):
        return Claim(8, f"{g} (GSM8K) peaks at a 50/50 mix; {m} (MMLU) peaks at long-only",
                     "long fraction of the best mix", "GSM8K 50%; MMLU 100%", "n/a", None,
                     "needs organism hybrid mixes (organism-only step)")
    def best(t: str) -> tuple[Optional[float], str]:
        vals = [(d.task_acc(x, t, "short_tasks"), x) for x in labels]
        vals = [(v.mean, x) for v, x in vals if v is not None]
        if not vals:
            return None, "n/a"
        top = max(v for v, _ in vals)
        winners = [x for v, x in vals if np.isclose(v, top)]
        return d.long_fraction(winners[0]), "/".join(f"{100 * d.long_fraction(w):.0f}%" for w in winners)  # type: ignore[operator]
    (bg, sg), (bm, sm) = best(g), best(m)
    holds = None if bg is None or bm is None else (0.0 < bg < 1.0 and bm == 1.0)
    return Claim(8, f"{g} (GSM8K) peaks at a mixed ratio; {m} (MMLU) peaks at long-only",
                 "long fraction of the best arm (ties listed)", "GSM8K 50%; MMLU 100%", f"{g} {sg}; {m} {sm}", holds)


def claim_retrieval_mix(d: StudyData) -> Claim:
    labels = d.sft_arms("retrieval")
    if not d.has_mixes("retrieval"):
        return Claim(9, "Retrieval score over mixes is non-monotonic", "mean head score ×100 by long fraction",
                     "17.31 at 10% UltraChat vs 16.94 long-only, 15.39 short-only", "n/a", None,
                     "needs organism hybrid mixes (organism-only step)")
    vals = [d.array("retrieval", x, lambda r: select(r, "score")) for x in labels]
    if any(v is not None and not np.isfinite(v).any() for v in vals):
        return Claim(9, "Retrieval score over mixes is non-monotonic", "mean head score ×100 by long fraction",
                     "17.31 at 10% UltraChat vs 16.94 long-only, 15.39 short-only", "n/a", None,
                     "not measured: an arm copied no needle")
    m = [100 * float(np.nanmean(v)) for v in vals if v is not None]
    inc = all(b >= a for a, b in zip(m, m[1:]))
    dec = all(b <= a for a, b in zip(m, m[1:]))
    return Claim(9, "Retrieval score over mixes is non-monotonic", "mean head score ×100 by long fraction",
                 "17.31 at 10% UltraChat vs 16.94 long-only, 15.39 short-only",
                 ", ".join(f"{100 * d.long_fraction(x):.0f}%: {v:.2f}" for x, v in zip(labels, m)),  # type: ignore[operator]
                 not (inc or dec))


CLAIMS: list[Callable[[StudyData], Claim]] = [
    claim_long_beats_short, claim_mha_swap, claim_ffn_swap, claim_retrieval, claim_entropy, claim_ffn,
    claim_knowledge, claim_mix_peaks, claim_retrieval_mix,
]


def claims_table(d: StudyData) -> list[Claim]:
    """Every claim of paper.md §7, measured on ``d``."""
    out = []
    for f in CLAIMS:
        try:
            out.append(f(d))
        except Exception as e:  # a malformed result must not hide the other claims
            out.append(Claim(len(out) + 1, f.__name__, "", "", "n/a", None, f"could not compute: {type(e).__name__}: {e}"))
    return out
