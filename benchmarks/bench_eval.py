"""A per-layer swap sweep scored by lm-evaluation-harness: lensft's in-memory grafts handed to
lm-eval's HF wrapper vs the route without lensft's API — write each graft to disk
(``lensft swap``) and let lm-eval load it from the path (``lm_eval --model hf
--model_args pretrained=DIR``). Both score the same local multiple-choice task with the same
lm-eval call, so the difference is building the model.

    python benchmarks/bench_eval.py [--hidden 768] [--layers 12] [--grafts 4] [--docs 20]

A random-init Llama triple (pico tokenizer, so the vocabulary is small and the weights are the
blocks a swap moves) is built once in a temporary directory. Prints the mean seconds per graft of
each route, the ratio, and the bytes each on-disk graft wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from lensft.checkpoints.load import load_triple
from lensft.evaluation.harness import run_harness
from lensft.evaluation.offline import hf_offline
from lensft.evaluation.quiet import quiet_lm_eval
from lensft.evaluation.settings import HarnessSettings
from lensft.graft import GraftSpec, graft_model, plan_graft
from lensft.graft.export import write_graft
from lensft.pico import build_pico_triple
from lensft.variants import Variant


def _task_dir(root: Path, n_docs: int) -> Path:
    words = ["red", "blue", "green", "mat", "fox", "dog", "Paris", "Rome"]
    docs = [{"prompt": f"Item {i}: the word is", "choices": [words[i % 8], words[(i + 3) % 8]], "label": i % 2}
            for i in range(n_docs)]
    (root / "bench_mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg = {"task": "bench_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(root / "bench_mc.jsonl")}},
           "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "prompt", "doc_to_choice": "choices",
           "doc_to_target": "label", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    (root / "bench_mc.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _from_disk(graft_dir: Path, tasks: Path) -> float:
    """lm-eval loading the checkpoint itself, as its CLI does; returns the score."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    with hf_offline(), quiet_lm_eval():
        out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(graft_dir), "dtype": "float32"},
                                      tasks=["bench_mc"], device="cpu", batch_size=8,
                                      task_manager=TaskManager(include_path=str(tasks), include_defaults=False))
    return float(out["results"]["bench_mc"]["acc,none"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--grafts", type=int, default=4)
    ap.add_argument("--docs", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        root = Path(tmp)
        paths = build_pico_triple(root / "triple", "llama", hidden_size=a.hidden, intermediate_size=a.hidden * 8 // 3,
                                  num_hidden_layers=a.layers, num_attention_heads=12, num_key_value_heads=4)
        tasks = _task_dir(root, a.docs)
        triple = load_triple(short=paths[Variant.SHORT], long=paths[Variant.LONG])
        specs = [GraftSpec.build(mha="long", ffn="short", layers=f"{i}:{i + 1}") for i in range(a.grafts)]
        settings = HarnessSettings(tasks=["bench_mc"], include_path=[str(tasks)], log_samples=False)
        run_harness(graft_model(triple, specs[0]), settings)  # warm-up: imports, task index, first read of the triple

        mem, disk, sizes, agree = [], [], [], True
        for spec in specs:
            t0 = time.perf_counter()
            score_mem = run_harness(graft_model(triple, spec), settings).result.summary["bench_mc/acc,none"]
            mem.append(time.perf_counter() - t0)
            out = root / "graft"
            t0 = time.perf_counter()
            written = write_graft(plan_graft(spec, triple.family, triple.n_layers, triple.metadata()), triple, out,
                                  hash_sources=False)
            score_disk = _from_disk(out, tasks)
            disk.append(time.perf_counter() - t0)
            sizes.append(written.n_bytes)
            agree &= abs(score_mem - score_disk) < 1e-9
            shutil.rmtree(out)
        n_params = sum(p.numel() for p in graft_model(triple, specs[0]).model.parameters())
    print(f"random Llama, {n_params / 1e6:.1f}M parameters, {a.layers} layers; {len(specs)} one-layer MHA grafts, "
          f"{a.docs} multiple-choice documents each")
    print(f"  in-memory graft -> lm-eval:         {statistics.mean(mem):.2f} s per graft")
    print(f"  write graft -> lm-eval loads it:    {statistics.mean(disk):.2f} s per graft "
          f"({statistics.mean(sizes) / 1e6:.0f} MB written each)")
    print(f"  ratio (disk / in-memory):           {statistics.mean(disk) / statistics.mean(mem):.2f}x; "
          f"same scores: {agree}")


if __name__ == "__main__":
    main()
