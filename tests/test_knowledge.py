"""Knowledge preference: conflict-format loaders, margins vs a manual forward, logit lens, yes/no."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lensft.errors import PromptSetError
from lensft.handle import ModelHandle, load_model
from lensft.probes.conflict_formats import example_path, load_conflicts, statement_to_question
from lensft.probes.knowledge import KnowledgeSettings, encode_conflict, first_token_ids, score_knowledge
from lensft.probes.registry import get_probe
from lensft.results import load_result, save_result
from lensft.variants import Variant

PROBE_FAMILIES = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]


def force_head(h: ModelHandle, bias: torch.Tensor) -> None:
    parent, _, name = h.family.modules.lm_head.rpartition(".")
    head = nn.Linear(getattr(h.config, "hidden_size", None) or h.config.n_embd, bias.numel())
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
    setattr(h.model.get_submodule(parent) if parent else h.model, name, head)


# ---------------------------------------------------------------------------------------- loaders
def test_yesno_loader() -> None:
    ps = load_conflicts(example_path("yesno"))
    assert ps.kind == "conflict" and len(ps) == 4
    a, _, c, d = ps.items
    assert a.question == "Is the city of Lyon in France?"
    assert a.yn_label is True and (a.memory_answer, a.context_answer) == ("Yes", "No")
    assert a.yn_prompt.startswith("You should know the new geography knowledge: Lyon is a new city in Spain.")
    assert a.yn_prompt.endswith("Answer 'Yes' or 'No'.") and a.prompt == a.yn_prompt
    assert c.yn_label is False and c.memory_answer == "No"
    assert d.context.startswith("You should know") and "Shijiazhuang" in d.context  # default sentence
    assert statement_to_question("Paris is the capital of France.") == "Is Paris the capital of France?"
    assert statement_to_question("Cats sleep.") is None


def test_conflictqa_and_memo_trap_loaders(tmp_path) -> None:
    qa = load_conflicts(example_path("conflictqa"))
    it = qa.items[0]
    assert (it.memory_answer, it.context_answer, it.closed_book_prompt) == ("Lyon", "Turin", "Where was Alice born?")
    assert it.context.startswith("Alice was born in Turin") and it.prompt == f"{it.context}\n{it.question}"
    assert it.meta["ground_truth"] == ["Lyon"] and it.yn_prompt is None
    # a JSON array works too, and counter_memory is the fallback context
    rows = [{"question": "Q?", "memory_answer": "A", "counter_answer": "B", "counter_memory": "B it is."}]
    f = tmp_path / "qa.json"
    f.write_text(json.dumps(rows))
    assert load_conflicts(f).items[0].context == "B it is."
    mt = load_conflicts(example_path("memo_trap"))
    assert not mt.header.chat and len(mt) == 3
    m = mt.items[1]
    assert (m.context_answer, m.memory_answer) == ("Rome", "Paris")
    assert m.closed_book_prompt == "The capital of France is"
    assert m.context == 'Write a sentence that ends in the word "Rome":'
    assert load_conflicts(example_path("lensft")).name == "conflict_default"


def test_loader_errors(tmp_path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(PromptSetError, match="cannot tell the conflict format"):
        load_conflicts(f)
    f.write_text(json.dumps({"statement": "The city of X is in Y.", "label": "maybe"}) + "\n")
    with pytest.raises(PromptSetError, match="not true/false"):
        load_conflicts(f)
    f.write_text(json.dumps({"statement": "Cats sleep.", "label": 1}) + "\n")
    with pytest.raises(PromptSetError, match="add a 'question'"):
        load_conflicts(f)
    t = tmp_path / "t.jsonl"
    t.write_text(example_path("lensft").read_text().replace('"kind": "conflict"', '"kind": "task"').splitlines()[0] + "\n")
    with pytest.raises(PromptSetError, match="kind 'conflict'"):
        load_conflicts(t)


# ---------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_margin_and_lens_match_manual_forward(pico_triples, family: str, tmp_path) -> None:
    h = load_model(pico_triples[family][Variant.BASE])
    ps = load_conflicts(example_path("lensft"))
    res = get_probe("knowledge_preference").run(h, ps, KnowledgeSettings(max_new_tokens=3, batch_size=4))
    for k in (0, 3):
        p, c, m = encode_conflict(h, ps.items[k], chat=True)
        with torch.no_grad():
            lp_c = torch.log_softmax(h.model(torch.tensor([p + c])).logits[0].float(), -1)
            lp_m = torch.log_softmax(h.model(torch.tensor([p + m])).logits[0].float(), -1)
            out = h.model(torch.tensor([p]), output_hidden_states=True)
        n = len(p)
        manual = sum(float(lp_c[n - 1 + j, t]) for j, t in enumerate(c)) - sum(float(lp_m[n - 1 + j, t]) for j, t in enumerate(m))
        rec = res.records[k]
        assert rec["margin"] == pytest.approx(manual, abs=1e-4)
        assert rec["mr"] == pytest.approx(float(torch.sigmoid(torch.tensor(-manual))), abs=1e-5)
        final = torch.log_softmax(out.logits[0, -1].float(), -1)
        if c[0] != m[0]:
            # last layer of the lens = the model's own first-token margin
            assert rec["lens_margin"][-1] == pytest.approx(float(final[c[0]] - final[m[0]]), abs=1e-4)
            # layer 0 of the lens = final norm + head on hidden_states[1]
            with torch.no_grad():
                l0 = torch.log_softmax(h.lm_head(h.final_norm(out.hidden_states[1][0, -1])).float(), -1)
            assert rec["lens_margin"][0] == pytest.approx(float(l0[c[0]] - l0[m[0]]), abs=1e-4)
    s = res.summary
    known = [r for r in res.records if r["known"]]
    assert s["n_known"] == len(known) and s["known_rate"] == pytest.approx(len(known) / len(ps))
    if known:
        assert s["margin_mean_known"] == pytest.approx(sum(r["margin"] for r in known) / len(known))
    rates = [s["ctx_follow_rate"], s["mem_follow_rate"], s["both_rate"], s["neither_rate"]]
    assert sum(rates) == pytest.approx(1.0)
    assert res.dims["lens_margin"] == ["subset", "layer"] and res.coords["subset"] == ["all", "known"]
    back = load_result(save_result(res, tmp_path / "k.json"))
    assert back.prompt_set.name == "conflict_default" and back.settings["max_new_tokens"] == 3
    assert back.model.label == h.label and back.records[0]["id"] == "capital-france"


def test_yes_no_forced_by_head_and_known_rule(pico_triples) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    ps = load_conflicts(example_path("lensft"))
    yes = [t for t in first_token_ids(h, ["Yes", "yes"]) if t not in first_token_ids(h, ["No", "no"])]
    bias = torch.zeros(len(h.tokenizer))
    bias[yes] = 6.0
    force_head(h, bias)
    res = score_knowledge(h, ps, KnowledgeSettings(generate=False, lens=False))
    labels = [it.yn_label for it in ps.items]
    assert all(r["yn_pred"] is True for r in res.records)
    assert res.summary["yn_accuracy"] == pytest.approx(sum(labels) / len(labels))
    assert res.summary["yn_accuracy_geography"] == pytest.approx(2 / 3)
    assert "ctx_follow_rate" not in res.summary  # generation off
    # with the rank rule an item is known iff log p(mem) > log p(ctx) closed-book: here a constant head
    # makes every answer's log-prob a sum of bias - lse over its tokens
    lse = float(torch.logsumexp(bias, 0))
    for it, r in zip(ps.items, res.records):
        _, c, m = encode_conflict(h, it, chat=True, closed_book=True)
        lp = lambda ids: sum(float(bias[t]) - lse for t in ids)  # noqa: E731
        assert r["known"] == (lp(m) > lp(c))
        assert r["margin"] == pytest.approx(lp(encode_conflict(h, it, chat=True)[1]) - lp(encode_conflict(h, it, chat=True)[2]), abs=1e-4)
