"""Model construction, the training loop and checkpoint saving.

The loop is plain PyTorch: AdamW (no decay on norms), linear warmup then cosine decay to
``min_lr_ratio`` of the peak, gradient clipping, one pass over packed rows. It runs with a fixed
thread count and deterministic algorithms, so the same seed gives bit-identical weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from lensft.organism.config import ModelConfig, TrainConfig
from lensft.organism.packing import Batch, Packed

log = logging.getLogger(__name__)

#: ``progress(stage, step, total_steps, loss)``, called after every optimiser step.
ProgressFn = Callable[[str, int, int, float], None]


@contextlib.contextmanager
def deterministic_torch(num_threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels inside the block; restored afterwards."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def make_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama (GQA, RoPE, untied embeddings) sized for ``tokenizer``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings, rope_theta=cfg.rope_theta,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False, attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _lr_lambda(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def forward_packed(model: LlamaForCausalLM, batch: Batch):
    """The model's output on one packed batch, every packed sequence attending only to itself.

    ``use_cache=False`` matters: transformers builds the block-diagonal mask from restarting
    ``position_ids`` only when no cache is passed; with the default cache, packed sequences would
    attend across each other at scrambled relative positions.
    """
    return model(input_ids=torch.from_numpy(batch.input_ids), position_ids=torch.from_numpy(batch.position_ids),
                 labels=torch.from_numpy(batch.labels), use_cache=False)


def train(model: LlamaForCausalLM, data: Packed, cfg: TrainConfig, *, seed: int, num_threads: int,
          stage: str = "train", progress: ProgressFn | None = None) -> list[dict]:
    """One pass over the batches of ``data``; returns the per-step log.

    Each log entry: ``step``, ``loss`` (mean cross-entropy in nats over labelled tokens), ``lr``,
    ``tokens`` (non-padding tokens seen so far), ``elapsed_s``.
    """
    with deterministic_torch(num_threads):
        torch.manual_seed(seed)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
        steps = len(data.batches)
        warmup = max(1, round(cfg.warmup_ratio * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps, warmup, cfg.min_lr_ratio))
        pad = int(model.config.pad_token_id)
        history: list[dict] = []
        seen = 0
        t0 = time.perf_counter()
        model.train()
        for step, batch in enumerate(data.batches):
            out = forward_packed(model, batch)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            seen += int((batch.input_ids != pad).sum())
            loss = float(out.loss.detach())
            history.append({"step": step + 1, "loss": round(loss, 5), "lr": sched.get_last_lr()[0],
                            "tokens": seen, "elapsed_s": round(time.perf_counter() - t0, 3)})
            if progress is not None:
                progress(stage, step + 1, steps, loss)
            if (step + 1) % 50 == 0 or step + 1 == steps:
                log.info("%s step %d/%d loss %.4f", stage, step + 1, steps, loss)
        model.eval()
    return history


def save_checkpoint(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, path: Path,
                    history: list[dict], meta: dict) -> Path:
    """Write a Hugging Face directory (safetensors, config, tokenizer, generation config) atomically.

    The step log goes to ``training_log.jsonl`` and ``meta`` to ``organism.json`` beside the weights.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=16).save_pretrained(str(tmp))
    with open(tmp / "training_log.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)
    (tmp / "organism.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def tokens_per_second(history: list[dict]) -> float:
    """Training throughput of one stage (non-padding tokens per wall-clock second)."""
    if not history or history[-1]["elapsed_s"] <= 0:
        return float("nan")
    return history[-1]["tokens"] / history[-1]["elapsed_s"]

