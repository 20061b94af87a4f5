"""The paper's claims (Zheng et al. 2025, arXiv 2509.18762), each restated as testable quantities and measured here.

Every quantity is computed from result files with a paired bootstrap interval
(:mod:`lensft.report.stats`); every verdict is holds / contradicted / inconclusive / not measured
(:mod:`lensft.report.verdicts`). The organism and the built-in task sets stand in for the paper's
benchmarks: ``arithmetic`` for GSM8K, ``fact_recall`` for World Capital / NQ / MMLU, ``cloze``
for LAMBADA (:data:`~lensft.report.data.ANALOGUE`).
"""

from __future__ import annotations

from typing import Callable, Optional

from lensft.report.data import ANALOGUE, LONG, SHORT, StudyData
from lensft.report.knowledge import knowledge_claim
from lensft.report.measures import ceiling_check, diff_of_means, interval, task_correct
from lensft.report.mechanisms import entropy_claim, ffn_claim, retrieval_claim
from lensft.report.mixes import mix_peak_claim, retrieval_mix_claim
from lensft.report.verdicts import Claim, Part, not_measured
from lensft.study.plan import swap
from lensft.study.record import ModelRef
from lensft.variants import Role, Variant

#: the fewest paired items a comparison of accuracies is judged on
MIN_ITEMS = 10


def _accuracy_part(d: StudyData, name: str, steps: tuple[str, ...], a: ModelRef, b: ModelRef, task: Optional[str],
                   direction: int) -> Part:
    """Accuracy(b) − accuracy(a) on the items both were scored on, in percentage points."""
    iv = interval(d, steps, [a, b], task_correct(task), diff_of_means("correct"))
    return Part(name, direction, iv, scale=100, unit=" pp")


def _too_few(parts: list[Part]) -> Optional[str]:
    small = [p.name for p in parts if p.interval is not None and p.interval.n_items < MIN_ITEMS]
    return f"fewer than {MIN_ITEMS} paired items for {', '.join(small)}" if small else None


def claim_long_beats_short(d: StudyData) -> Claim:
    text, paper = "Long-context SFT beats short-context SFT on short tasks", "+2.68 pp (58.12 vs 55.45 avg)"
    part = _accuracy_part(d, "accuracy(long) − accuracy(short), all short tasks", ("short_tasks",), SHORT, LONG, None, +1)
    if part.interval is None:
        return not_measured(1, text, paper, "the short-task step did not score both arms")
    per_task = [(t, interval(d, ("short_tasks",), [SHORT, LONG], task_correct(t), diff_of_means("correct")))
                for t in d.tasks()]
    note = "per task: " + "; ".join(f"{t} {iv.fmt(100, 1, ' pp', signed=True)}" for t, iv in per_task if iv)
    check = _too_few([part]) or ceiling_check(d, ("short_tasks",), [SHORT, LONG], None)
    return Claim(1, text, paper, [part], check=check, note=note)


def _swap_claim(d: StudyData, n: int, block: Role, benchmark: str, paper: str) -> Claim:
    """Claims 2 and 3: the long arm's block helps the short host; the short arm's block hurts the long host."""
    task = ANALOGUE[benchmark]
    name = {"gsm8k": "GSM8K", "world_capital": "World Capital"}[benchmark]
    text = f"Swapping in long's {block.value.upper()} helps short; short's {block.value.upper()} hurts long ({name} → {task})"
    if task not in d.tasks("module_grid"):
        return not_measured(n, text, paper, f"the task set has no {task!r} items (the {name} analogue)")
    steps = ("module_grid", "short_tasks")
    parts = [_accuracy_part(d, f"short + long.{block.value} − short", steps, SHORT,
                            swap(Variant.SHORT, Variant.LONG, block), task, +1),
             _accuracy_part(d, f"long + short.{block.value} − long", steps, LONG,
                            swap(Variant.LONG, Variant.SHORT, block), task, -1)]
    if any(p.interval is None for p in parts):
        return not_measured(n, text, paper, "the module-swap step did not run", parts)
    models = [SHORT, LONG, swap(Variant.SHORT, Variant.LONG, block), swap(Variant.LONG, Variant.SHORT, block)]
    return Claim(n, text, paper, parts, check=_too_few(parts) or ceiling_check(d, steps, models, task),
                 note="each swap keeps everything but the swapped block from its host (the paper's definition)")


def claim_mha_swap(d: StudyData) -> Claim:
    return _swap_claim(d, 2, Role.MHA, "gsm8k", "+13.1 pp ; −3.6 pp")


def claim_ffn_swap(d: StudyData) -> Claim:
    return _swap_claim(d, 3, Role.FFN, "world_capital", "+2.4 / −2.0 pp (World Capital); +5.0 / −3.7 pp (NQ)")


CLAIMS: list[Callable[[StudyData], Claim]] = [
    claim_long_beats_short, claim_mha_swap, claim_ffn_swap, retrieval_claim, entropy_claim, ffn_claim,
    knowledge_claim, mix_peak_claim, retrieval_mix_claim,
]


def claims_table(d: StudyData) -> list[Claim]:
    """Every claim of the paper, measured on ``d``; a claim that cannot be computed says why."""
    out = []
    for k, f in enumerate(CLAIMS, start=1):
        try:
            out.append(f(d))
        except Exception as e:  # a malformed result must not hide the other claims
            out.append(not_measured(k, f.__name__, "", f"could not be computed: {type(e).__name__}: {e}"))
    return out
