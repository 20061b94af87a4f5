"""FFN activation statistics: pure moments, the nnsight runner against hooked tensors, results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lensft.errors import LensftError
from lensft.handle import load_model
from lensft.probes.ffn_activations import FFNActivationsProbe, FFNSettings, batch_moments, ffn_sites, finalize_moments
from lensft.probes.registry import get_probe
from lensft.probes.scoring import continuation_text, encode_continuation, encode_prompt, prompt_text
from lensft.prompts import NeedleItem, Span, TaskItem, TextItem, make_prompt_set
from lensft.results import load_result, save_result
from lensft.variants import Variant

PROBE_FAMILIES = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]

TASKS = make_prompt_set("t", "3", "task", [
    TaskItem(id="a", task="arith", prompt="What is 3 plus 4?", answer="7"),
    TaskItem(id="b", task="fact", prompt="What is the capital of France?", answer="Paris"),
    TaskItem(id="c", task="fact", prompt="Where was Bob born?", answer="Turin"),
])


def test_batch_moments_by_hand() -> None:
    a = torch.tensor([[[1.0, -2.0], [0.001, 3.0], [9.0, 9.0]]])  # [1, 3, 2]; last token is padding
    masks = torch.tensor([[[True, True, False]], [[False, True, False]]])  # phases: all, second-token
    m = batch_moments(a, masks, torch.tensor([0.01, 2.5]))
    assert m.dtype == torch.float64 and m.shape == (2, 1, 6)
    assert_close(m[0, 0], torch.tensor([4, 2.001, 1 + 4 + 1e-6 + 9, 1 + 2 + 0.001 + 3, 1, 3], dtype=torch.float64))
    st = finalize_moments(m)
    vals = torch.tensor([1.0, -2.0, 0.001, 3.0], dtype=torch.float64)
    assert_close(st.mean[0, 0], vals.mean())
    assert_close(st.var[0, 0], vals.var(unbiased=False))
    assert_close(st.sparsity[1, 0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    empty = finalize_moments(torch.zeros(6, dtype=torch.float64))
    assert torch.isnan(empty.mean)


@pytest.mark.parametrize("skip_special", [False, True])
@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_stats_match_hooked_tensors(pico_triples, family: str, skip_special: bool) -> None:
    h = load_model(pico_triples[family][Variant.BASE])
    s = FFNSettings(thresholds=[1e-2, 5e-2], batch_size=2, skip_special=skip_special)
    special = set(h.tokenizer.all_special_ids) if skip_special else set()
    res = FFNActivationsProbe().run(h, TASKS, s)
    sites = ffn_sites(h)
    assert res.coords["site"] == list(sites)
    assert res.coords["phase"] == ["all", "prompt", "answer"]
    # reference: unpadded forward per item, torch hooks on the same modules
    grabbed: dict[str, list[torch.Tensor]] = {k: [] for k in sites}
    hooks = []
    for name, (path, where) in sites.items():
        for i in range(h.n_layers):
            mod = h.model.get_submodule(h.layer_path(i, path))
            if where == "output":
                hooks.append(mod.register_forward_hook(lambda m, a, o, n=name, i=i: grabbed[n].append((i, o.detach()))))
            else:
                hooks.append(mod.register_forward_hook(lambda m, a, o, n=name, i=i: grabbed[n].append((i, a[0].detach()))))
    per_layer: dict[str, list[list[torch.Tensor]]] = {k: [[] for _ in range(h.n_layers)] for k in sites}
    ans_layer: dict[str, list[list[torch.Tensor]]] = {k: [[] for _ in range(h.n_layers)] for k in sites}
    with torch.no_grad():
        for it in TASKS.items:
            text = prompt_text(h, it.prompt, chat=True)
            p = encode_prompt(h, text, chat=True)
            a = encode_continuation(h, continuation_text(text, it.answer, chat=True))
            for k in grabbed:
                grabbed[k].clear()
            h.model(torch.tensor([p + a]))
            keep = torch.tensor([t not in special for t in p + a])  # the oracle drops special tokens itself
            for k in sites:
                for i, t in grabbed[k]:
                    per_layer[k][i].append(t[0][keep].flatten())
                    ans_layer[k][i].append(t[0, len(p):][keep[len(p):]].flatten())
    for hk in hooks:
        hk.remove()
    mean, var, sp = res.array("mean"), res.array("var"), res.array("sparsity")
    for si, k in enumerate(sites):
        for i in range(h.n_layers):
            allv = torch.cat(per_layer[k][i]).double()
            ansv = torch.cat(ans_layer[k][i]).double()
            assert mean[si, 0, i] == pytest.approx(float(allv.mean()), rel=1e-4, abs=1e-7)
            assert var[si, 0, i] == pytest.approx(float(allv.var(unbiased=False)), rel=1e-4, abs=1e-9)
            assert sp[si, 0, i, 1] == pytest.approx(float((allv.abs() < 5e-2).double().mean()), abs=1e-9)
            assert mean[si, 2, i] == pytest.approx(float(ansv.mean()), rel=1e-4, abs=1e-7)
    assert res.summary["n_tokens"] == res.array("n_tokens")[1] + res.array("n_tokens")[2]
    # per-item moments pool back to the layer statistics (count, sum, sum of squares, below threshold)
    mom = np.array([r["act_moments"] for r in res.records]).sum(0)  # [layer, 4]
    assert mom[:, 1] / mom[:, 0] == pytest.approx(mean[0, 0], rel=1e-9)
    assert mom[:, 3] / mom[:, 0] == pytest.approx(sp[0, 0, :, 0], rel=1e-9)
    if skip_special:
        assert any(t in special for it in TASKS.items for t in encode_prompt(h, prompt_text(h, it.prompt, chat=True), chat=True))


def test_batch_size_invariance_and_roundtrip(pico_triples, tmp_path) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    r1 = FFNActivationsProbe().run(h, TASKS, FFNSettings(batch_size=1))
    r3 = FFNActivationsProbe().run(h, TASKS, FFNSettings(batch_size=3))
    assert_close(torch.tensor(r1.array("mean")), torch.tensor(r3.array("mean")), atol=1e-7, rtol=1e-5)
    assert_close(torch.tensor(r1.array("sparsity")), torch.tensor(r3.array("sparsity")), atol=1e-9, rtol=0)
    p = save_result(r3, tmp_path / "ffn.json")
    back = load_result(p)
    assert back.probe == "ffn_activations"
    assert back.model.label == h.label and back.model.sources == h.provenance.sources
    assert back.prompt_set.name == "t" and back.prompt_set.version == "3" and back.prompt_set.n_items == 3
    assert back.settings["thresholds"] == [1e-2] and back.settings["batch_size"] == 3
    assert back.dims["sparsity"] == ["site", "phase", "layer", "threshold"]
    assert len(back.records) == 3 and len(back.records[0]["act_mean"]) == h.n_layers


def test_text_spans_and_phase_restriction(pico_triples) -> None:
    h = load_model(pico_triples["gpt2"][Variant.BASE])
    text = "Question: what is 3 plus 4? Answer: 7."
    ps = make_prompt_set("x", "1", "text", [TextItem(id="q", text=text, spans=[
        Span(name="question", start=0, end=27), Span(name="answer", start=28, end=len(text))])])
    res = get_probe("ffn_activations").run(h, ps, FFNSettings())
    assert res.coords["phase"] == ["all", "question", "answer"]
    n = res.array("n_tokens")
    assert n[1] > 0 and n[2] > 0 and n[1] + n[2] <= n[0]
    only = get_probe("ffn_activations").run(h, ps, FFNSettings(phases=["answer"]))
    assert only.coords["phase"] == ["all", "answer"]
    assert only.array("mean")[0, 1] == pytest.approx(res.array("mean")[0, 2])


def test_rejects_needle_sets(pico_triples) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    ps = make_prompt_set("n", "1", "needle", [NeedleItem(id="n", prompt="abc", needle=Span(name="n", start=0, end=1),
                                                         answer="a", context_tokens=3, depth=0.0)])
    with pytest.raises(LensftError, match="text, task"):
        FFNActivationsProbe().run(h, ps, FFNSettings())
