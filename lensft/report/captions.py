"""Figure captions generated from the numbers: what is plotted, then what the numbers say.

Each function takes the loaded study and returns one paragraph. When the study does not show
one of the paper's effects, the caption says so.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lensft.report.data import ANALOGUE, Stat, StudyData, select
from lensft.report.figures import (FFN_STATS, entropy, ffn_stat, grid_label, knowledge_labels, retrieval_heads,
                                   sweep_deltas)


def _pct(s: Optional[Stat]) -> str:
    return "n/a" if s is None else s.fmt(100, 1, "%")


def _seeds(d: StudyData) -> str:
    n = len(d.seeds)
    return f" Values are means over {n} organism seeds with 95% confidence intervals (1.96·sd/√n)." if n > 1 else ""


def _n_items(d: StudyData, step: str) -> str:
    for u in d.step(step):
        return f"{u.result.prompt_set.n_items if u.result.prompt_set else '?'} items of '{u.result.prompt_set.name if u.result.prompt_set else '?'}'"
    return "no items"


def task_accuracy(d: StudyData) -> str:
    labels = d.arm_labels("short_tasks")
    accs = {l: d.task_acc(l, "all", "short_tasks") for l in labels}
    parts = ", ".join(f"{l} {_pct(a)}" for l, a in accs.items())
    s, lo = accs.get("short"), accs.get("long")
    if s is not None and lo is not None:
        gap = 100 * (lo.mean - s.mean)
        verdict = (f"The long arm is {gap:+.1f} points from the short arm, so the paper's headline gain (+2.68 points) "
                   + ("has the same sign here." if gap > 0 else "is not reproduced here." if gap < 0 else "is absent here (a tie)."))
        tasks = d.tasks()
        wins = [t for t in tasks if (d.task_acc("long", t) and d.task_acc("short", t)
                                     and d.task_acc("long", t).mean > d.task_acc("short", t).mean)]  # type: ignore[union-attr]
        verdict += f" Long beats short on {len(wins)} of {len(tasks)} tasks" + (f" ({', '.join(wins)})." if wins else ".")
    else:
        verdict = "The short or long arm is missing, so the arms cannot be compared."
    return (f"Greedy exact-match accuracy of each SFT arm on each held-out short task ({_n_items(d, 'short_tasks')}); "
            f"'all tasks' pools every item. Overall: {parts}. {verdict}{_seeds(d)}")


def mix_curve(d: StudyData) -> str:
    labels = d.sft_arms("short_tasks")
    out = []
    for t in d.tasks():
        vals = [(d.task_acc(l, t, "short_tasks"), l) for l in labels]
        vals = [(v.mean, l) for v, l in vals if v is not None]
        if vals:
            top = max(v for v, _ in vals)
            best = [f"{100 * d.long_fraction(l):.0f}%" for v, l in vals if np.isclose(v, top)]  # type: ignore[operator]
            out.append(f"{t} peaks at {'/'.join(best)} long data ({100 * top:.1f}%)")
    g = ANALOGUE["gsm8k"]
    return ("Accuracy of the arms trained on mixes of short and long SFT data (0% = short arm, 100% = long arm), per task. "
            + "; ".join(out) + f". The paper finds GSM8K (here: {g}) best at a 50/50 mix and MMLU best with long-only data."
            + _seeds(d))


def module_grid(d: StudyData) -> str:
    out = []
    for t in d.tasks("module_grid"):
        vals = {(m, f): d.task_acc(grid_label(m, f), t, "module_grid", "short_tasks") for m in ("short", "long") for f in ("short", "long")}
        if any(v is None for v in vals.values()):
            continue
        mha = 100 * ((vals["long", "short"].mean + vals["long", "long"].mean) - (vals["short", "short"].mean + vals["short", "long"].mean)) / 2  # type: ignore[union-attr]
        ffn = 100 * ((vals["short", "long"].mean + vals["long", "long"].mean) - (vals["short", "short"].mean + vals["long", "short"].mean)) / 2  # type: ignore[union-attr]
        out.append(f"{t}: long MHA {mha:+.1f}, long FFN {ffn:+.1f} points")
    g, w = ANALOGUE["gsm8k"], ANALOGUE["world_capital"]
    a = d.task_acc(grid_label("long", "short"), g, "module_grid")
    s = d.task_acc("short", g, "module_grid", "short_tasks")
    mha_note = ""
    if a is not None and s is not None:
        delta = 100 * (a.mean - s.mean)
        mha_note = (f" Giving the short model long's MHA changes {g} by {delta:+.1f} points (paper, GSM8K: +13.1)"
                    + (", the paper's direction." if delta > 0 else ", so the paper's MHA effect does not appear here."))
    b = d.task_acc(grid_label("short", "long"), w, "module_grid")
    ffn_note = ""
    if b is not None and s is not None and d.task_acc("short", w) is not None:
        delta = 100 * (b.mean - d.task_acc("short", w).mean)  # type: ignore[union-attr]
        ffn_note = (f" Long's FFN in the short model changes {w} by {delta:+.1f} points (paper, World Capital: +2.4)"
                    + ("." if delta > 0 else ", not the paper's gain."))
    return ("Every combination of attention (MHA) and feed-forward (FFN) blocks from the short and long arms, each cell "
            "the accuracy (%) on one task; embeddings and norms come from the FFN's source (the host). Main effects "
            "(mean over the other block) of taking a block from long instead of short: " + "; ".join(out) + "."
            + mha_note + ffn_note + _seeds(d))


def layer_sweep(d: StudyData) -> str:
    out = []
    for host in ("short", "long"):
        for block in ("mha", "ffn"):
            bands, stats = sweep_deltas(d, host, block)
            vals = [(b, s.mean) for b, s in zip(bands, stats) if s is not None]
            if not vals:
                continue
            b, v = max(vals, key=lambda x: abs(x[1]))
            total = sum(x[1] for x in vals)
            out.append(f"host {host} with the other arm's {block.upper()}: largest change {100 * v:+.1f} points in layers {b} "
                       f"(sum over bands {100 * total:+.1f})")
    if not out:
        return "The per-layer sweep did not run."
    flat = all(abs(s.mean) < 1e-9 for h in ("short", "long") for bl in ("mha", "ffn") for s in sweep_deltas(d, h, bl)[1] if s)
    tail = (" No single band moves accuracy at all on these prompts: the effect is not localised, or there is none to localise."
            if flat else " Bands with the largest |change| carry most of the effect; the paper only swapped all layers at once.")
    return ("Accuracy change (percentage points, all tasks pooled; per-task lines in the legend) when one layer band of the "
            "host takes the other arm's MHA or FFN block. " + "; ".join(out) + "." + tail + _seeds(d))


def _count(pair: tuple) -> str:
    k, n = pair
    return "?" if k is None or n is None else f"{k.mean:.0f} of {n.mean:.0f}"  # Stat over seeds


def retrieval_heatmaps(d: StudyData) -> str:
    f = lambda r: select(r, "score")  # noqa: E731
    lo, sh = d.array("retrieval", "long", f), d.array("retrieval", "short", f)
    if lo is None or sh is None:
        return "Retrieval scores were not measured."
    if not (np.isfinite(lo).any() and np.isfinite(sh).any()):  # an arm copied no needle: no scores (Wu et al.)
        n = {l: (d.summary("retrieval", l, "n_copied"), d.summary("retrieval", l, "n_items")) for l in ("long", "short")}
        return ("Retrieval scores were not measured: head scores count copied needles only (Wu et al. 2024), and the long "
                f"arm copied {_count(n['long'])} needles, the short arm {_count(n['short'])}.")
    thr = next((float(u.result.settings.get("threshold", 0.1)) for u in d.step("retrieval")), 0.1)
    diff = lo - sh
    i, j = np.unravel_index(np.nanargmax(np.abs(diff)), diff.shape)
    cp = {l: d.summary("retrieval", l, "needle_copy_accuracy") for l in ("short", "long")}
    return (f"Retrieval score of each head (Wu et al. 2024: fraction of needle-answer tokens the head copies by its top-1 "
            f"attention while the model decodes), on {_n_items(d, 'retrieval')}. Mean over heads: long {100 * np.nanmean(lo):.2f}, "
            f"short {100 * np.nanmean(sh):.2f} (×100; paper 16.94 vs 15.39). Heads above {thr}: long {int((lo > thr).sum())}, "
            f"short {int((sh > thr).sum())}. Largest difference at layer {i}, head {j} ({diff[i, j]:+.3f}). "
            f"Needle answers copied correctly: long {_pct(cp['long'])}, short {_pct(cp['short'])}."
            + ("" if (lo > thr).any() or (sh > thr).any() else " No head passes the threshold in either arm, so this organism "
               "shows no retrieval heads to compare."))


def retrieval_mixes(d: StudyData) -> str:
    heads, found = retrieval_heads(d)
    if not heads or any(not np.isfinite(m).any() for l in d.arm_labels("retrieval")
                        if (m := d.array("retrieval", l, lambda r: select(r, "score"))) is not None):
        return "Retrieval scores were not measured (an arm copied no needle)."
    what = "heads above the threshold" if found else "no head passes the threshold; the 8 top-scoring heads are shown"
    labels = d.arm_labels("retrieval")
    means = []
    for l in labels:
        m = d.array("retrieval", l, lambda r: select(r, "score"))
        if m is not None:
            means.append(f"{l} {np.mean([m[i, j] for i, j in heads]):.3f}")
    return (f"Retrieval score of the selected heads ({what}; {len(heads)} heads) in every arm, as in the paper's Figure 9. "
            f"Mean over these heads: {', '.join(means)}.")


def entropy_layers(d: StudyData) -> str:
    phases = d.phases()
    out = []
    for ph in phases:
        s, l = entropy(d, "short", ph), entropy(d, "long", ph)
        if s is None or l is None:
            continue
        per = np.nanmean(s - l, axis=-1)
        out.append(f"{ph}: long lower in {int((per > 0).sum())} of {len(per)} layers (mean Δ {np.nanmean(per):+.3f} nats)")
    rp = d.reasoning_phase()
    note = ("" if rp == "reasoning" else " The study's task prompts carry no chain of thought, so the 'prompt' phase (reading "
            "the question) stands in for the paper's reasoning phase.")
    rs, ls = (entropy(d, "short", rp), entropy(d, "long", rp)) if rp else (None, None)
    ans_s, ans_l = entropy(d, "short", "answer"), entropy(d, "long", "answer")
    verdict = ""
    if rs is not None and ls is not None and ans_s is not None and ans_l is not None:
        n = rs.shape[0]
        late = slice(n // 3, n)
        dr, da = np.nanmean((ls - rs)[late]), np.nanmean((ans_l - ans_s)[late])
        verdict = (f" In layers {n // 3}–{n - 1}, long has {'higher' if dr > 0 else 'lower'} {rp} entropy ({dr:+.3f}) and "
                   f"{'lower' if da < 0 else 'higher'} answer entropy ({da:+.3f}); the paper reports higher reasoning and lower "
                   f"answer entropy, which {'holds' if dr > 0 and da < 0 else 'does not hold'} here.")
    return ("Per-layer attention entropy difference, short − long (nats, mean over heads and queries of each phase; the "
            "paper's sign convention, UltraChat − ChatQA2). " + "; ".join(out) + "." + verdict + note + _seeds(d))


def entropy_heatmaps(d: StudyData) -> str:
    out = []
    for ph in d.phases():
        l, s = entropy(d, "long", ph), entropy(d, "short", ph)
        if l is None or s is None:
            continue
        diff = l - s
        i, j = np.unravel_index(np.nanargmax(np.abs(diff)), diff.shape)
        out.append(f"{ph}: long {np.nanmean(l):.2f}, short {np.nanmean(s):.2f} nats on average; largest difference at "
                   f"layer {i}, head {j} ({diff[i, j]:+.3f})")
    return ("Attention entropy of every head (nats; mean over the phase's queries and the prompts), for the long arm, the "
            "short arm and long − short (red: long higher), one row per phase (paper Figures 11–12). " + "; ".join(out) + ".")


def ffn_layers(d: StudyData) -> str:
    out = []
    for l in d.arm_labels("ffn_activations"):
        m, v, sp = ffn_stat(d, l, "mean"), ffn_stat(d, l, "var"), ffn_stat(d, l, "sparsity")
        if m is None:
            continue
        trend = "rises" if m[-1] > m[0] else "falls"
        out.append(f"{l}: mean {np.nanmean(m):.4f}, variance {np.nanmean(v):.4f}, sparsity {100 * np.nanmean(sp):.1f}% "  # type: ignore[arg-type]
                   f"(mean {trend} from first to last layer)")
    thr = next((u.result.coords.get("threshold", [0.01])[0] for u in d.step("ffn_activations")), 0.01)
    return (f"FFN activation statistics per layer, pooled over every token and neuron of {_n_items(d, 'ffn_activations')} "
            f"(a = act(W_gate x), the paper's g(H W_in); sparsity = share of |a| < {thr}). " + "; ".join(out)
            + ". The paper (App. G) reports mean and variance rising with depth.")


def ffn_delta(d: StudyData) -> str:
    out, signs = [], {}
    for stat, _ in FFN_STATS:
        s, l = ffn_stat(d, "short", stat), ffn_stat(d, "long", stat)
        if s is None or l is None:
            continue
        rel = 100 * (l - s) / np.where(np.abs(s) > 0, np.abs(s), np.nan)
        signs[stat] = float(np.nanmean(rel))
        out.append(f"{stat} {signs[stat]:+.1f}% on average ({int((rel > 0).sum())} of {len(rel)} layers up)")
    ok = signs and signs.get("mean", 0) > 0 and signs.get("var", 0) > 0 and signs.get("sparsity", 0) < 0
    return ("Relative difference (long − short)/|short| of each FFN statistic per layer (%, paper Figure 5). "
            + "; ".join(out) + ". The paper finds long SFT with higher mean and variance and lower sparsity; "
            + ("the organism agrees." if ok else "the organism does not show all three."))


def knowledge_bars(d: StudyData) -> str:
    labels = knowledge_labels(d)
    acc = {l: d.summary("knowledge", l, "yn_accuracy") for l in labels}
    parts = ", ".join(f"{l} {_pct(a)}" for l, a in acc.items())
    s, l = acc.get("short"), acc.get("long")
    verdict = ""
    if s is not None and l is not None:
        verdict = (f" The paper reports 99.8% (short) vs 50% (long); here short is {100 * (s.mean - l.mean):+.1f} points from long"
                   + (", the paper's direction." if s.mean > l.mean else ", so the paper's memory-vs-context split does not appear."))
    g1, g2 = acc.get(grid_label("long", "short")), acc.get(grid_label("short", "long"))
    graft = ""
    if g1 is not None and g2 is not None and s is not None and l is not None:
        graft = (f" With the other arm's MHA: short+long.mha {_pct(g1)} (short {_pct(s)}), long+short.mha {_pct(g2)} "
                 f"(long {_pct(l)}) — the MHA source moves the preference by {100 * (g1.mean - s.mean):+.1f} and "
                 f"{100 * (g2.mean - l.mean):+.1f} points.")
    return ("Yes/no accuracy on knowledge-conflict items, scored against the memorised fact (the paper's metric: high = the "
            "model keeps its parametric knowledge despite the context; 50% = chance), and the share of items where the "
            f"context answer is more likely than the memorised one ({_n_items(d, 'knowledge')}). {parts}.{verdict}{graft}{_seeds(d)}")


def knowledge_mix(d: StudyData) -> str:
    labels = d.sft_arms("knowledge")
    vals = [(l, d.summary("knowledge", l, "yn_accuracy")) for l in labels]
    vals = [(l, v) for l, v in vals if v is not None]
    m = [v.mean for _, v in vals]
    mono = all(b <= a + 1e-9 for a, b in zip(m, m[1:]))
    return ("Yes/no conflict accuracy against the share of long data in the SFT mix (paper Figure 6 / Table 6). "
            + ", ".join(f"{100 * d.long_fraction(l):.0f}%: {_pct(v)}" for l, v in vals)  # type: ignore[operator]
            + (". Accuracy falls monotonically as long data grows, as in the paper." if mono and m[0] > m[-1]
               else ". The curve is not the paper's monotone decline."))


def lens_margin(d: StudyData) -> str:
    out = []
    for l in knowledge_labels(d):
        a = d.array("knowledge", l, lambda r: select(r, "lens_margin", subset="all"))
        if a is None or not np.isfinite(a).any():
            continue
        flip = next((i for i in range(len(a)) if np.isfinite(a[i]) and np.sign(a[i]) == np.sign(a[-1]) and
                     all(np.sign(x) == np.sign(a[-1]) for x in a[i:] if np.isfinite(x))), None)
        out.append(f"{l}: final {a[-1]:+.2f} nats" + (f", sign settled from layer {flip}" if flip is not None else ""))
    return ("Logit-lens margin log p(context answer) − log p(memorised answer) (nats, first answer token) read from the "
            "residual stream after each layer, mean over conflict items: positive means the context answer leads at that "
            "depth. The layer where a model's margin settles on its final sign locates where the preference is decided. "
            + "; ".join(out) + ".")


def patching(d: StudyData) -> str:
    from lensft.report.data import select as _sel

    out = []
    for r in ("short", "long"):
        us = d.by_label("patching", r)
        if not us:
            continue
        gap = Stat.of(u.result.summary.get("gap") for u in us)
        parts = []
        for comp in ("mha", "ffn"):
            a = d.array("patching", r, lambda res, comp=comp: _sel(res, "delta", component=comp))
            if a is not None and np.isfinite(a).any():
                i = int(np.nanargmax(np.abs(a)))
                parts.append(f"{comp.upper()} largest at layer {i} ({a[i]:+.3f})")
            rec = Stat.of(u.result.summary.get(f"recovered_all_{comp}") for u in us)
            if rec is not None:
                parts.append(f"all-layer {comp.upper()} patch recovers {100 * rec.mean:.0f}% of the gap")
        donor = "long" if r == "short" else "short"
        out.append(f"receiver {r} (donor {donor}, margin gap donor − receiver {gap.mean:+.3f} nats): " + ", ".join(parts)
                   if gap else f"receiver {r}: " + ", ".join(parts))
    return ("Change in the receiver's margin log p(context answer) − log p(memorised answer) (nats, mean over conflict "
            "items) when the output of one layer's attention (MHA) or feed-forward (FFN) block is replaced by the donor "
            "arm's on the same tokens. Positive: the donor's block pushes the receiver towards the context. "
            + "; ".join(out) + ".")
