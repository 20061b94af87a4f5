"""Benchmark: streamed attention statistics vs full-pattern methods, same model and inputs.

One random Llama (default d 512, 8 layers, 8 heads / 4 KV heads, ff 1408, vocab 8192; about
32M parameters, fp32) is saved to a temporary directory. For each sequence length
(512 ... 16384) and method, one worker subprocess loads it, runs a short warm-up, then one
timed forward pass on random token ids (batch 1, ``torch.no_grad``, 2 threads):

- ``sdpa``: plain HF forward with torch's fused attention (baseline);
- ``lensft``: the ``lensft_stats`` kernel with a collector (entropy, normalised entropy,
  distance, sink and one key-span mass per query, aggregated per phase; output from the
  streamed pass) -- what the ``attention_spread`` probe runs;
- ``lensft+sdpa``: the same statistics, output from torch sdpa plus a statistics-only pass;
- ``hf_eager``: HF eager attention with ``output_attentions=True``, entropy from the patterns;
- ``tl_cache``: transformer-lens TransformerBridge ``run_with_cache`` keeping only
  ``hook_pattern``, entropy from the cached patterns.

The ``entropy`` column (mean over layers, heads and queries, nats) is a cross-check: the lensft
methods and ``hf_eager`` / ``tl_cache`` measure the same quantity on the same inputs.

Every worker runs under an address-space limit (``RLIMIT_AS``, default 16 GiB) so running out of
memory raises inside the worker instead of waking the OOM killer, and under a wall-time cap
(default 240 s). A method stops at its first failed or capped length. Reports wall time of the
timed pass, peak RSS of the worker (``ru_maxrss``, model and interpreter included) and the
ratio to the sdpa forward at the same length (``--repeats N``: fastest of N timed passes). All HF forwards keep only the last position's
logits (``logits_to_keep=1``); TL computes all of them.

Usage (heavy; run under the lock)::

    python benchmarks/bench_attention.py [--lengths 512 1024 ...]
        [--methods sdpa lensft ...] [--time-cap 240] [--mem-cap-gib 16] [--budget 900]
        [--device cuda --dtype bfloat16]   # on a GPU: peak is GPU memory allocated, no address-space cap
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LENGTHS = [512, 1024, 2048, 4096, 8192, 16384]
METHODS = ["sdpa", "lensft", "lensft+sdpa", "hf_eager", "tl_cache"]


def build_model(path: Path, *, hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int) -> Path:
    import torch
    import transformers

    from lensft.pico import build_tokenizer

    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                                   max_position_embeddings=32768, tie_word_embeddings=False,
                                   bos_token_id=0, eos_token_id=3, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)  # only TL's boot wants one; ids are random anyway
    return path


# ------------------------------------------------------------------------------------------- worker
def worker(method: str, length: int, model_dir: str, chunk_q: int, chunk_k: int, repeats: int = 1,
           device: str = "cpu", dtype: str = "float32") -> dict:
    import torch

    torch.set_num_threads(2)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import transformers

    transformers.logging.set_verbosity_error()
    from lensft.devices import LoadOptions
    from lensft.handle import load_model

    cuda = device != "cpu"

    vocab = transformers.AutoConfig.from_pretrained(model_dir).vocab_size
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(4, vocab, (1, length), generator=g).to(device if cuda else "cpu")
    warm = ids[:, :64]

    if method == "tl_cache":
        import warnings

        from transformer_lens.model_bridge import TransformerBridge

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bridge = TransformerBridge.boot_transformers(model_dir, device=device)
        n_layers = bridge.cfg.n_layers

        def run(x: torch.Tensor) -> float:
            _, cache = bridge.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pattern"))
            ent = [torch.special.entr(cache[f"blocks.{i}.attn.hook_pattern"]).sum(-1).mean() for i in range(n_layers)]
            return float(torch.stack(ent).mean())
    else:
        handle = load_model(model_dir, LoadOptions(device=device, dtype=dtype),
                            attn_implementation="eager" if method == "hf_eager" else "sdpa")
        model = handle.model

        if method == "sdpa":
            def run(x: torch.Tensor) -> float:
                model(input_ids=x, use_cache=False, logits_to_keep=1)
                return float("nan")
        elif method == "hf_eager":
            def run(x: torch.Tensor) -> float:
                out = model(input_ids=x, use_cache=False, logits_to_keep=1, output_attentions=True)
                return float(torch.stack([torch.special.entr(a.float()).sum(-1).mean() for a in out.attentions]).mean())
        else:
            from lensft.probes.attention_kernel import collect_attention

            out_mode = "sdpa" if method == "lensft+sdpa" else "streamed"

            def run(x: torch.Tensor) -> float:
                n = x.shape[1]
                with collect_attention(handle, phases={"all": [(0, n)], "tail": [(n // 2, n)]},
                                       key_spans={"head": (0, min(n, 64))}, chunk_q=chunk_q, chunk_k=chunk_k,
                                       output=out_mode, top1=False) as col:
                    model(input_ids=x, use_cache=False, logits_to_keep=1)
                return float(col.means()[0, :, :, 0].mean())

    with torch.no_grad():
        run(warm)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ent = run(ids)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        dt = min(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"method": method, "length": length, "ok": True, "seconds": dt, "peak_rss_gib": peak / 2**20,
           "rss_before_gib": rss_before / 2**20, "mean_entropy": ent}
    if cuda:  # weights included
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run_one(method: str, length: int, model_dir: Path, *, time_cap: float, mem_cap: int, chunk_q: int,
            chunk_k: int, repeats: int = 1, device: str = "cpu", dtype: str = "float32") -> dict:
    def limit() -> None:  # CUDA maps far more virtual memory than it uses: no address-space cap there
        if device == "cpu":
            resource.setrlimit(resource.RLIMIT_AS, (mem_cap, mem_cap))

    cmd = [sys.executable, __file__, "--worker", method, str(length), str(model_dir), str(chunk_q), str(chunk_k),
           str(repeats), device, dtype]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=time_cap * repeats + 60, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return {"method": method, "length": length, "ok": False, "error": f"over {time_cap:.0f} s (killed)"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["?"])[-1]
        if "memory" in err.lower() or "alloc" in err.lower():
            err = "out of memory: " + err[:120]
        return {"method": method, "length": length, "ok": False, "error": err[:200], "wall": wall}
    res = json.loads(lines[-1])
    res["wall"] = wall
    if res["seconds"] > time_cap:
        res["ok"] = False
        res["error"] = f"{res['seconds']:.0f} s > cap {time_cap:.0f} s"
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, length, model_dir = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        cq, ck, reps = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
        device, dtype = (sys.argv[8], sys.argv[9]) if len(sys.argv) > 9 else ("cpu", "float32")
        print(json.dumps(worker(method, length, model_dir, cq, ck, reps, device, dtype)), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--time-cap", type=float, default=240.0, help="seconds per (method, length)")
    ap.add_argument("--mem-cap-gib", type=float, default=16.0, help="address-space limit per worker")
    ap.add_argument("--budget", type=float, default=900.0, help="stop starting new runs after this many seconds")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per worker; the fastest is reported")
    ap.add_argument("--chunk-q", type=int, default=256)
    ap.add_argument("--chunk-k", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--inter", type=int, default=1408)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model and inputs go there)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            print(f"bench_attention.py: --device {args.device} but torch sees no GPU", file=sys.stderr)
            sys.exit(2)

    t_start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lensft-bench-attn-") as tmp:
        model_dir = build_model(Path(tmp) / "model", hidden=args.hidden, layers=args.layers, heads=args.heads,
                                kv=args.kv_heads, inter=args.inter, vocab=args.vocab)
        dead: set[str] = set()
        for length in args.lengths:
            for method in args.methods:
                if method in dead:
                    continue
                if time.perf_counter() - t_start > args.budget:
                    rows.append({"method": method, "length": length, "ok": False, "error": "benchmark budget spent"})
                    dead.add(method)
                    continue
                r = run_one(method, length, model_dir, time_cap=args.time_cap, mem_cap=int(args.mem_cap_gib * 2**30),
                            chunk_q=args.chunk_q, chunk_k=args.chunk_k, repeats=args.repeats, device=args.device,
                            dtype=args.dtype)
                rows.append(r)
                print(json.dumps(r), flush=True)
                if not r["ok"]:
                    dead.add(method)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows, args)
    print(f"total benchmark time {time.perf_counter() - t_start:.0f} s")


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    base = {r["length"]: r["seconds"] for r in rows if r["method"] == "sdpa" and r["ok"]}
    where = args.device if args.device == "cpu" else f"{args.device} (peak = GPU memory allocated)"
    print(f"\nLlama d{args.hidden} x{args.layers} layers, {args.heads} heads / {args.kv_heads} kv, vocab {args.vocab}; "
          f"{args.dtype} on {where}, batch 1, 2 threads; cap {args.time_cap:.0f} s and {args.mem_cap_gib:.0f} GiB per run; "
          f"lensft chunks {args.chunk_q}x{args.chunk_k}; best of {args.repeats} timed pass(es)")
    print(f"{'method':<12} {'length':>6} {'time s':>8} {'x sdpa':>7} {'peak GiB':>12} {'entropy':>9}  note")
    for r in sorted(rows, key=lambda r: (METHODS.index(r["method"]), r["length"])):
        if r["ok"]:
            ratio = r["seconds"] / base[r["length"]] if r["length"] in base else float("nan")
            peak = r.get("peak_gpu_gib", r["peak_rss_gib"])
            print(f"{r['method']:<12} {r['length']:>6} {r['seconds']:>8.3f} {ratio:>7.2f} {peak:>12.2f} "
                  f"{r.get('mean_entropy', float('nan')):>9.4f}")
        else:
            print(f"{r['method']:<12} {r['length']:>6} {'-':>8} {'-':>7} {'-':>12}  FAIL: {r.get('error', '')}")
    print("\nlongest length completed:")
    for m in METHODS:
        ok = [r["length"] for r in rows if r["method"] == m and r["ok"]]
        if any(r["method"] == m for r in rows):
            print(f"  {m:<12} {max(ok) if ok else 'none'}")


if __name__ == "__main__":
    main()
