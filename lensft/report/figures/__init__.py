"""The report's figures, one module per section; each function returns a figure with its caption."""

from lensft.report.figures.attention import entropy_heatmaps, entropy_layers, retrieval_heatmaps, retrieval_mixes
from lensft.report.figures.common import Drawn
from lensft.report.figures.ffn import ffn_delta, ffn_layers
from lensft.report.figures.knowledge import knowledge_bars, knowledge_mix, lens_margin, patching
from lensft.report.figures.tasks import layer_sweep, mix_curve, module_grid, task_accuracy

__all__ = ["Drawn", "entropy_heatmaps", "entropy_layers", "ffn_delta", "ffn_layers", "knowledge_bars", "knowledge_mix",
           "layer_sweep", "lens_margin", "mix_curve", "module_grid", "patching", "retrieval_heatmaps",
           "retrieval_mixes", "task_accuracy"]
