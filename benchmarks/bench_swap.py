"""Benchmark: `lensft swap` vs a plain copy of the host checkpoint's files, measured side by side.

Builds a random Llama-architecture triple on local disk (default about 1.2 GB per checkpoint,
fp32, sharded like a real checkpoint), then alternates, ``--repeats`` times:

- ``copy``: ``shutil.copy`` of the host's files into a fresh directory (the disk-bandwidth limit);
- ``swap``: the ``lensft swap --mha long --ffn short`` command line in a subprocess (import time included);
- ``swap (in-process)``: :func:`lensft.graft.export.write_graft` alone, and with ``hash_sources=False``.

Prints wall-time ratios against the copy and the swap's peak resident memory divided by the size
of the largest single tensor. Usage::

    python benchmarks/bench_swap.py [--workdir DIR] [--hidden 1024] [--layers 14] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file


def build_checkpoint(root: Path, *, hidden: int, inter: int, layers: int, vocab: int, heads: int, kv: int,
                     seed: int, shard_bytes: int) -> tuple[Path, int]:
    """A random Llama checkpoint written directly as safetensors shards; returns (path, largest tensor bytes)."""
    g = torch.Generator().manual_seed(seed)
    hd = hidden // heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv * hd, hidden),
            p + "self_attn.v_proj.weight": (kv * hd, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter), p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        })
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    root.mkdir(parents=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=g) * 0.02
        if size + t.nbytes > shard_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    weight_map = {}
    for i, sd in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(sd, str(root / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in sd})
    total = sum(t.nbytes for sd in shards for t in sd.values())
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
           "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "float32"}
    (root / "config.json").write_text(json.dumps(cfg))
    largest = max(t.nbytes for sd in shards for t in sd.values())
    return root, largest


def timed_copy(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    dst.mkdir()
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    os.sync()
    return time.perf_counter() - t


_HWM = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"


def timed_swap_cli(base: Path, short: Path, long: Path, out: Path) -> tuple[float, int]:
    """Wall time of the console script (process start and imports included), and its peak RSS
    (VmHWM of the same command run through ``lensft.cli.app.main`` in a fresh interpreter)."""
    exe = Path(sys.executable).parent / "lensft"
    args = ["swap", "--short", str(short), "--long", str(long), "--mha", "long", "--ffn", "short", "--out", str(out)]
    t = time.perf_counter()
    subprocess.run([str(exe), *args], capture_output=True, text=True, check=True)
    os.sync()
    wall = time.perf_counter() - t
    shutil.rmtree(out)
    code = f"import sys; from lensft.cli.app import main; assert main(sys.argv[1:]) == 0; print({_HWM})"
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return wall, int(r.stdout.strip().splitlines()[-1]) * 1024


def timed_swap_inprocess(short: Path, long: Path, out: Path, hash_sources: bool) -> tuple[float, int]:
    code = (
        "import sys,time,os,resource\n"
        "from lensft.checkpoints.load import load_triple\n"
        "from lensft.graft.export import write_graft\n"
        "from lensft.graft import GraftSpec, plan_graft\n"
        "t=time.perf_counter()\n"
        "tr=load_triple(short=sys.argv[1], long=sys.argv[2])\n"
        "spec=GraftSpec.build(mha='long', ffn='short')\n"
        "write_graft(plan_graft(spec, tr.family, tr.n_layers, tr.metadata()), tr, sys.argv[3], hash_sources=sys.argv[4]=='1')\n"
        "os.sync()\n"
        f"print(time.perf_counter()-t, {_HWM})\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(short), str(long), str(out), "1" if hash_sources else "0"],
                       capture_output=True, text=True, check=True)
    wall, rss_kb = r.stdout.strip().splitlines()[-1].split()
    return float(wall), int(rss_kb) * 1024


def baseline_rss() -> int:
    code = f"import torch, lensft.cli.app, lensft.graft.export; print({_HWM})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1]) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=14)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lensft-bench-swap-", dir=args.workdir))
    try:
        kw = dict(hidden=args.hidden, inter=args.inter, layers=args.layers, vocab=args.vocab, heads=16, kv=4,
                  shard_bytes=500_000_000)
        t0 = time.perf_counter()
        short, largest = build_checkpoint(work / "short", seed=1, **kw)
        long, _ = build_checkpoint(work / "long", seed=2, **kw)
        size = sum(f.stat().st_size for f in short.iterdir())
        print(f"built 2 checkpoints of {size / 1e9:.2f} GB each in {time.perf_counter() - t0:.0f}s "
              f"(largest tensor {largest / 1e6:.0f} MB)")
        rows: dict[str, list[float]] = {"copy": [], "swap CLI": [], "write_graft": [], "write_graft no-hash": []}
        rss: dict[str, int] = {}
        for i in range(args.repeats):
            rows["copy"].append(timed_copy(short, work / f"copy{i}"))
            shutil.rmtree(work / f"copy{i}")
            w, r = timed_swap_cli(short, short, long, work / f"swap{i}")
            rows["swap CLI"].append(w)
            rss["swap CLI"] = max(rss.get("swap CLI", 0), r)
            shutil.rmtree(work / f"swap{i}")
            for key, h in (("write_graft", True), ("write_graft no-hash", False)):
                w, r = timed_swap_inprocess(short, long, work / f"ip{i}", h)
                rows[key].append(w)
                rss[key] = max(rss.get(key, 0), r)
                shutil.rmtree(work / f"ip{i}")
        base_rss = baseline_rss()
        copy = min(rows["copy"])
        print(f"\n{'method':22s} {'best s':>8s} {'median s':>9s} {'÷ copy':>7s} {'peak RSS MB':>12s} "
              f"{'(RSS-imports) ÷ largest tensor':>31s}")
        for k, v in rows.items():
            v = sorted(v)
            r = rss.get(k)
            extra = f"{r / 1e6:12.0f} {(r - base_rss) / largest:31.2f}" if r else f"{'':12s} {'':31s}"
            print(f"{k:22s} {v[0]:8.2f} {v[len(v) // 2]:9.2f} {v[0] / copy:7.2f} {extra}")
        print(f"\nimports alone (python + torch + lensft CLI): peak RSS {base_rss / 1e6:.0f} MB")
        print(f"checkpoint {size / 1e9:.2f} GB; largest tensor {largest / 1e6:.0f} MB; repeats {args.repeats}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
