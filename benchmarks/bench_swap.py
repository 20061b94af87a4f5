"""Benchmark: `lensft swap` vs a plain copy of the host's files (and mergekit), measured side by side.

Builds a random Llama-architecture short/long pair on local disk, then alternates, ``--repeats``
times, in fresh processes:

- ``copy``: ``shutil.copy`` of the host checkpoint's files into a fresh directory, then ``sync``
  (what writing the host's bytes costs on this disk: the floor for any graft);
- ``swap CLI``: the ``lensft swap --mha long --ffn short`` command line (process start, imports and
  the sha256 of every source file included, computed cold: an empty digest cache), then ``sync``;
- ``write_graft`` / ``write_graft no-hash``: :func:`lensft.graft.export.write_graft` in a process
  that has already imported lensft (opening the pair, planning, writing), then ``sync``;
- ``... (digests known)``: the same with the sources' sha256 already recorded for these file
  versions (``$LENSFT_CACHE/sha256``), as for every swap after the first from the same checkpoints;
- ``mergekit`` (with ``--mergekit PYTHON``, the interpreter of a separate venv with mergekit
  installed): the same MHA graft as a linear merge with a ``self_attn`` filter (weights 1/0),
  then ``sync``; its output is compared tensor by tensor with lensft's (sha256 of each tensor's bytes).

Prints wall-time ratios against the copy and each method's peak resident memory (``ru_maxrss``
of its process; for the in-process runs also divided by the largest single tensor).

Shapes: ``--shape 1gb`` (default; fp32, d 1024, 14 layers, vocab 32k: 1.1 GB per checkpoint) or
``--shape llama3-8b`` (the Llama-3-8B config in bf16, four shards, 16.1 GB per checkpoint; needs
about 50 GB of free disk: the pair plus one output at a time). ``--build-only`` / ``--reuse DIR``
split building and measuring into two runs. Usage::

    python benchmarks/bench_swap.py [--shape 1gb|llama3-8b] [--repeats 3] [--workdir DIR]
        [--mergekit .venv-mergekit/bin/python] [--build-only --keep | --reuse DIR]
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
from typing import Optional

import torch

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab, dtype, shard bytes
    "tiny": (256, 688, 2, 4, 2, 1000, torch.float32, 1_000_000),  # a smoke test of the script
    "1gb": (1024, 4096, 14, 16, 4, 32000, torch.float32, 500_000_000),
    "llama3-8b": (4096, 14336, 32, 32, 8, 128256, torch.bfloat16, 5_000_000_000),
}


def tensor_shapes(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int) -> dict[str, tuple[int, ...]]:
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
    return shapes


def build_checkpoint(root: Path, shape: str, seed: int) -> tuple[Path, int]:
    """A random Llama checkpoint streamed tensor by tensor into safetensors shards (memory: one
    tensor); returns (path, largest tensor bytes)."""
    from lensft.checkpoints.reader import TensorMeta
    from lensft.checkpoints.writer import safetensors_header
    from lensft.pico import build_tokenizer

    hidden, inter, layers, heads, kv, vocab, dtype, shard_bytes = SHAPES[shape]
    shapes = tensor_shapes(hidden, inter, layers, heads, kv, vocab)
    metas = [TensorMeta(n, s, dtype, "") for n, s in sorted(shapes.items())]
    shards: list[list[TensorMeta]] = [[]]
    size = 0
    for m in metas:
        if size + m.nbytes > shard_bytes and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append(m)
        size += m.nbytes
    root.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offsets = safetensors_header(shard)
        with open(root / fname, "wb") as f:
            f.write(header)
            for m, off in zip(shard, offsets):
                t = torch.empty(m.shape, dtype=dtype)
                if len(m.shape) == 1:
                    t.fill_(1.0)
                else:
                    t.normal_(0.0, 0.02, generator=g)
                assert f.tell() == off
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
                weight_map[m.name] = fname
    total = sum(m.nbytes for m in metas)
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
           "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": 8192, "rope_theta": 500000.0,
           "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": str(dtype).replace("torch.", ""),
           "bos_token_id": 0, "eos_token_id": 3}
    (root / "config.json").write_text(json.dumps(cfg, indent=1))
    build_tokenizer().save_pretrained(root)
    return root, max(m.nbytes for m in metas)


# ------------------------------------------------------------------------------------------- runners
_CHILD = """
import json, resource, subprocess, sys, time, os
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
os.sync()
wall = time.perf_counter() - t
if r.returncode:
    sys.stderr.write(r.stderr[-2000:]); sys.exit(r.returncode)
print(json.dumps({"wall": wall, "peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


_COLD: Optional[str] = None  #: where empty digest caches go (inside the work directory)


def timed_command(cmd: list[str], cache: Path | None = None) -> tuple[float, int]:
    """Wall time (start to exit, then sync) and peak RSS of a command, in a fresh watcher process;
    ``cache``: the ``LENSFT_CACHE`` it sees (default: a new empty one)."""
    env = {**os.environ, "LENSFT_CACHE": str(cache or Path(tempfile.mkdtemp(prefix="lensft-cold-", dir=_COLD)))}
    r = subprocess.run([sys.executable, "-c", _CHILD, *cmd], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr.strip()[-500:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["wall"], d["peak"]


def timed_copy(src: Path, dst: Path) -> tuple[float, int]:
    code = ("import shutil, sys; from pathlib import Path; s, d = Path(sys.argv[1]), Path(sys.argv[2]); d.mkdir(); "
            "[shutil.copy(f, d / f.name) for f in s.iterdir()]")
    return timed_command([sys.executable, "-c", code, str(src), str(dst)])


_INPROC = """
import os, sys, time
from lensft.checkpoints.load import load_triple
from lensft.graft.export import write_graft
from lensft.graft import GraftSpec, plan_graft
t = time.perf_counter()
tr = load_triple(short=sys.argv[1], long=sys.argv[2])
write_graft(plan_graft(GraftSpec.build(mha='long', ffn='short'), tr.family, tr.n_layers, tr.metadata()), tr, sys.argv[3],
            hash_sources=sys.argv[4] == '1')
os.sync()
hwm = int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) * 1024
print(time.perf_counter() - t, hwm)
"""


def timed_inprocess(short: Path, long: Path, out: Path, hash_sources: bool, cache: Path | None = None) -> tuple[float, int]:
    env = {**os.environ, "LENSFT_CACHE": str(cache or Path(tempfile.mkdtemp(prefix="lensft-cold-", dir=_COLD)))}
    r = subprocess.run([sys.executable, "-c", _INPROC, str(short), str(long), str(out), "1" if hash_sources else "0"],
                       capture_output=True, text=True, check=True, env=env)
    wall, hwm = r.stdout.strip().splitlines()[-1].split()
    return float(wall), int(hwm)


def mergekit_config(short: Path, long: Path, dtype: torch.dtype) -> str:
    """The MHA graft as mergekit sees it: a linear merge, weight 1 for long's self_attn tensors
    and for short's others, 0 otherwise, no normalisation."""
    return (f"merge_method: linear\ndtype: {str(dtype).replace('torch.', '')}\nparameters:\n  normalize: false\n"
            f"models:\n  - model: {short}\n    parameters:\n      weight:\n        - filter: self_attn\n"
            f"          value: 0.0\n        - value: 1.0\n  - model: {long}\n    parameters:\n      weight:\n"
            f"        - filter: self_attn\n          value: 1.0\n        - value: 0.0\n")


def tensor_digests(ckpt: Path) -> dict[str, str]:
    """sha256 of each stored tensor's bytes, by name (one tensor in memory at a time)."""
    from safetensors import safe_open

    out = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for name in h.keys():
                t = h.get_tensor(name)
                out[name] = sha256_bytes(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return out


def baseline_rss() -> int:
    code = "import torch, lensft.cli.app, lensft.graft.export; print(int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) * 1024)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- main
def measure(work: Path, short: Path, long: Path, args: argparse.Namespace) -> tuple[dict, dict, dict]:
    exe = str(Path(sys.executable).parent / "lensft")
    rows: dict[str, list[float]] = {}
    rss: dict[str, int] = {}
    notes: dict[str, str] = {}

    def record(key: str, wall: float, peak: int) -> None:
        rows.setdefault(key, []).append(wall)
        rss[key] = max(rss.get(key, 0), peak)
        print(f"  {key:28s} {wall:8.2f} s  peak RSS {peak / 1e6:8.0f} MB", flush=True)

    warm = work / "digests"  # sha256 of the sources recorded once, as after a first swap
    swap_cmd = [exe, "swap", "--short", str(short), "--long", str(long), "--mha", "long", "--ffn", "short", "--out"]
    if args.known_digests:
        timed_command(swap_cmd + [str(work / "warmup")], cache=warm)
        shutil.rmtree(work / "warmup")
    for i in range(args.repeats):
        print(f"repeat {i + 1}/{args.repeats}", flush=True)
        record("copy", *timed_copy(short, work / "copy"))
        shutil.rmtree(work / "copy")
        record("swap CLI", *timed_command(swap_cmd + [str(work / "swap")]))
        if i == 0 and args.mergekit:
            lensft_digests = tensor_digests(work / "swap")
        shutil.rmtree(work / "swap")
        runs = [("write_graft", True, None), ("write_graft no-hash", False, None)]
        if args.known_digests:
            record("swap CLI (digests known)", *timed_command(swap_cmd + [str(work / "swap")], cache=warm))
            shutil.rmtree(work / "swap")
            runs.insert(1, ("write_graft (digests known)", True, warm))
        for key, h, cache in runs:
            record(key, *timed_inprocess(short, long, work / "ip", h, cache))
            shutil.rmtree(work / "ip")
        if args.mergekit:
            cfg = work / "mergekit.yml"
            cfg.write_text(mergekit_config(short, long, SHAPES[args.shape][6]))
            mk = str(Path(args.mergekit).parent / "mergekit-yaml")
            record("mergekit", *timed_command([mk, str(cfg), str(work / "mk"), "--lazy-unpickle", "--copy-tokenizer",
                                               "--quiet"]))
            if i == 0:
                mk_digests = tensor_digests(work / "mk")
                same = sum(mk_digests.get(k) == v for k, v in lensft_digests.items())
                notes["mergekit"] = (f"bit-identical to lensft on {same} of {len(lensft_digests)} tensors"
                                     f"{'' if set(mk_digests) == set(lensft_digests) else ' (tensor names differ)'}")
                print(f"  mergekit output: {notes['mergekit']}", flush=True)
            shutil.rmtree(work / "mk")
    return rows, rss, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1gb")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mergekit", default=None, help="python of a venv with mergekit installed")
    ap.add_argument("--no-known-digests", dest="known_digests", action="store_false",
                    help="skip the rows whose source digests are already recorded")
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    ap.add_argument("--build-only", action="store_true", help="build the pair and stop (with --keep)")
    ap.add_argument("--reuse", type=Path, default=None, help="a directory from an earlier --build-only --keep run")
    args = ap.parse_args()
    work = args.reuse or Path(tempfile.mkdtemp(prefix="lensft-bench-swap-", dir=args.workdir))
    global _COLD
    _COLD = str(work)
    try:
        if args.reuse is None:
            t0 = time.perf_counter()
            build_checkpoint(work / "short", args.shape, seed=1)
            build_checkpoint(work / "long", args.shape, seed=2)
            print(f"built the pair in {time.perf_counter() - t0:.0f} s in {work}", flush=True)
            if args.build_only:
                return
        short, long = work / "short", work / "long"
        size = sum(f.stat().st_size for f in short.iterdir())
        largest = max(torch.Size(s).numel() for s in tensor_shapes(*SHAPES[args.shape][:6]).values()) * \
            torch.empty((), dtype=SHAPES[args.shape][6]).element_size()
        rows, rss, notes = measure(work, short, long, args)
        base_rss = baseline_rss()
        copy = min(rows["copy"])
        print(f"\n{args.shape}: checkpoint {size / 1e9:.2f} GB ({len(list(short.glob('*.safetensors')))} shards), "
              f"largest tensor {largest / 1e6:.0f} MB; {args.repeats} repeat(s), fresh process each; "
              f"{os.cpu_count()} CPU cores")
        print(f"{'method':28s} {'best s':>8s} {'median s':>9s} {'÷ copy':>7s} {'peak RSS MB':>12s} "
              f"{'(RSS − imports) ÷ largest tensor':>33s}")
        for k, v in rows.items():
            v = sorted(v)
            extra = f"{(rss[k] - base_rss) / largest:33.2f}" if k.startswith(("write_graft", "swap")) else f"{'':33s}"
            print(f"{k:28s} {v[0]:8.2f} {v[len(v) // 2]:9.2f} {v[0] / copy:7.2f} {rss[k] / 1e6:12.0f} {extra}")
        print(f"imports alone (python + torch + lensft CLI): peak RSS {base_rss / 1e6:.0f} MB")
        for k, n in notes.items():
            print(f"{k}: {n}")
    finally:
        for d in work.glob("lensft-cold-*"):
            shutil.rmtree(d, ignore_errors=True)
        if not args.keep and not args.build_only:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
