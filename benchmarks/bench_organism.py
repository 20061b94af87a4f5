"""Benchmark the organism build: wall time per stage, training tokens per second, and (with
``--eval``) every checkpoint scored by lensft's probes on every held-out set.

Run heavy jobs one at a time on the shared 2-core machines::

    python benchmarks/bench_organism.py quick --eval
    python benchmarks/bench_organism.py full --from-scratch --eval --json full.json

The build goes to a fresh temporary directory unless ``--out`` is given (an existing build there
is reused, so ``--out`` with a finished build only re-evaluates). Greedy exact match is the
``short_tasks`` probe's; needle copy accuracy and retrieval heads are ``retrieval_heads``'s (Wu et
al. 2024, over copied items); conflict rates are ``knowledge_preference``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path


def _print_stages(b, wall: float) -> None:
    m = b.manifest
    print(f"organism {b.config.name} at {b.root}: build wall time {wall:.1f} s ({b.config.num_threads} threads); "
          f"base {m.base.origin}")
    print(f"{'stage':<24}{'seconds':>9}{'tokens':>12}{'answer tok':>12}{'tokens/s':>10}{'final loss':>12}")
    rows = [("base", m.base.training)] + [(a.arm.label, a.training) for a in m.arms]
    for name, t in rows:
        print(f"{name:<24}{t.seconds:>9.1f}{t.tokens:>12}{t.answer_tokens:>12}{t.tokens_per_s:>10.0f}{t.final_loss:>12.3f}")
    for name, s in m.stage_seconds.items():
        print(f"{name:<24}{s:>9.1f}")
    print(f"arms: token spread {100 * m.spread('tokens'):.1f}%, answer-token spread {100 * m.spread('answer_tokens'):.1f}%")


def _print_scores(scores: dict) -> None:
    tasks = sorted({n for s in scores.values() for n in s.accuracy})
    print(f"\n{'checkpoint':<24}" + "".join(f"{t:>18}" for t in tasks)
          + f"{'needle copy':>12}{'ret. heads':>11}{'max score':>10}{'ctx-follow':>11}{'mem-follow':>11}{'yn-mem acc':>11}")
    for name, s in scores.items():
        c = s.conflict
        fmt = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
        print(f"{name:<24}" + "".join(f"{s.accuracy[t]:>18.3f}" for t in tasks)
              + f"{fmt(s.needle_copy_accuracy):>12}{s.n_retrieval_heads!s:>11}{fmt(s.max_retrieval_score):>10}"
              f"{fmt(c.get('ctx_follow_rate')):>11}{fmt(c.get('mem_follow_rate')):>11}{fmt(c.get('yn_accuracy')):>11}")


def _print_targets(b, scores: dict) -> dict:
    """Issue 12's capability targets: the base's, and each arm's own-form sanity target."""
    from lensft.organism.targets import BASE_TARGETS, arm_target

    rows = [("base", t, *t.check(scores["base"])) for t in BASE_TARGETS]
    for ref in b.arms:
        if ref.label in scores:
            t = arm_target(ref.long_fraction)
            rows.append((ref.label, t, *t.check(scores[ref.label])))
    print("\ncapability targets (measured on held-out sets)")
    out = []
    for who, t, value, met in rows:
        shown = "-" if value is None else f"{value:.3f}"
        verdict = "not measured" if met is None else ("met" if met else "NOT met")
        print(f"  {who:<12} {t.name:<72} >= {t.bound:<5g} {shown:>7}  {verdict}")
        out.append({"checkpoint": who, "target": t.name, "bound": t.bound, "value": value, "met": met})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", nargs="?", default="quick")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--sft-seeds", type=int, default=None)
    ap.add_argument("--from-scratch", action="store_true", help="pretrain the base instead of copying the shipped one")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--eval", action="store_true", help="score every checkpoint with lensft's probes")
    ap.add_argument("--max-items", type=int, default=None, help="items per prompt set in --eval")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import transformers

    from lensft import organism
    from lensft.organism.evaluate import evaluate_build

    transformers.utils.logging.disable_progress_bar()
    out = args.out or Path(tempfile.mkdtemp(prefix=f"lensft-organism-{args.preset}-"))
    t0 = time.perf_counter()
    b = organism.build(args.preset, seed=args.seed, sft_seeds=args.sft_seeds, from_scratch=args.from_scratch, out=out)
    wall = time.perf_counter() - t0
    _print_stages(b, wall)
    report: dict = {"preset": args.preset, "root": str(b.root), "build_wall_s": wall,
                    "manifest": b.manifest.model_dump(mode="json")}
    if args.eval:
        t0 = time.perf_counter()
        scores = evaluate_build(b, max_items=args.max_items)
        print(f"evaluated {len(scores)} checkpoints in {time.perf_counter() - t0:.1f} s")
        _print_scores(scores)
        report["targets"] = _print_targets(b, scores)
        report["scores"] = {k: v.model_dump(mode="json") for k, v in scores.items()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
