"""Sanity numbers for organism checkpoints on the organism's prompt sets.

Task sets are scored by the general short-task scorer (:func:`lensft.probes.short_tasks.score_tasks`,
greedy exact match); the conflict set by a small greedy scorer here that reports which answer the
open question follows (context or memory), the yes/no accuracy under memory, and closed-book
accuracy. Used by the benchmark and ``lensft organism info --eval``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from lensft.organism.training import deterministic_torch
from lensft.prompts.io import read_prompt_set
from lensft.prompts.schema import ConflictItem

_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


@torch.no_grad()
def greedy_answers(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *,
                   max_new_tokens: int = 12, batch_size: int = 32) -> list[str]:
    """Greedy completions of chat-formatted user turns (assistant text up to ``<|end|>``)."""
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        chats = [[{"role": "user", "content": prompts[i]}] for i in idx]
        enc = tokenizer.apply_chat_template(chats, add_generation_prompt=True, padding=True,
                                            return_tensors="pt", return_dict=True)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = gen[:, enc["input_ids"].shape[1]:]
        for i, row in zip(idx, new):
            out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return out


def evaluate_checkpoint(checkpoint: Path, prompt_sets: dict[str, Path], *, num_threads: int = 2) -> dict[str, dict]:
    """Scores of one checkpoint on every ``task`` and ``conflict`` prompt set.

    Task sets: ``{"accuracy", "n"}`` (greedy exact match after :func:`normalize`). Conflict set:
    ``context_rate`` / ``memory_rate`` (open answer equals the context / memorised answer),
    ``yn_memory_accuracy`` (yes/no answer agrees with memory, the paper's accuracy) and
    ``closed_book_accuracy`` (the memorised answer without context).
    """
    from lensft.handle import load_model
    from lensft.probes.short_tasks import score_tasks

    handle = load_model(checkpoint)
    model, tok = handle.model, handle.tokenizer
    results: dict[str, dict] = {}
    with deterministic_torch(num_threads):
        for name, path in prompt_sets.items():
            ps = read_prompt_set(path)
            if ps.kind == "task":
                res = score_tasks(handle, ps)
                results[name] = {"accuracy": float(res.summary["accuracy"]), "n": len(ps)}
            elif ps.kind == "conflict":
                items = [it for it in ps.items if isinstance(it, ConflictItem)]
                n = max(1, len(items))
                open_a = [normalize(a) for a in greedy_answers(model, tok, [it.prompt for it in items])]
                closed = [normalize(a) for a in greedy_answers(model, tok, [it.closed_book_prompt for it in items])]
                yn = [normalize(a) for a in greedy_answers(model, tok, [it.yn_prompt or "" for it in items], max_new_tokens=3)]
                results[name] = {
                    "context_rate": sum(a == normalize(it.context_answer) for a, it in zip(open_a, items)) / n,
                    "memory_rate": sum(a == normalize(it.memory_answer) for a, it in zip(open_a, items)) / n,
                    "yn_memory_accuracy": sum(a == ("yes" if it.yn_label else "no") for a, it in zip(yn, items)) / n,
                    "closed_book_accuracy": sum(a == normalize(it.memory_answer) for a, it in zip(closed, items)) / n,
                    "n": len(items),
                }
    return results
