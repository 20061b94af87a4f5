"""The report's sections: which figures, in which order, for which of the paper's results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from lensft.report import figures as F
from lensft.report.benchmarks import benchmark_tables
from lensft.report.data import StudyData
from lensft.report.figures import Drawn


@dataclass(frozen=True)
class FigureSpec:
    id: str
    paper: str
    make: Callable[[StudyData], Optional[Drawn]]


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    intro: str
    steps: tuple[str, ...]
    figures: tuple[FigureSpec, ...]
    tables: Optional[Callable[[StudyData], list[Any]]] = None  # tables shown after the figures


SECTIONS: tuple[Section, ...] = (
    Section("short-tasks", "1. Long-context SFT and short tasks",
            "The paper's starting point (Table 1): SFT on long-context data helps short-context tasks. Here every SFT arm "
            "of the triple is scored on held-out short tasks.", ("short_tasks",),
            (FigureSpec("task_accuracy", "Table 1", F.task_accuracy), FigureSpec("mix_curve", "Figure 7", F.mix_curve))),
    Section("module-swaps", "2. Decoupling MHA and FFN",
            "Module replacement (§3.2): a host keeps everything but one block, which comes from the other arm. The paper "
            "ran the MHA swap on GSM8K and the FFN swap on World Capital; here both swaps of both hosts run on every task, "
            "followed by a per-layer sweep the paper did not run.", ("module_grid", "layer_sweep"),
            (FigureSpec("module_grid", "Figures 1–2", F.module_grid), FigureSpec("layer_sweep", "new", F.layer_sweep))),
    Section("mha", "3. What changes in attention",
            "Retrieval heads (Wu et al. 2024) and attention entropy (Zhang et al. 2024) compare how the arms' attention "
            "finds and spreads over context.", ("retrieval", "attention_spread"),
            (FigureSpec("retrieval_heatmaps", "Figure 3", F.retrieval_heatmaps),
             FigureSpec("retrieval_mixes", "Figure 9", F.retrieval_mixes),
             FigureSpec("entropy_layers", "Figure 4", F.entropy_layers),
             FigureSpec("entropy_heatmaps", "Figures 11–12", F.entropy_heatmaps))),
    Section("ffn", "4. What changes in the FFN",
            "FFN activation statistics on fact questions (the World Capital analogue).", ("ffn_activations",),
            (FigureSpec("ffn_delta", "Figure 5", F.ffn_delta), FigureSpec("ffn_layers", "Figure 10", F.ffn_layers))),
    Section("knowledge", "5. Knowledge-preference bias",
            "Conflict items put a counterfactual statement in context and ask about the memorised fact (§4). The paper: "
            "short SFT keeps its memory (99.8%), long SFT follows the context (50%).", ("knowledge", "patching"),
            (FigureSpec("knowledge_bars", "Table 6 / §4", F.knowledge_bars),
             FigureSpec("knowledge_mix", "Figure 6", F.knowledge_mix),
             FigureSpec("lens_margin", "new", F.lens_margin),
             FigureSpec("patching", "new", F.patching))),
    Section("benchmarks", "6. Standard benchmarks (lm-evaluation-harness)",
            "The paper's benchmarks (or the configured lm-eval tasks) scored by lm-evaluation-harness on every arm and "
            "every swap of the study, with the paper's Table 1 and Figure 1 numbers beside. Scores are means over "
            "documents with 95% bootstrap intervals; Δ is the paired per-document difference against the model named "
            "(a graft's host; the short arm for the long arm and the mixes). The paper evaluated with OpenCompass, so "
            "its numbers are a reference, not a target.", ("benchmarks",), (), tables=benchmark_tables),
)


def build_figures(d: StudyData) -> dict[str, Drawn]:
    """Every figure with data: ``{figure id: drawn figure with caption}``."""
    out = {}
    for sec in SECTIONS:
        for fs in sec.figures:
            drawn = fs.make(d)
            if drawn is not None and drawn.figure.data or (drawn is not None and drawn.figure.layout.annotations):
                out[fs.id] = drawn
    return out
