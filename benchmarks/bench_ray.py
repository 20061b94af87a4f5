"""The per-layer swap sweep of an organism study run by the local executor and by Ray with 1 and 2
workers, side by side in one run: wall time, speed-up and Ray's per-unit overhead.

    python benchmarks/bench_ray.py [--organism quick] [--organism-dir DIR] [--steps layer_sweep]
                                   [--cpus-per-unit 1] [--repeats 1]

Each Ray run starts a fresh local Ray instance with room for N units at once (``num_cpus`` = N x
cpus-per-unit) and times the study's unit phase twice: ``cold`` (a fresh instance: every worker
process starts and imports torch and lensft) and ``warm`` (the same instance again, into a new
directory: the workers are up). The local executor runs torch on cpus-per-unit threads (the same as
each Ray unit: that is what makes the result files byte-identical, which the script checks) and,
for reference, on all of torch's default threads.

Per-unit overhead = (Ray with 1 worker - local with the same threads) / units: what scheduling,
shipping the task and its result, and rebuilding each unit's model from the checkpoint paths cost
(the local executor keeps the replicate's triple loaded across units).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from lensft import organism
from lensft.study import STEP_NAMES, StepConfig, StudyConfig, run
from lensft.study.ray_executor import RayExecutor, import_ray


def _config(preset: str, organism_dir: Optional[str], steps: tuple[str, ...]) -> StudyConfig:
    return StudyConfig(organism=preset, organism_dir=organism_dir, report=False,
                       steps={n: StepConfig(enabled=n in steps) for n in STEP_NAMES})


def _timed(cfg: StudyConfig, out: Path, executor: Optional[Any]) -> tuple[float, int]:
    """Seconds the study's units took (the record's total less resolving the sources), units run."""
    t0 = time.perf_counter()
    outcome = run(cfg, out, executor=executor)
    wall = time.perf_counter() - t0
    assert not outcome.failures, outcome.failures
    n = sum(u.status == "run" for u in outcome.record.units())
    return wall - outcome.record.prepare_seconds, n


def _same_results(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in (a / "results").glob("*.json"))
    return names == sorted(p.name for p in (b / "results").glob("*.json")) and all(
        (a / "results" / n).read_bytes() == (b / "results" / n).read_bytes() for n in names)


def _with_threads(n: int, fn: Callable[[], Any]) -> Any:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def _ray_runs(cfg: StudyConfig, root: Path, workers: int, cpus: int, repeats: int) -> dict[str, Any]:
    """Cold and warm timings on a fresh local Ray instance with room for ``workers`` units."""
    ray = import_ray()
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers * cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20)
    start = time.perf_counter() - t0
    ex = RayExecutor(cpus_per_unit=cpus, poll_seconds=0.05)
    try:
        cold, n = _timed(cfg, root / f"ray{workers}-cold", ex)
        warm = [_timed(cfg, root / f"ray{workers}-warm{i}", ex)[0] for i in range(repeats)]
    finally:
        ray.shutdown()
    return {"start": start, "cold": cold, "warm": statistics.median(warm), "units": n,
            "dirs": [root / f"ray{workers}-cold", root / f"ray{workers}-warm0"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--organism", default="quick", help="organism preset (tiny, quick, full)")
    ap.add_argument("--organism-dir", default=None, help="organism build directory (default: lensft's cache)")
    ap.add_argument("--steps", default="layer_sweep", help="comma-separated study steps")
    ap.add_argument("--cpus-per-unit", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="warm runs per executor (median)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = _config(a.organism, a.organism_dir, tuple(s.strip() for s in a.steps.split(",")))
    organism.build(a.organism, out=Path(a.organism_dir) / "seed-0" if a.organism_dir else None)  # outside every timing
    root = Path(tempfile.mkdtemp(prefix="lensft-bench-ray-"))
    try:
        _timed(cfg, root / "warmup", None)  # imports, file cache
        local = _with_threads(a.cpus_per_unit, lambda: [_timed(cfg, root / f"local{i}", None) for i in range(a.repeats)])
        t_local, n = statistics.median(t for t, _ in local), local[0][1]
        t_default = statistics.median(_timed(cfg, root / f"default{i}", None)[0] for i in range(a.repeats))
        r1 = _ray_runs(cfg, root, 1, a.cpus_per_unit, a.repeats)
        r2 = _ray_runs(cfg, root, 2, a.cpus_per_unit, a.repeats)
        identical = all(_same_results(root / "local0", d) for d in r1["dirs"] + r2["dirs"])
        _print(a, n, t_local, t_default, r1, r2, identical)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _print(a: argparse.Namespace, n: int, t_local: float, t_default: float, r1: dict, r2: dict, identical: bool) -> None:
    print(f"organism {a.organism}, steps {a.steps}: {n} units; {a.cpus_per_unit} CPU(s) per unit; "
          f"torch default threads {torch.get_num_threads()}")
    print(f"  {'executor':<34}{'wall (s)':>10}{'per unit (s)':>14}{'vs local':>10}")
    rows = [(f"local, {a.cpus_per_unit} thread(s)", t_local), (f"local, {torch.get_num_threads()} threads", t_default),
            ("ray, 1 worker, cold", r1["cold"]), ("ray, 1 worker, warm", r1["warm"]),
            ("ray, 2 workers, cold", r2["cold"]), ("ray, 2 workers, warm", r2["warm"])]
    for name, t in rows:
        print(f"  {name:<34}{t:>10.2f}{t / n:>14.3f}{t_local / t:>9.2f}x")
    print(f"  Ray instance start: {r1['start']:.2f} s (1 worker), {r2['start']:.2f} s (2 workers), not in the walls")
    print(f"  speed-up 2 workers vs 1: {r1['cold'] / r2['cold']:.2f}x cold, {r1['warm'] / r2['warm']:.2f}x warm")
    print(f"  Ray overhead per unit (1 worker - local, same threads): {(r1['cold'] - t_local) / n:.3f} s cold, "
          f"{(r1['warm'] - t_local) / n:.3f} s warm")
    print(f"  result files byte-identical to the local run: {identical}")


if __name__ == "__main__":
    main()
