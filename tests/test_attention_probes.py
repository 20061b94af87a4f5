"""Streamed attention statistics, the lensft_stats kernel and the attention_spread probe."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from lensft.handle import load_model
from lensft.probes.attention_kernel import AttentionCollector, collect_attention
from lensft.probes.attention_spread import AttentionSpreadSettings
from lensft.probes.attention_reference import dense_attention_stats, visibility_mask
from lensft.probes.attention_stats import AttentionStats, phase_masks, streaming_attention_stats
from lensft.probes.registry import get_probe
from lensft.prompts.io import make_prompt_set
from lensft.prompts.schema import Span, TaskItem, TextItem
from lensft.results import load_result, save_result
from lensft.variants import Variant

TOL = dict(atol=1e-5, rtol=1e-5)


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, vis: torch.Tensor, scale: float, *,
               softcap: float | None = None, s_aux: torch.Tensor | None = None,
               spans: dict | None = None, query_start: int | None = None) -> tuple[AttentionStats, torch.Tensor]:
    """Naive dense attention (float64): stats and output."""
    b, h, nq, _ = q.shape
    g = h // k.shape[1]
    kk, vv = k.repeat_interleave(g, 1).double(), v.repeat_interleave(g, 1).double()
    s = (q.double() @ kk.transpose(-1, -2)) * scale
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    s = s.masked_fill(~vis, -math.inf)
    if s_aux is not None:
        s = torch.cat([s, s_aux.double().view(1, h, 1, 1).expand(b, h, nq, 1)], dim=-1)
        w = s.softmax(-1)
        ent = torch.special.entr(w).sum(-1)
        w = w[..., :-1]
    else:
        w = s.softmax(-1)
        ent = None
    ref = dense_attention_stats(w, key_spans=spans, visible=vis.expand(*w.shape), query_start=query_start)
    if ent is not None:
        ref.entropy = ent.float()
    return ref, (w @ vv).float()


def _compare(st: AttentionStats, ref: AttentionStats, valid: torch.Tensor | None = None) -> None:
    valid = torch.isfinite(ref.entropy) if valid is None else valid
    for name in ("entropy", "distance", "sink", "n_visible"):
        assert_close(getattr(st, name)[valid], getattr(ref, name)[valid], **TOL, msg=name)
    assert_close(st.span_mass[:, valid], ref.span_mass[:, valid], **TOL)
    assert torch.equal(st.top1[valid], ref.top1[valid])


# ---------------------------------------------------------------------------------- hand-checkable
def test_uniform_attention_has_entropy_log_k() -> None:
    n, d = 9, 4
    q = torch.zeros(1, 2, n, d)
    k = torch.randn(1, 2, n, d)
    st = streaming_attention_stats(q, k, chunk_q=2, chunk_k=3)
    i = torch.arange(n, dtype=torch.float32)
    assert_close(st.entropy[0, 0], torch.log(i + 1), **TOL)
    assert_close(st.normalised_entropy()[0, 0, 1:], torch.ones(n - 1), **TOL)
    assert_close(st.normalised_entropy()[0, 0, 0], torch.tensor(0.0))
    assert_close(st.distance[0, 1], i / 2, **TOL)  # mean of 0..i
    assert_close(st.sink[0, 0], 1 / (i + 1), **TOL)
    assert_close(st.n_visible[0, 0], i + 1)


def test_one_hot_attention_has_zero_entropy_and_distance_offset() -> None:
    n = 8
    target = torch.tensor([0, 0, 1, 1, 2, 3, 3, 5])  # key each query attends to (<= query)
    k = torch.eye(n)[None, None]  # key j = e_j
    q = (200.0 * torch.eye(n)[target])[None, None]
    st = streaming_attention_stats(q, k, scaling=1.0, chunk_q=3, chunk_k=2, key_spans={"x": (2, 4)})
    assert_close(st.entropy[0, 0], torch.zeros(n), atol=1e-5, rtol=0)
    assert_close(st.distance[0, 0], (torch.arange(n) - target).float(), **TOL)
    assert torch.equal(st.top1[0, 0], target)
    assert_close(st.span_mass[0, 0, 0], ((target >= 2) & (target < 4)).float(), **TOL)
    assert_close(st.sink[0, 0], (target == 0).float(), **TOL)


@pytest.mark.parametrize("sliding_window", [None, 5])
@pytest.mark.parametrize("softcap", [None, 2.0])
@pytest.mark.parametrize("padded", [False, True])
def test_streaming_matches_dense_reference(sliding_window: int | None, softcap: float | None, padded: bool) -> None:
    b, h, hkv, n, d = 2, 6, 2, 29, 8  # GQA: 3 query heads per kv head
    q, k, v = torch.randn(b, h, n, d) * 2, torch.randn(b, hkv, n, d) * 2, torch.randn(b, hkv, n, d)
    vis = visibility_mask(n, n, sliding_window=sliding_window)[None, None].expand(b, 1, n, n)
    mask = None
    if padded:  # left padding of 4 tokens on the second row, given as the model's 4-D boolean mask
        keep = torch.ones(b, n, dtype=torch.bool)
        keep[1, :4] = False
        vis = vis & keep[:, None, None, :]
        mask = vis
    spans = {"a": (3, 10), "b": (20, 29)}
    st = streaming_attention_stats(q, k, v, scaling=0.3, attention_mask=mask, sliding_window=sliding_window,
                                   softcap=softcap, key_spans=spans, chunk_q=4, chunk_k=7)
    ref, out = _reference(q, k, v, vis, 0.3, softcap=softcap, spans=spans)
    _compare(st, ref)
    ok = torch.isfinite(ref.entropy)
    assert_close(st.output[ok], out[ok], **TOL)
    if padded:  # fully masked (padding) queries give NaN stats and a zero output
        assert torch.isnan(st.entropy[1, :, :4]).all() and (st.top1[1, :, :4] == -1).all()


@pytest.mark.parametrize("float_mask", [False, True])
def test_float_mask_and_sinks_match_reference(float_mask: bool) -> None:
    b, h, n, d = 1, 4, 17, 8
    q, k, v = torch.randn(b, h, n, d), torch.randn(b, h, n, d), torch.randn(b, h, n, d)
    vis = visibility_mask(n, n)[None, None]
    additive = torch.zeros(1, 1, n, n).masked_fill(~vis, torch.finfo(torch.float32).min) if float_mask else None
    s_aux = torch.randn(h)
    st = streaming_attention_stats(q, k, v, attention_mask=additive, s_aux=s_aux, chunk_q=5, chunk_k=4)
    ref, out = _reference(q, k, v, vis, d**-0.5, s_aux=s_aux)
    _compare(st, ref)
    assert_close(st.output, out, **TOL)


def test_decode_step_with_cropped_cache_uses_absolute_positions() -> None:
    # one query at absolute position 40 over a sliding-window cache holding positions 33..40
    h, d, w = 2, 4, 8
    q, k, v = torch.randn(1, h, 1, d), torch.randn(1, 1, w, d), torch.randn(1, 1, w, d)
    st = streaming_attention_stats(q, k, v, query_start=40, sliding_window=w, key_spans={"x": (30, 35)}, chunk_k=3)
    vis = torch.ones(1, 1, 1, w, dtype=torch.bool)
    ref, out = _reference(q, k, v, vis, d**-0.5, spans={"x": (30, 35)}, query_start=40)
    _compare(st, ref)
    assert ((st.top1 >= 33) & (st.top1 <= 40)).all()


def test_phase_masks() -> None:
    m = phase_masks({"a": [(0, 2), (5, 6)], "b": [(3, 10)]}, torch.arange(2, 7))
    assert m.tolist() == [[False, False, False, True, False], [False, True, True, True, True]]


# ---------------------------------------------------------------------------------- kernel vs HF eager
@torch.no_grad()
def test_kernel_matches_hf_eager_attentions(family_triple) -> None:
    family, triple = family_triple
    h = load_model(triple[Variant.BASE])
    ids = torch.randint(4, len(h.tokenizer), (1, 37))
    spans = {"x": (3, 9)}
    h.set_attn_implementation("eager")
    eager = h.model(ids, output_attentions=True)
    col = AttentionCollector.for_handle(h, keep_per_query=True, chunk_q=8, chunk_k=5, key_spans=spans,
                                        phases={"all": [(0, 37)], "tail": [(30, 37)]})
    with collect_attention(h, col):
        streamed = h.model(ids)
    assert h.model.config._attn_implementation == "eager"  # restored
    assert_close(streamed.logits, eager.logits, **TOL)
    means = col.means()
    for layer, pattern in enumerate(eager.attentions):
        st = col.per_query[layer][0]
        _compare(st, dense_attention_stats(pattern, key_spans=spans), valid=torch.ones_like(st.entropy, dtype=torch.bool))
        assert_close(means[1, layer, :, 0].float(), st.entropy[0, :, 30:].mean(-1), **TOL)


# ---------------------------------------------------------------------------------- TransformerLens cross-check
@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
@torch.no_grad()
def test_kernel_matches_transformer_lens_patterns(family: str, pico_triples, tmp_path: Path) -> None:
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer
    from transformer_lens.model_bridge import TransformerBridge

    local = shutil.copytree(pico_triples[family][Variant.BASE], tmp_path / "m")  # TL rejects paths with 'llama'
    h = load_model(local)
    ids = torch.randint(4, len(h.tokenizer), (1, 33))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = loading.get_pretrained_model_config(str(local), device="cpu", fold_ln=False)
        sd = loading.get_pretrained_state_dict(str(local), cfg, hf_model=load_model(local).model)
        ht = HookedTransformer(cfg, tokenizer=h.tokenizer)
        ht.load_and_process_state_dict(sd, fold_ln=False, center_writing_weights=False, center_unembed=False)
        _, ht_cache = ht.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
        bridge = TransformerBridge.boot_transformers(str(local), hf_model=load_model(local).model,
                                                     tokenizer=h.tokenizer, device="cpu")
        _, br_cache = bridge.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    with collect_attention(h, keep_per_query=True, chunk_q=8, chunk_k=8, key_spans={"x": (2, 7)}) as col:
        h.model(ids)
    for layer in range(h.n_layers):
        st = col.per_query[layer][0]
        for pattern in (ht_cache["pattern", layer], br_cache[f"blocks.{layer}.attn.hook_pattern"]):
            _compare(st, dense_attention_stats(pattern, key_spans={"x": (2, 7)}),
                     valid=torch.ones_like(st.entropy, dtype=torch.bool))


# ---------------------------------------------------------------------------------- probe
def _text_set():
    text = "Passage: Alice was born in Lyon. Reasoning: she was born there, so. Answer: Lyon"
    spans = [Span(name="passage", start=0, end=32), Span(name="reasoning", start=33, end=67),
             Span(name="answer", start=68, end=len(text))]
    return make_prompt_set("spread", "1", "text", [TextItem(id="t0", text=text, spans=spans),
                                                   TextItem(id="t1", text="no spans here at all", spans=[])])


def _task_set():
    return make_prompt_set("tasks", "1", "task", [
        TaskItem(id="q0", task="arith", prompt="what is 3 plus 4?", answer="7", reasoning="3 plus 4 is 7."),
        TaskItem(id="q1", task="arith", prompt="what is 12 minus 5?", answer="7"),
    ])


def test_attention_spread_runs_on_every_family(family_triple, tmp_path: Path) -> None:
    family, triple = family_triple
    h = load_model(triple[Variant.BASE])
    probe = get_probe("attention_spread")
    res = probe.run(h, _text_set(), {"chunk_q": 8, "chunk_k": 8})
    L, H = h.n_layers, h.n_heads
    assert res.coords["phase"] == ["all", "passage", "reasoning", "answer"]
    assert res.array("entropy").shape == (4, L, H)
    assert res.array("entropy_per_prompt").shape == (2, 4, L, H)
    assert res.array("span_mass").shape == (4, 3, L, H)
    assert torch.isnan(torch.tensor(res.array("entropy_per_prompt")[1, 1])).all()  # t1 has no passage
    ne = res.array("norm_entropy")
    assert (ne[~torch.isnan(torch.tensor(ne)).numpy()] <= 1 + 1e-5).all()
    back = load_result(save_result(res, tmp_path / "spread.json"))
    assert back.arrays == res.arrays and back.dims == res.dims and back.summary == res.summary

    res2 = probe.run(h, _task_set(), AttentionSpreadSettings(normalise=True, chat=True))
    assert res2.coords["phase"] == ["prompt", "reasoning", "answer"]
    assert res2.records[0]["phase_tokens"]["answer"] >= 1
    assert res2.summary["headline_entropy_answer"] == res2.summary["mean_norm_entropy_answer"]
    # per-prompt values equal a direct kernel run on the same tokens
    e = res2.records[1]
    ids = torch.tensor([h.tokenizer(h.format_prompt("what is 12 minus 5?"), add_special_tokens=False)["input_ids"]])
    with torch.no_grad(), collect_attention(h, phases={"prompt": [(0, ids.shape[1] - 1)]}) as col:
        h.model(ids)
    assert e["phase_tokens"]["prompt"] == ids.shape[1] - 1  # the last prompt query generates the answer
    assert_close(torch.tensor(res2.array("entropy_per_prompt")[1, 0]), col.means()[0, :, :, 0], **TOL)


@pytest.mark.parametrize("convention", ["generating", "at_tokens"])
@torch.no_grad()
def test_answer_phase_queries_follow_the_named_convention(llama_triple, convention: str) -> None:
    """Oracle: HF eager attention weights. A one-token answer is *generated* by the query at the last
    prompt position (``generating``) and sits at the next position (``at_tokens``)."""
    h = load_model(llama_triple[Variant.BASE])
    ps = make_prompt_set("one", "1", "task", [TaskItem(id="q", task="t", prompt="what is 2 plus 2?", answer="4")])
    res = get_probe("attention_spread").run(h, ps, {"chat": False, "phase_queries": convention})
    p = h.tokenizer("what is 2 plus 2?")["input_ids"]
    a = h.tokenizer(" 4", add_special_tokens=False)["input_ids"]  # plain prompts: the answer follows a space
    assert len(a) == 1, "the oracle needs a one-token answer"
    h.set_attn_implementation("eager")
    att = h.model(torch.tensor([p + a]), output_attentions=True).attentions
    q = len(p) - 1 if convention == "generating" else len(p)
    want = torch.stack([-(w[0, :, q] * w[0, :, q].clamp_min(1e-30).log()).sum(-1) for w in att])  # [layer, head]
    got = torch.tensor(res.array("entropy")[res.coords["phase"].index("answer")])
    assert_close(got, want.double(), atol=1e-5, rtol=1e-5)


def test_attention_spread_streamed_and_sdpa_outputs_agree(llama_triple) -> None:
    h = load_model(llama_triple[Variant.BASE])
    probe = get_probe("attention_spread")
    a = probe.run(h, _task_set(), {"output": "streamed", "chunk_q": 4, "chunk_k": 4})
    b = probe.run(h, _task_set(), {"output": "sdpa"})
    assert_close(torch.tensor(a.array("entropy")), torch.tensor(b.array("entropy")), **TOL)


def test_attention_spread_rejects_needle_sets(llama_triple) -> None:
    from lensft.errors import LensftError
    from lensft.prompts.schema import NeedleItem

    h = load_model(llama_triple[Variant.BASE])
    ps = make_prompt_set("n", "1", "needle", [NeedleItem(id="n", prompt="abc", needle=Span(name="needle", start=0, end=1),
                                                         answer="a", context_tokens=3, depth=0.0)])
    with pytest.raises(LensftError, match="text or task"):
        get_probe("attention_spread").run(h, ps, {})


def _mixed_text_set():
    items = []
    for i, n in enumerate((3, 11, 6, 1, 9)):
        text = " ".join(["Alice went to Lyon and then home."] * n)
        spans = [Span(name="first", start=0, end=12)] + ([Span(name="tail", start=len(text) - 10, end=len(text))] if i % 2 else [])
        items.append(TextItem(id=f"t{i}", text=text, spans=spans))
    return make_prompt_set("mixed", "1", "text", items)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3"])
def test_attention_spread_batched_equals_one_at_a_time(family: str, pico_triples) -> None:
    """Right-padded batches of prompts of different lengths (and different phases and key spans)
    give every prompt the values it gets alone."""
    h = load_model(pico_triples[family][Variant.BASE])
    probe = get_probe("attention_spread")
    one = probe.run(h, _mixed_text_set(), {"batch_size": 1, "chunk_q": 8, "chunk_k": 16})
    for bs in (2, 5):
        many = probe.run(h, _mixed_text_set(), {"batch_size": bs, "chunk_q": 8, "chunk_k": 16})
        assert many.coords == one.coords and many.records == one.records
        for name in ("entropy_per_prompt", "distance_per_prompt", "sink_per_prompt", "span_mass_per_prompt"):
            a, b = torch.tensor(one.array(name)), torch.tensor(many.array(name))
            assert torch.equal(torch.isnan(a), torch.isnan(b)), name
            assert_close(b[~torch.isnan(b)], a[~torch.isnan(a)], atol=1e-5, rtol=1e-5, msg=name)
    assert torch.isnan(torch.tensor(one.array("span_mass_per_prompt"))[0, :, 1]).all()  # t0 has no tail span


@pytest.mark.parametrize("n_query", [1, 40])
@pytest.mark.parametrize("causal", [True, False])
def test_fused_cpu_path_matches_the_streamed_path_and_the_reference(n_query: int, causal: bool) -> None:
    """Without top-1 (what attention_spread asks for) the CPU takes torch's fused flash kernel;
    it must agree with the streamed path (top-1 on) and the dense float64 reference."""
    b, h, hkv, nk, d = 2, 6, 2, 40, 8
    q, k, v = torch.randn(b, h, n_query, d) * 2, torch.randn(b, hkv, nk, d) * 2, torch.randn(b, hkv, nk, d)
    spans = {"a": [(3, 10), None], "b": (0, 40)}
    kw = dict(scaling=0.3, causal=causal, key_spans=spans, chunk_q=7, chunk_k=9)
    fused = streaming_attention_stats(q, k, v, top1=False, **kw)
    streamed = streaming_attention_stats(q, k, v, top1=True, **kw)
    for name in ("entropy", "distance", "sink", "n_visible", "span_mass", "output"):
        assert_close(getattr(fused, name), getattr(streamed, name), **TOL, msg=name)
    q_start = nk - n_query
    vis = visibility_mask(n_query, nk, causal=causal)[None, None].expand(b, 1, n_query, nk)
    ref, out = _reference(q, k, v, vis, 0.3, spans={"b": (0, 40)}, query_start=q_start)
    assert_close(fused.entropy, ref.entropy, **TOL)
    assert_close(fused.span_mass[1], ref.span_mass[0], **TOL)
    assert_close(fused.output, out, **TOL)
    assert (fused.span_mass[0, 1] == 0).all()  # row 1 has no span "a"
