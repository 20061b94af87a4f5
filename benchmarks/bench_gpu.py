"""Benchmark: the study's probes on a bf16 triple on a GPU -- tokens/s and peak GPU memory per probe.

For each model of the study's module grid (short, long, short + long.mha, short + long.ffn), built
in memory on the device with :func:`lensft.graft.graft_model` (grafts share the cached tensors),
every built-in probe runs on its built-in prompts, and ``attention_spread`` also on ``--spread-tokens``
long texts (the streamed kernel, batch ``--batch-size``). A forward pre-hook counts the tokens that
go through the model (padding excluded; generation steps included), so tokens/s is real model
throughput whatever the probe does. Peak memory is ``torch.cuda.max_memory_allocated`` during
the probe (weights included); on the CPU it is the process's peak RSS.

The triple is either yours (``--short S --long L [--base B]``) or synthetic (``--synthetic 1b``:
random bf16 Llama checkpoints of Llama-3.2-1B shape written to ``--workdir``; ``8b``: Llama-3-8B
shape, 16 GB each; ``tiny``: for a smoke test on the CPU).

Usage::

    python benchmarks/bench_gpu.py --synthetic 1b                 # on a CUDA machine
    python benchmarks/bench_gpu.py --short S --long L --device auto
    python benchmarks/bench_gpu.py --synthetic tiny --device cpu  # smoke test without a GPU

Without a CUDA GPU (and without ``--device cpu``) it stops with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab
    "tiny": (256, 688, 4, 8, 4, 8192),
    "1b": (2048, 8192, 16, 32, 8, 128256),
    "8b": (4096, 14336, 32, 32, 8, 128256),
}
MODELS = {"short": dict(mha="short", ffn="short"), "long": dict(mha="long", ffn="long"),
          "short+long.mha": dict(mha="long", ffn="short"), "short+long.ffn": dict(mha="short", ffn="long")}


def fail(msg: str) -> None:
    print(f"bench_gpu.py: {msg}", file=sys.stderr)
    sys.exit(2)


def build_synthetic(root: Path, shape: str, device: str = "cpu") -> dict[str, Path]:
    """Random bf16 Llama checkpoints (short and long: two seeds; no base, which no model here uses)
    with lensft's small BPE tokenizer."""
    import torch
    import transformers

    from lensft.pico import build_tokenizer

    hidden, inter, layers, heads, kv, vocab = SHAPES[shape]
    tok = build_tokenizer()
    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                                   max_position_embeddings=32768, rope_theta=500000.0, tie_word_embeddings=False,
                                   bos_token_id=0, eos_token_id=3, pad_token_id=0)
    out = {}
    for seed, v in ((1, "short"), (2, "long")):
        path = root / v
        if not (path / "config.json").is_file():
            torch.manual_seed(seed)
            with torch.device(device if device.startswith("cuda") else "cpu"):  # random init on the GPU is fast
                model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
            model.save_pretrained(path, max_shard_size="5GB")
            tok.save_pretrained(path)
            del model
        out[v] = path
    return out


def long_texts(n_tokens: int, n: int) -> "object":
    from lensft.prompts.io import make_prompt_set
    from lensft.prompts.schema import Span, TextItem

    words = "the river runs past the old mill where Alice kept her notes on the weather and the harvest".split()
    items = []
    for i in range(n):
        text = " ".join(words[(j * 7 + i) % len(words)] for j in range(n_tokens))
        items.append(TextItem(id=f"long{i}", text=text, spans=[Span(name="start", start=0, end=200)]))
    return make_prompt_set("long_texts", "1", "text", items)


class TokenCounter:
    """Counts real (unpadded) input tokens of every forward call of a model."""

    def __init__(self, model: "object") -> None:
        self.tokens = 0
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)  # type: ignore[attr-defined]

    def hook(self, module: "object", args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None and mask.dim() == 2:
            self.tokens += int(mask[:, -ids.shape[1]:].sum()) if ids is not None else int(mask.sum())
        elif ids is not None:
            self.tokens += ids.numel()
        self.calls += 1


def measure(fn, device: str) -> tuple[float, float]:
    """(seconds, peak memory GiB) of ``fn()``."""
    import torch

    cuda = device != "cpu"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dt, peak


def run(args: argparse.Namespace, paths: dict[str, Path]) -> list[dict]:
    import torch

    from lensft.checkpoints.load import load_triple
    from lensft.devices import LoadOptions
    from lensft.graft import GraftSpec, graft_model
    from lensft.probes.registry import get_probe, list_probes
    from lensft.cli.probe import load_probe_prompts

    triple = load_triple(short=paths["short"], long=paths["long"], base=paths.get("base"))
    opts = LoadOptions(device=args.device, dtype=args.dtype)
    probes = [p for p in list_probes() if not args.probes or p in args.probes]
    rows = []
    for label, spec in MODELS.items():
        if args.models and label not in args.models:
            continue
        dt, peak = measure(lambda: rows.append({"handle": graft_model(triple, GraftSpec.build(**spec), opts)}), args.device)
        handle = rows.pop()["handle"]
        print(json.dumps({"model": label, "step": "build", "seconds": round(dt, 3), "peak_gib": round(peak, 3)}), flush=True)
        jobs = [(name, load_probe_prompts(get_probe(name), None), {}) for name in probes]
        if "attention_spread" in probes:
            jobs.append(("attention_spread", long_texts(args.spread_tokens, args.spread_prompts),
                         {"batch_size": args.batch_size, "max_length": args.spread_tokens}))
        for name, prompts, settings in jobs:
            probe = get_probe(name)
            s = probe.Settings.model_validate({**({"batch_size": args.batch_size} if "batch_size" in probe.Settings.model_fields else {}), **settings})
            counter = TokenCounter(handle.model)
            with torch.no_grad():
                dt, peak = measure(lambda: probe.run(handle, prompts, s), args.device)
            counter.handle.remove()
            row = {"model": label, "probe": name, "prompts": f"{prompts.name} ({len(prompts)})", "seconds": round(dt, 3),
                   "tokens": counter.tokens, "tokens_per_s": round(counter.tokens / dt, 1), "forward_calls": counter.calls,
                   "peak_gib": round(peak, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del handle
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, auto, or cpu (smoke test)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--synthetic", choices=sorted(SHAPES), default=None)
    ap.add_argument("--base", type=Path)
    ap.add_argument("--short", type=Path)
    ap.add_argument("--long", type=Path)
    ap.add_argument("--workdir", type=Path, default=None, help="where synthetic checkpoints go (default: a temp dir)")
    ap.add_argument("--probes", nargs="*", default=None, help="only these probes (default: every registered one)")
    ap.add_argument("--models", nargs="*", default=None, choices=sorted(MODELS),
                    help="only these models of the module grid (default: all four)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--spread-tokens", type=int, default=4096)
    ap.add_argument("--spread-prompts", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        fail(f"no CUDA GPU is visible (torch {torch.__version__}, torch.cuda.is_available() is False); run it on a "
             "GPU machine, or pass --device cpu --synthetic tiny for a smoke test")
    if (args.short is None) != (args.long is None) or (args.short is None and args.synthetic is None):
        fail("pass --short S --long L [--base B], or --synthetic tiny|1b|8b")
    with tempfile.TemporaryDirectory(prefix="lensft-bench-gpu-", dir=args.workdir) as tmp:
        if args.synthetic:
            t = time.perf_counter()
            paths = build_synthetic(Path(tmp), args.synthetic, args.device)
            print(f"built synthetic {args.synthetic} triple in {time.perf_counter() - t:.0f} s", flush=True)
        else:
            paths = {k: getattr(args, k) for k in ("base", "short", "long") if getattr(args, k) is not None}
        rows = run(args, paths)
    dev = torch.cuda.get_device_name(0) if args.device != "cpu" else "CPU"
    print(f"\n{dev}; torch {torch.__version__}; {args.dtype}; batch {args.batch_size}; "
          f"attention_spread long texts {args.spread_prompts} x {args.spread_tokens} tokens")
    print(f"{'model':16s} {'probe':22s} {'prompts':28s} {'s':>8s} {'tokens':>9s} {'tok/s':>10s} {'peak GiB':>9s}")
    for r in rows:
        print(f"{r['model']:16s} {r['probe']:22s} {r['prompts']:28s} {r['seconds']:8.2f} {r['tokens']:9d} "
              f"{r['tokens_per_s']:10.1f} {r['peak_gib']:9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": dev, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
