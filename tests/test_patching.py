"""Activation patching across checkpoints with nnsight."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from lensft.errors import IncompatibleCheckpoints, LensftError
from lensft.handle import ModelHandle, load_model
from lensft.probes.conflict_formats import example_path, load_conflicts
from lensft.probes.patching import patch_across, patched_logits
from lensft.probes.scoring import continuation_logprobs, continuation_text, encode_continuation, encode_prompt, prompt_text
from lensft.prompts import TaskItem, make_prompt_set
from lensft.results import load_result, save_result
from lensft.variants import Variant

PROBE_FAMILIES = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]


def blocks_only_donor(path, seed: int = 1) -> ModelHandle:
    """The same checkpoint with noise added only inside the attention and MLP modules."""
    d = load_model(path, label="donor")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in range(d.n_layers):
            for mod in (d.attention(i), d.mlp(i)):
                for p in mod.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return d


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_self_patch_is_zero_and_full_patch_gives_donor(pico_triples, family: str) -> None:
    path = pico_triples[family][Variant.BASE]
    r = load_model(path)
    ps = load_conflicts(example_path("lensft"))
    same = patch_across(r, r, ps, "both", metric="margin", batch_size=5)
    assert_close(torch.tensor(same.array("delta")), torch.zeros(2, r.n_layers, dtype=torch.float64), atol=1e-6, rtol=0)
    assert same.summary["gap"] == 0 and same.summary["delta_all_both"] == pytest.approx(0, abs=1e-6)

    d = blocks_only_donor(path)
    seqs = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    full = patched_logits(r, d, seqs)
    with torch.no_grad():
        own = [d.model(torch.tensor([s])).logits[0] for s in seqs]
        mine = r.model(torch.tensor([seqs[1]])).logits[0]
    assert_close(full[0], own[0], atol=1e-5, rtol=1e-5)
    assert_close(full[1, :3], own[1], atol=1e-5, rtol=1e-5)
    assert (full[1, :3] - mine).abs().max() > 1e-3  # the patch changed something
    res = patch_across(r, d, ps, "both", metric="margin", mode="all")
    assert res.summary["delta_all_both"] == pytest.approx(res.summary["gap"], abs=1e-4)
    assert res.summary["recovered_all_both"] == pytest.approx(1.0, abs=1e-3)
    assert "delta" not in res.arrays


def test_single_layer_patch_and_task_metric(pico_triples, tmp_path) -> None:
    path = pico_triples["llama"][Variant.BASE]
    r, d = load_model(path), blocks_only_donor(path, seed=3)
    items = [TaskItem(id="a", task="fact", prompt="What is the capital of France?", answer="Paris"),
             TaskItem(id="b", task="arith", prompt="What is 3 plus 4?", answer="7")]
    ps = make_prompt_set("t", "1", "task", items)
    res = patch_across(r, d, ps, "ffn", layers=[1], metric="auto", batch_size=1)
    assert res.settings["metric"] == "answer_logprob" and res.settings["donor"]["label"] == "donor"
    texts = [prompt_text(r, it.prompt, chat=True) for it in items]
    base = continuation_logprobs(r, [encode_prompt(r, t, chat=True) for t in texts],
                                 [encode_continuation(r, continuation_text(t, it.answer, chat=True)) for t, it in zip(texts, items)])
    assert res.summary["host_metric"] == pytest.approx(sum(x[0] for x in base) / 2, abs=1e-4)
    delta = res.array("delta")
    assert delta.shape == (1, r.n_layers) and torch.isnan(torch.tensor(delta[0, 0])) and delta[0, 1] != 0
    # one layer patched alone and "all" over the single chosen layer agree
    assert res.summary["delta_all_ffn"] == pytest.approx(float(delta[0, 1]), abs=1e-6)
    rec = res.records[0]
    assert rec["delta"]["ffn"][0] is None and rec["delta_all"]["ffn"] == pytest.approx(rec["delta"]["ffn"][1])
    back = load_result(save_result(res, tmp_path / "p.json"))
    assert back.probe == "patching" and back.prompt_set.name == "t" and back.settings["layers"] == [1]


def test_patching_rejects_mismatched_models(pico_triples) -> None:
    a = load_model(pico_triples["llama"][Variant.BASE])
    b = load_model(pico_triples["gpt2"][Variant.BASE])
    ps = load_conflicts(example_path("lensft"))
    with pytest.raises(IncompatibleCheckpoints, match="family llama vs gpt2"):
        patch_across(a, b, ps)
    with pytest.raises(LensftError, match="layers must be"):
        patch_across(a, a, ps, layers=[7])
    with pytest.raises(LensftError, match="component"):
        patch_across(a, a, ps, component="mlp")  # type: ignore[arg-type]
