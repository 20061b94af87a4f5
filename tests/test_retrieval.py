"""The retrieval_heads probe: needle token spans, streamed top-1 vs an eager reference, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lensft.errors import LensftError
from lensft.handle import ModelHandle, load_model
from lensft.probes.registry import get_probe
from lensft.probes.retrieval import RetrievalSettings, needle_token_span, retrieval_hits
from lensft.probes.scoring import rouge1_recall
from lensft.prompts.io import make_prompt_set
from lensft.prompts.schema import NeedleItem, Span, TextItem
from lensft.results import load_result, save_result
from lensft.variants import Variant

HAY = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat. "


def _item(i: int, needle: str, depth: float, reps: int = 3) -> NeedleItem:
    hay = HAY * reps
    cut = int(len(hay) * depth)
    prompt = hay[:cut] + f"The secret code is {needle}. " + hay[cut:] + "What is the secret code?"
    start = prompt.index(needle)
    return NeedleItem(id=f"n{i}", prompt=prompt, needle=Span(name="needle", start=start, end=start + len(needle)),
                      answer=needle, context_tokens=len(hay) // 4, depth=depth)


def _needle_set(needles: list[str] | None = None):
    needles = needles or ["12 13 14", "yes no true"]
    return make_prompt_set("needles", "1", "needle", [_item(i, n, d) for i, (n, d) in enumerate(zip(needles, [0.2, 0.7]))])


@torch.no_grad()
def _reference_scores(h: ModelHandle, ps, s: RetrievalSettings) -> torch.Tensor:
    """Per-item scores ``[item, layer, head]`` by Wu et al.'s retrieval_calculate on full eager
    attention matrices (prefill + step-by-step decode), with the probe's stopping rules."""
    from lensft.probes.scoring import cache_keyword, continuation_text, encode_continuation, stop_token_ids

    h.set_attn_implementation("eager")
    out = torch.zeros(len(ps), h.n_layers, h.n_heads, dtype=torch.float64)
    for n, it in enumerate(ps.items):
        ids, ns, ne = needle_token_span(h, it, chat=True)
        n_ans = len(encode_continuation(h, continuation_text(h.format_prompt(it.prompt), it.answer, chat=True)))
        kw = cache_keyword(h.model)  # `cache` from transformers 5.24, `past_key_values` before
        past = getattr(h.model(torch.tensor([ids[:-1]]), use_cache=True), kw)
        inp, gen = ids[-1], []
        for _ in range(n_ans + s.extra_steps):
            o = h.model(torch.tensor([[inp]]), **{kw: past}, use_cache=True, output_attentions=True)
            past, inp = getattr(o, kw), int(o.logits[0, -1].argmax())
            gen.append(inp)
            for layer, att in enumerate(o.attentions):
                for head in range(h.n_heads):
                    i = int(att[0, head, -1].argmax())
                    if ns <= i < ne and ids[i] == inp:
                        out[n, layer, head] += 1 / (ne - ns)
            if s.stop_at_eos and inp in stop_token_ids(h):
                break
            if s.stop_at_newline and "\n" in h.tokenizer.decode(gen, skip_special_tokens=True).lstrip():
                break
    return out


def test_needle_token_span_maps_characters_to_tokens(llama_triple) -> None:
    h = load_model(llama_triple[Variant.BASE])
    it = _item(0, "12 13 14", 0.5)
    for chat in (True, False):
        ids, a, b = needle_token_span(h, it, chat=chat)
        assert h.tokenizer.decode(ids[a:b]).strip() == "12 13 14"
        if chat:
            assert ids == h.tokenizer(h.format_prompt(it.prompt), add_special_tokens=False)["input_ids"]


def test_retrieval_heads_runs_on_every_family(family_triple, tmp_path: Path) -> None:
    family, triple = family_triple
    h = load_model(triple[Variant.BASE])
    res = get_probe("retrieval_heads").run(h, _needle_set(), {"chunk_k": 64})
    score = res.array("score")
    assert score.shape == (h.n_layers, h.n_heads)
    assert res.array("score_per_item").shape == (2, h.n_layers, h.n_heads)
    per_item = res.array("score_per_item")
    assert ((per_item >= 0) & (per_item <= (32 + 8) / 3)).all()  # at most one hit per decode step
    assert res.summary["n_items"] == 2 and 0 <= res.summary["n_copied"] <= 2
    assert 0.0 <= res.summary["needle_copy_accuracy"] <= 1.0
    assert all(r["n_steps"] >= 1 for r in res.records)
    back = load_result(save_result(res, tmp_path / "ret.json"))
    assert back.arrays == res.arrays and back.summary == res.summary and back.records == res.records


def test_retrieval_hits_by_hand() -> None:
    prompt = torch.tensor([5, 6, 7, 8, 7, 9])
    top1 = torch.tensor([[2, 4, 3], [1, 7, 0]])  # [layer, head]; needle = positions 2..4
    hits = retrieval_hits(top1, prompt, 2, 5, token=7)
    assert hits.tolist() == [[True, True, False], [False, False, False]]


@pytest.mark.parametrize("family", ["qwen2", "gemma2", "gpt2"])
def test_retrieval_scores_match_eager_reference(family: str, pico_triples) -> None:
    h = load_model(pico_triples[family][Variant.BASE])
    s = RetrievalSettings(chunk_k=64, stop_at_eos=False, stop_at_newline=False, extra_steps=4)
    # a needle made of what the random model likes to emit, so that copy hits can happen
    first = get_probe("retrieval_heads").run(h, make_prompt_set("n", "1", "needle", [_item(0, "12 13 14", 0.5)]), s)
    needle = first.records[0]["generated"].strip().replace("\r", " ") or "12 13 14"
    ps = make_prompt_set("n", "1", "needle", [_item(0, needle, 0.5), _item(1, "12 13 14", 0.2)])
    res = get_probe("retrieval_heads").run(h, ps, s)
    ref = _reference_scores(load_model(pico_triples[family][Variant.BASE]), ps, s)
    torch.testing.assert_close(torch.tensor(res.array("score_per_item")), ref, atol=1e-12, rtol=0)
    copied = [r["copied"] for r in res.records]
    if any(copied):
        torch.testing.assert_close(torch.tensor(res.array("score")), ref[torch.tensor(copied)].mean(0), atol=1e-12, rtol=0)
    else:
        assert np.isnan(res.array("score")).all() and res.summary["n_retrieval_heads"] is None
    if family in ("qwen2", "gemma2"):  # these seeds copy at least once
        assert res.array("score_per_item").max() > 0


def test_rouge1_recall_by_hand() -> None:
    # reference unigrams: take a walk in the park (6); "walks"/"parks" stem to walk/park; "a", "the" absent
    assert rouge1_recall("take a walk in the park", "I take walks in parks") == pytest.approx(4 / 6)
    assert rouge1_recall("4072915", "The special magic number is 4072915.") == 1.0
    assert rouge1_recall("4072915", "The special magic number is 40") == 0.0
    assert rouge1_recall("a b a", "a") == pytest.approx(1 / 3)  # counts with multiplicity
    assert rouge1_recall("!!", "anything") == 0.0  # no words in the reference


def _fake_items(monkeypatch, copied: list[bool]):
    """Replace per-item decoding by fixed scores: item i scores i+1 on head (0, 0) and 0.05 elsewhere."""
    import lensft.probes.retrieval as ret

    def fake(handle, it, s, *, chat):
        i = int(it.id[1:])
        sc = torch.full((handle.n_layers, handle.n_heads), 0.05, dtype=torch.float64)
        sc[0, 0] = i + 1.0
        return sc, {"id": it.id, "copied": copied[i], "recall": 1.0 if copied[i] else 0.2, "generated": ""}

    monkeypatch.setattr(ret, "score_item", fake)
    return make_prompt_set("n", "1", "needle", [_item(i, "1 2", 0.5) for i in range(len(copied))])


def test_head_scores_average_the_copied_items_only(llama_triple, monkeypatch) -> None:
    h = load_model(llama_triple[Variant.BASE])
    res = get_probe("retrieval_heads").run(h, _fake_items(monkeypatch, [True, False, True, False]), {})
    score = res.array("score")
    assert score[0, 0] == pytest.approx((1 + 3) / 2)  # items 0 and 2
    assert res.summary["n_items"] == 4 and res.summary["n_copied"] == 2
    assert res.summary["needle_copy_accuracy"] == 0.5 and res.summary["mean_recall"] == pytest.approx(0.6)
    assert res.summary["n_retrieval_heads"] == 1 and res.summary["max_score"] == pytest.approx(2.0)
    assert res.array("score_per_item")[:, 0, 0].tolist() == [1, 2, 3, 4]


def test_nothing_copied_is_not_a_zero_score(llama_triple, monkeypatch) -> None:
    h = load_model(llama_triple[Variant.BASE])
    res = get_probe("retrieval_heads").run(h, _fake_items(monkeypatch, [False, False]), {})
    assert np.isnan(res.array("score")).all()
    assert res.summary["n_copied"] == 0 and res.summary["mean_score"] is None and res.summary["n_retrieval_heads"] is None


def test_decoding_runs_past_the_needle_length(llama_triple) -> None:
    """Issue 10: decoding stopped at needle length + 4 cut every answer; now + extra_steps (32)."""
    h = load_model(llama_triple[Variant.BASE])
    s = RetrievalSettings(stop_at_eos=False, stop_at_newline=False)
    res = get_probe("retrieval_heads").run(h, make_prompt_set("n", "1", "needle", [_item(0, "12 13 14", 0.5)]), s)
    rec = res.records[0]
    n_needle = len(h.tokenizer("12 13 14", add_special_tokens=False)["input_ids"])  # the answer as generated
    assert s.extra_steps == 32 and rec["n_steps"] == n_needle + 32
    assert set(rec) >= {"id", "copied", "recall", "generated", "n_steps", "needle_tokens", "prompt_tokens", "depth"}


def test_retrieval_rejects_other_kinds(llama_triple) -> None:
    h = load_model(llama_triple[Variant.BASE])
    with pytest.raises(LensftError, match="needle"):
        get_probe("retrieval_heads").run(h, make_prompt_set("t", "1", "text", [TextItem(id="t", text="x")]), {})


def test_retrieval_refuses_needles_longer_than_a_learned_position_table(pico_triples) -> None:
    """GPT-2's 512 learned positions: a longer needle is a clear error, not an IndexError."""
    h = load_model(pico_triples["gpt2"][Variant.BASE])
    assert h.max_positions == 512
    ps = make_prompt_set("n", "1", "needle", [_item(0, "12 13 14", 0.5, reps=20)])
    with pytest.raises(LensftError, match="positions"):
        get_probe("retrieval_heads").run(h, ps, {})


def test_decoding_stops_where_a_learned_position_table_ends(pico_triples) -> None:
    """A GPT-2 needle whose prompt leaves fewer than needle + 32 positions decodes up to position 512."""
    h = load_model(pico_triples["gpt2"][Variant.BASE])
    it = _item(0, "12 13 14", 0.5, reps=10)
    while len(needle_token_span(h, it, chat=True)[0]) < 512 - 20:
        it = it.model_copy(update={"prompt": it.prompt + " fox"})
    ps = make_prompt_set("n", "1", "needle", [it])
    rec = get_probe("retrieval_heads").run(h, ps, {"stop_at_eos": False, "stop_at_newline": False}).records[0]
    assert rec["max_steps"] == 512 - rec["prompt_tokens"] < 32 and rec["n_steps"] == rec["max_steps"]
