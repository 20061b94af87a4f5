"""Short-task scoring: normalisation, loaders, hand-forced log-likelihoods and greedy answers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from lensft.errors import LensftError, PromptSetError
from lensft.handle import ModelHandle, load_model
from lensft.probes.scoring import (contains_match, continuation_logprobs, continuation_text, encode_continuation,
                                   encode_prompt, exact_match, forward_cached, greedy_generate, normalize_answer,
                                   prompt_text)
from lensft.probes.short_tasks import ShortTaskSettings, load_tasks, score_tasks
from lensft.prompts import TaskItem, make_prompt_set, write_prompt_set
from lensft.results import load_result, save_result
from lensft.variants import Variant

PROBE_FAMILIES = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]


def force_head(h: ModelHandle, bias: torch.Tensor) -> None:
    """Replace the family's lm_head by a zero-weight linear layer with ``bias``: logits = bias everywhere."""
    parent, _, name = h.family.modules.lm_head.rpartition(".")
    head = nn.Linear(h.config.hidden_size if hasattr(h.config, "hidden_size") else h.config.n_embd, bias.numel())
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
    setattr(h.model.get_submodule(parent) if parent else h.model, name, head)


def test_normalisation() -> None:
    assert normalize_answer("  The Eiffel-Tower!  ") == "eiffel tower"
    assert exact_match("Paris.", ["paris"]) and not exact_match("Paris, France", ["Paris"])
    assert contains_match("It is Paris, France", ["paris"]) and not contains_match("Parisian", ["Paris"])
    assert not exact_match("", [""])
    assert continuation_text("The sky is", "blue", chat=False) == " blue"
    assert continuation_text("<|assistant|>", "blue", chat=True) == "blue"
    assert continuation_text("The sky is ", "blue", chat=False) == "blue"


def test_load_simple_and_lensft_files(tmp_path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"prompt": "2+2?", "answer": "4", "aliases": ["four"]}) + "\n\n"
                 + json.dumps({"prompt": "Sky is", "choices": ["blue", "green"], "label": 0, "task": "mc"}) + "\n")
    ps = load_tasks(f)
    assert ps.kind == "task" and ps.name == "mine" and len(ps.version) == 12
    a, b = ps.items
    assert (a.id, a.task, a.answer, a.aliases) == ("1", "mine", "4", ["four"])
    assert (b.id, b.task, b.answer, b.label) == ("3", "mc", "blue", 0)
    g = write_prompt_set(ps, tmp_path / "set.jsonl")
    assert load_tasks(g).items == ps.items
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(PromptSetError, match=r"bad.jsonl:1: missing 'answer'"):
        load_tasks(bad)
    bad.write_text(json.dumps({"prompt": "x", "choices": ["a", "b"], "label": 5}) + "\n")
    with pytest.raises(PromptSetError, match="label"):
        load_tasks(bad)
    bad.write_text("{not json\n")
    with pytest.raises(PromptSetError, match="not JSON"):
        load_tasks(bad)
    with pytest.raises(PromptSetError, match="does not exist"):
        load_tasks(tmp_path / "nope.jsonl")


def test_mc_forced_by_hand_set_head(pico_triples) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    item = TaskItem(id="fox", task="cloze", prompt="The quick brown fox jumps over the lazy", answer="dog",
                    choices=["cat", "dog"], label=1)
    ps = make_prompt_set("mc", "1", "task", [item], chat=False)
    text = prompt_text(h, item.prompt, chat=False)
    conts = [encode_continuation(h, continuation_text(text, c, chat=False)) for c in item.choices]
    bias = torch.zeros(len(h.tokenizer))
    bias[[t for t in conts[1] if t not in conts[0]]] = 8.0
    force_head(h, bias)
    res = score_tasks(h, ps, ShortTaskSettings())
    rec = res.records[0]
    lse = float(torch.logsumexp(bias, 0))
    expected = [sum(float(bias[t]) - lse for t in c) for c in conts]
    assert rec["choice_logprobs"] == pytest.approx(expected, abs=1e-4)
    assert rec["pred_index"] == 1 and rec["correct"] and res.summary["mc_accuracy"] == 1.0
    assert res.summary["em_accuracy"] is None


def test_greedy_forced_by_hand_set_head(pico_triples) -> None:
    h = load_model(pico_triples["gpt2"][Variant.BASE])
    seven = encode_continuation(h, "7")
    assert len(seven) == 1
    bias = torch.zeros(len(h.tokenizer))
    bias[seven[0]] = 5.0
    force_head(h, bias)
    ps = make_prompt_set("em", "1", "task", [
        TaskItem(id="a", task="arith", prompt="What is 3 plus 4?", answer="seven", aliases=["7"]),
        TaskItem(id="b", task="arith", prompt="What is 2 plus 2?", answer="4")])
    res = score_tasks(h, ps, ShortTaskSettings(max_new_tokens=1))
    assert [r["prediction"] for r in res.records] == ["7", "7"]
    assert [r["correct"] for r in res.records] == [True, False]
    assert res.summary["accuracy"] == 0.5 and res.summary["accuracy_arith"] == 0.5
    bias[:] = 0
    bias[h.tokenizer.eos_token_id] = 5.0  # end-of-turn first: empty answer, generation stops
    force_head(h, bias)
    assert greedy_generate(h, [[5, 6, 7]], max_new_tokens=8) == [""]


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_padding_invariance_and_manual_forward(pico_triples, family: str) -> None:
    h = load_model(pico_triples[family][Variant.BASE])
    prompts = [encode_prompt(h, prompt_text(h, p, chat=True), chat=True)
               for p in ["What is 3 plus 4?", "Where was Alice born? Tell me.", "Hi"]]
    conts = [encode_continuation(h, c) for c in ["7", "Lyon", "yes no"]]
    one = continuation_logprobs(h, prompts, conts, batch_size=1)
    three = continuation_logprobs(h, prompts, conts, batch_size=3)
    assert_close(torch.tensor([x[0] for x in one]), torch.tensor([x[0] for x in three]), atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        ids = torch.tensor([prompts[1] + conts[1]])
        lp = torch.log_softmax(h.model(ids).logits[0].float(), -1)
        n = len(prompts[1])
        manual = sum(float(lp[n - 1 + k, t]) for k, t in enumerate(conts[1]))
    assert one[1][0] == pytest.approx(manual, abs=1e-4) and one[1][1] == len(conts[1])
    g1 = greedy_generate(h, prompts, max_new_tokens=4, batch_size=1, stop_at_newline=False)
    g3 = greedy_generate(h, prompts, max_new_tokens=4, batch_size=3, stop_at_newline=False)
    assert g1 == g3


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_score_tasks_runs_and_roundtrips(pico_triples, family: str, tmp_path) -> None:
    h = load_model(pico_triples[family][Variant.BASE])
    ps = make_prompt_set("mix", "2", "task", [
        TaskItem(id="a", task="fact", prompt="What is the capital of France?", answer="Paris"),
        TaskItem(id="b", task="cloze", prompt="The cat sleeps on the warm", answer="mat", choices=["mat", "fox"], label=0)])
    res = score_tasks(h, ps, ShortTaskSettings(max_new_tokens=3))
    back = load_result(save_result(res, tmp_path / "r.json"))
    assert back.probe == "short_tasks" and back.model.label == h.label
    assert back.prompt_set.version == "2" and back.settings["max_new_tokens"] == 3
    assert [r["mode"] for r in back.records] == ["generate", "loglik"]
    assert set(back.records[0]) >= {"id", "task", "prompt", "prediction", "gold", "correct"}
    assert back.coords["task"] == ["cloze", "fact"]
    # Oracle, computed here without the scorer: greedy decoding with generate() and summed log-probs of
    # each choice from one plain forward pass per choice.
    with torch.no_grad():
        text = h.format_prompt("What is the capital of France?")
        ids = h.tokenizer(text, add_special_tokens=not getattr(h.tokenizer, "chat_template", None), return_tensors="pt").input_ids
        gen = h.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                               pad_token_id=h.tokenizer.eos_token_id or 0)
        pred = h.tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
        stem = h.format_prompt("The cat sleeps on the warm")
        p_ids = h.tokenizer(stem, add_special_tokens=not getattr(h.tokenizer, "chat_template", None)).input_ids
        scores = []
        for choice in ("mat", "fox"):
            sep = "" if getattr(h.tokenizer, "chat_template", None) else " "  # plain prompts: the answer follows a space
            c_ids = h.tokenizer(sep + choice, add_special_tokens=False).input_ids
            logp = torch.log_softmax(h.model(torch.tensor([p_ids + c_ids])).logits[0].double(), -1)
            scores.append(sum(float(logp[len(p_ids) - 1 + k, t]) for k, t in enumerate(c_ids)))
    assert back.records[0]["prediction"].strip() == pred.strip().split("\n")[0].strip()
    assert back.records[1]["correct"] == (scores.index(max(scores)) == 0)
    expected = (float(back.records[0]["correct"]) + float(scores.index(max(scores)) == 0)) / 2
    assert back.summary["accuracy"] == pytest.approx(expected)


def test_loglik_mode_needs_choices(pico_triples) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    ps = make_prompt_set("x", "1", "task", [TaskItem(id="a", task="t", prompt="p", answer="a")])
    with pytest.raises(LensftError, match="mode=loglik"):
        score_tasks(h, ps, ShortTaskSettings(mode="loglik"))


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_forward_cached_matches_one_full_pass_without_deprecation(pico_triples, family: str) -> None:
    """Decoding through the KV cache (prefill, then one token at a time) gives the logits of one full
    forward pass, under the cache keyword this transformers version takes (no deprecation warning)."""
    import warnings

    h = load_model(pico_triples[family][Variant.SHORT])
    ids = torch.randint(0, 40, (2, 7))
    full = h.model(input_ids=ids).logits
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        parts, cache = [], None
        for a, b in ((0, 4), (4, 5), (5, 6), (6, 7)):
            logits, cache = forward_cached(h.model, cache, input_ids=ids[:, a:b])
            parts.append(logits)
    assert cache is not None and cache.get_seq_length() == 7
    assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-4)
