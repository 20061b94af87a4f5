"""Model construction, the training loop and checkpoint saving.

The loop is plain PyTorch: AdamW (no decay on norms and biases), linear warmup then cosine decay
to ``min_lr_ratio`` of the peak, gradient clipping, a weighted next-token loss (each token's
weight comes from :mod:`lensft.organism.encoding`). It runs with a fixed thread count and
deterministic algorithms, so the same seed and data give bit-identical weights on one machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from lensft.atomic import staging_dir, write_bytes_atomic, write_text_atomic
from lensft.errors import LensftError
from lensft.faults import point
from lensft.organism.config import ModelConfig, TrainConfig
from lensft.organism.packing import Batch
from lensft.organism.progress import ProgressEvent, ProgressFn

log = logging.getLogger(__name__)


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


def lr_factor(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate multiplier of step ``s`` (0-based): linear warmup, then cosine to ``min_ratio``."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def forward_packed(model: LlamaForCausalLM, batch: Batch) -> torch.Tensor:
    """Logits ``[rows, row_len, vocab]`` of one packed batch, every packed sequence attending only to itself.

    ``use_cache=False`` matters: transformers builds the block-diagonal mask from restarting
    ``position_ids`` only when no cache is passed; with the default cache, packed sequences would
    attend across each other at scrambled relative positions.
    """
    dev = model.device
    return model(input_ids=torch.from_numpy(batch.input_ids).to(dev),
                 position_ids=torch.from_numpy(batch.position_ids).to(dev), use_cache=False).logits


def weighted_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) with each target token weighted by ``batch.weights``."""
    ids = torch.from_numpy(batch.input_ids)[:, 1:].to(logits.device)
    w = torch.from_numpy(batch.weights)[:, 1:].to(logits.device)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids.flatten(), reduction="none")
    return (ce * w.flatten()).sum() / w.sum().clamp_min(1e-8)


def _save_state(path: Path, model: LlamaForCausalLM, opt: torch.optim.Optimizer, sched, history: list[dict]) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "history": history}, buf)
    write_bytes_atomic(path, buf.getvalue())


def _load_state(path: Path, model: LlamaForCausalLM, opt: torch.optim.Optimizer, sched) -> list[dict]:
    try:  # tensors, dicts, lists, tuples and numbers only: no pickled code can run from a resume state
        state = torch.load(path, weights_only=True, map_location=next(model.parameters()).device)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise LensftError(f"the training state {path} is not a plain tensor file ({msg}); delete it to train "
                          "that stage from its start") from None
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return list(state["history"])


def train(model: LlamaForCausalLM, batches: Iterable[Batch], total_steps: int, cfg: TrainConfig, *, seed: int,
          num_threads: int, stage: str = "train", progress: ProgressFn | None = None,
          max_steps: int | None = None, resume: Path | None = None, save_every: int = 0,
          device: str = "cpu") -> list[dict]:
    """Train for ``total_steps`` steps (or up to step ``max_steps``); return the per-step log.

    The schedule always spans ``total_steps``, so a run stopped after ``max_steps`` took exactly
    the first steps of the full run. With ``resume`` (a file path), the model, optimizer and
    schedule state and the log are saved there every ``save_every`` steps, and a run that finds
    the file continues from it: the batches already trained on are drawn again and skipped, so
    an interrupted and resumed run gives the same weights, bit for bit, as an uninterrupted one.
    Each log entry: ``step``, ``loss`` (weighted cross-entropy, nats), ``lr``, ``tokens`` and
    ``answer_tokens`` seen so far, ``elapsed_s`` (training wall time, summed over resumed runs).
    ``device``: where to train (``cpu``, or ``cuda`` to speed a long run up: same data and
    schedule, not the same bits); the model is returned on the CPU.
    """
    stop = total_steps if max_steps is None else min(max_steps, total_steps)
    with deterministic_torch(num_threads):
        torch.manual_seed(seed)
        model.to(device)
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(total_steps, cfg.warmup_steps, cfg.min_lr_ratio))
        history = _load_state(resume, model, opt, sched) if resume is not None and resume.exists() else []
        it = iter(batches)
        for _ in history:  # draw the batches already trained on again, and skip them
            next(it)
        seen, answers = (history[-1]["tokens"], history[-1]["answer_tokens"]) if history else (0, 0)
        t0 = time.perf_counter() - (history[-1]["elapsed_s"] if history else 0.0)
        if history:
            log.info("%s resumed at step %d/%d", stage, len(history), total_steps)
        model.train()
        for step in range(len(history), stop):
            batch = next(it)
            loss = weighted_loss(forward_packed(model, batch), batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            seen += batch.n_tokens
            answers += batch.n_answer
            elapsed = time.perf_counter() - t0
            value = float(loss.detach())
            history.append({"step": step + 1, "loss": round(value, 6), "lr": sched.get_last_lr()[0], "tokens": seen,
                            "answer_tokens": answers, "elapsed_s": round(elapsed, 3)})
            if progress is not None:
                progress(ProgressEvent(stage, step + 1, total_steps, seen, seen / max(elapsed, 1e-9),
                                       elapsed / (step + 1) * (total_steps - step - 1), value))
            if resume is not None and save_every and (step + 1) % save_every == 0 and step + 1 < total_steps:
                _save_state(resume, model, opt, sched, history)
            if (step + 1) % 100 == 0 or step + 1 == stop:
                log.info("%s step %d/%d loss %.4f (%.0f tokens/s)", stage, step + 1, total_steps, value,
                         seen / max(elapsed, 1e-9))
            point("train.step")
        model.eval()
        model.to("cpu")
    return history


def save_checkpoint(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, path: Path,
                    history: list[dict], meta: dict) -> Path:
    """Write a Hugging Face directory (safetensors, config, tokenizer, generation config) atomically.

    The step log goes to ``training_log.jsonl`` and ``meta`` to ``organism.json`` beside the weights.
    """
    tmp = staging_dir(path)
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=16).save_pretrained(str(tmp))
        write_text_atomic(tmp / "training_log.jsonl", "".join(json.dumps(row) + "\n" for row in history))
        write_text_atomic(tmp / "organism.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
        point("install")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def tokens_per_second(history: list[dict]) -> float:
    """Training throughput of one stage (non-padding tokens per wall-clock second)."""
    if not history or history[-1]["elapsed_s"] <= 0:
        return float("nan")
    return history[-1]["tokens"] / history[-1]["elapsed_s"]
