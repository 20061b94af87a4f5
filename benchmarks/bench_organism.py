"""Benchmark the organism build: wall time per stage, training tokens per second, and (with
``--eval``) greedy accuracy of every checkpoint on every held-out set.

Run heavy jobs one at a time on the shared 2-core machines::

    python benchmarks/bench_organism.py --preset quick --eval
    python benchmarks/bench_organism.py --preset full --eval --json full.json

The build goes to a fresh temporary directory unless ``--out`` is given (an existing build there
is reused, so ``--out`` with a finished build only re-evaluates).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--eval", action="store_true", help="score every checkpoint (greedy exact match)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch
    import transformers

    from lensft import organism
    from lensft.organism.evaluate import evaluate_checkpoint

    transformers.utils.logging.disable_progress_bar()
    out = args.out or Path(tempfile.mkdtemp(prefix=f"lensft-organism-{args.preset}-"))
    t0 = time.perf_counter()
    b = organism.build(args.preset, seed=args.seed, out=out)
    wall = time.perf_counter() - t0
    print(f"organism {args.preset} at {b.root}: build wall time {wall:.1f} s "
          f"(torch {torch.__version__}, {b.config.num_threads} threads)")
    print(f"{'stage':<14}{'seconds':>9}{'tokens':>11}{'tokens/s':>10}{'final loss':>12}")
    for name, s in b.stages.items():
        print(f"{name:<14}{s['seconds']:>9.1f}{s.get('tokens', ''):>11}{s.get('tokens_per_s', ''):>10}{s.get('final_loss', ''):>12}")
    report: dict = {"preset": args.preset, "root": str(b.root), "build_wall_s": wall, "stages": b.stages}

    if args.eval:
        sets = {n: p for n, p in b.prompt_sets.items() if n != "needle"}
        scores = {}
        for name, path in b.checkpoints.items():
            t = time.perf_counter()
            scores[name] = evaluate_checkpoint(path, sets, num_threads=b.config.num_threads)
            print(f"evaluated {name} in {time.perf_counter() - t:.1f} s")
        tasks = [n for n in sets if n != "conflict"]
        print(f"\n{'checkpoint':<11}" + "".join(f"{t:>18}" for t in tasks)
              + f"{'ctx-follow':>11}{'mem-follow':>11}{'yn-mem acc':>11}{'closed-book':>12}")
        for name, r in scores.items():
            c = r["conflict"]
            print(f"{name:<11}" + "".join(f"{r[t]['accuracy']:>18.3f}" for t in tasks)
                  + f"{c['context_rate']:>11.3f}{c['memory_rate']:>11.3f}{c['yn_memory_accuracy']:>11.3f}"
                  f"{c['closed_book_accuracy']:>12.3f}")
        report["scores"] = scores
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
