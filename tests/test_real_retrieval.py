"""Positive controls on a real pretrained model (SmolLM2-135M-Instruct): the retrieval_heads probe
finds what is there.

A 135M instruct model copies Wu et al.-style needles out of 1k- and 4k-token haystacks; the
probe must (1) see the copies (ROUGE-1 recall), (2) find retrieval heads (score > 0.1), and
(3) have found heads that matter: zeroing the top retrieval heads breaks the copying, zeroing
as many heads that score zero does not (Wu et al. 2024, §4's masking test).
Measured values are in the README ("Positive controls on SmolLM2").
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import pytest
import torch

from lensft.handle import ModelHandle, load_model
from lensft.probes.retrieval import RetrievalSettings, retrieval_scores
from lensft.prompts import build_needle_set

pytestmark = pytest.mark.real

N_1K, N_4K = 6, 2  # items per length: what the suite's time budget allows (about 4 s per 1k item, 20 s per 4k item)


@pytest.fixture(scope="module")
def smol(smollm2) -> ModelHandle:
    return load_model(smollm2)


@pytest.fixture(scope="module")
def result_1k(smol):
    return retrieval_scores(smol, build_needle_set((1000,), N_1K, tokenizer=smol.tokenizer, seed=0))


@contextlib.contextmanager
def heads_zeroed(h: ModelHandle, heads: list[tuple[int, int]]) -> Iterator[None]:
    """Zero heads' contributions: their input columns of the attention output projection (Llama layout)."""
    saved = []
    with torch.no_grad():
        for layer, head in heads:
            w = h.attention(layer).o_proj.weight
            cols = slice(head * h.head_dim, (head + 1) * h.head_dim)
            saved.append((w, cols, w[:, cols].clone()))
            w[:, cols] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            for w, cols, old in saved:
                w[:, cols] = old


def test_smollm2_copies_needles_at_1k_and_the_probe_finds_retrieval_heads(result_1k) -> None:
    s = result_1k.summary
    assert s["n_items"] == N_1K and s["n_copied"] >= N_1K - 1
    assert all(r["recall"] > 0.5 for r in result_1k.records if r["copied"])
    assert all(r["n_steps"] > r["needle_tokens"][1] - r["needle_tokens"][0] + 4 for r in result_1k.records)  # not cut
    score = result_1k.array("score")
    assert s["n_retrieval_heads"] >= 3 and s["max_score"] > 0.5
    assert np.sort(score, axis=None)[-1] == pytest.approx(s["max_score"])
    assert (score >= 0).all() and np.median(score) < 0.05  # sparse: most heads never copy


def test_smollm2_copies_needles_at_4k_with_retrieval_heads(smol, result_1k) -> None:
    res = retrieval_scores(smol, build_needle_set((4000,), N_4K, tokenizer=smol.tokenizer, seed=0))
    assert all(3900 < r["prompt_tokens"] < 4200 for r in res.records)
    assert res.summary["n_copied"] >= N_4K - 1 and res.summary["n_retrieval_heads"] >= 3
    top_1k = set(np.argsort(result_1k.array("score"), axis=None)[-5:])
    top_4k = set(np.argsort(res.array("score"), axis=None)[-5:])
    assert len(top_1k & top_4k) >= 2  # the same heads retrieve at both lengths


def test_zeroing_the_top_retrieval_heads_breaks_copying(smol, result_1k) -> None:
    """Wu et al.'s masking test: the 5 top retrieval heads matter for copying; 5 heads of the same
    layers that never retrieve (score 0) do not. Measured on held-out needles (another seed)."""
    score = result_1k.array("score")
    top = [divmod(int(i), smol.n_heads) for i in np.argsort(score, axis=None)[::-1][:5]]
    control: list[tuple[int, int]] = []
    for layer, _ in top:  # the lowest-scoring unused head of each top head's layer
        free = [h for h in np.argsort(score[layer]) if (layer, int(h)) not in top + control]
        control.append((layer, int(free[0])))
    assert all(score[c] == 0 for c in control)
    ps = build_needle_set((1000,), 3, tokenizer=smol.tokenizer, seed=1)
    s = RetrievalSettings(extra_steps=16)
    with heads_zeroed(smol, top):
        broken = retrieval_scores(smol, ps, s).summary["mean_recall"]
    with heads_zeroed(smol, control):
        intact = retrieval_scores(smol, ps, s).summary["mean_recall"]
    assert intact >= 0.9 and broken <= 0.5
