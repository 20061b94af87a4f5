"""Knowledge preference: conflict-format loaders, margins vs a manual forward, logit lens, yes/no bias,
own-memory rules and context-addressed items on pico models (planted heads and planted generations)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import lensft.probes.knowledge as K
from lensft.errors import LensftError, PromptSetError
from lensft.handle import ModelHandle, load_model
from lensft.probes.conflict_encoding import encode_conflict
from lensft.probes.conflict_formats import example_path, load_conflicts, statement_to_question
from lensft.probes.knowledge import KnowledgeSettings, first_token_ids, score_knowledge
from lensft.probes.registry import get_probe
from lensft.prompts import make_prompt_set
from lensft.results import load_result, save_result
from lensft.variants import Variant

PROBE_FAMILIES = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]


def force_head(h: ModelHandle, bias: torch.Tensor) -> None:
    """Replace the unembedding by a constant: every position gets logits ``bias``."""
    parent, _, name = h.family.modules.lm_head.rpartition(".")
    head = nn.Linear(getattr(h.config, "hidden_size", None) or h.config.n_embd, bias.numel())
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
    setattr(h.model.get_submodule(parent) if parent else h.model, name, head)


def yes_no_ids(h: ModelHandle) -> tuple[list[int], list[int]]:
    yes, no = first_token_ids(h, ["Yes", "yes"]), first_token_ids(h, ["No", "no"])
    return [t for t in yes if t not in no], [t for t in no if t not in yes]


# ---------------------------------------------------------------------------------------- loaders
def test_yesno_loader() -> None:
    ps = load_conflicts(example_path("yesno"))
    assert ps.kind == "conflict" and len(ps) == 4
    a, _, c, d = ps.items
    assert a.question == "Is the city of Lyon in France?"
    assert a.yn_label is True and (a.memory_answer, a.context_answer) == ("Yes", "No")
    assert a.yn_prompt.startswith("You should know the new geography knowledge: Lyon is a new city in Spain.")
    assert a.yn_prompt.endswith("Answer 'Yes' or 'No'.") and a.prompt == a.yn_prompt
    assert c.yn_label is False and (c.memory_answer, c.context_answer) == ("No", "Yes")
    # the shared Jin et al. sentence is about Shijiazhuang: it does not address "Is Rome in Spain?"
    assert d.context.startswith("You should know") and "Shijiazhuang" in d.context
    assert d.memory_answer == "No" and d.context_answer is None
    assert statement_to_question("Paris is the capital of France.") == "Is Paris the capital of France?"
    assert statement_to_question("Cats sleep.") is None


def test_yesno_context_addresses_override(tmp_path) -> None:
    f = tmp_path / "yn.jsonl"
    f.write_text(json.dumps({"statement": "The city of Rome is in Italy.", "label": 1, "context_addresses": True}) + "\n"
                 + json.dumps({"statement": "The city of Oslo is in Norway.", "label": 1, "context": "Cats purr.",
                               "context_addresses": "false"}) + "\n")
    a, b = load_conflicts(f).items
    assert a.context_answer == "No" and b.context_answer is None and "context_addresses" not in b.meta
    f.write_text(json.dumps({"statement": "The city of Rome is in Italy.", "label": 1, "context_addresses": "maybe"}))
    with pytest.raises(PromptSetError, match="context_addresses 'maybe' is not true/false"):
        load_conflicts(f)


def test_conflictqa_and_memo_trap_loaders(tmp_path) -> None:
    qa = load_conflicts(example_path("conflictqa"))
    it = qa.items[0]
    assert (it.memory_answer, it.context_answer, it.closed_book_prompt) == ("Lyon", "Turin", "Where was Alice born?")
    assert it.context.startswith("Alice was born in Turin") and it.prompt == f"{it.context}\n{it.question}"
    assert it.meta["ground_truth"] == ["Lyon"] and it.yn_prompt is None
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
    ex = load_conflicts(example_path("lensft"))
    assert ex.name == "conflict_example" and len(ex) == 8 and ex.items[0].id == "capital-france"


def test_loader_errors(tmp_path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(PromptSetError, match="cannot tell the conflict format"):
        load_conflicts(f)
    f.write_text(json.dumps({"statement": "The city of X is in Y.", "label": "maybe"}) + "\n")
    with pytest.raises(PromptSetError, match="label 'maybe' is not true/false"):
        load_conflicts(f)
    f.write_text(json.dumps({"statement": "Cats sleep.", "label": 1}) + "\n")
    with pytest.raises(PromptSetError, match="add a 'question'"):
        load_conflicts(f)
    t = tmp_path / "t.jsonl"
    t.write_text(example_path("lensft").read_text().replace('"kind":"conflict"', '"kind":"task"').splitlines()[0] + "\n")
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
        assert rec["mr_prob"] == pytest.approx(float(torch.sigmoid(torch.tensor(-manual))), abs=1e-5)
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
    assert all(r["known"] == r["known_greedy"] for r in res.records) and res.settings["known_rule_used"] == "greedy"
    assert s["margin_mean"] == pytest.approx(sum(r["margin"] for r in res.records) / len(ps))
    rates = [s["ctx_follow_rate"], s["mem_follow_rate"], s["both_rate"], s["neither_rate"]]
    assert sum(rates) == pytest.approx(1.0)
    assert res.dims["lens_margin"] == ["subset", "layer"] and res.coords["subset"] == ["all", "known"]
    assert set(res.records[0]) == set(K.empty_record(ps.items[0]))
    back = load_result(save_result(res, tmp_path / "k.json"))
    assert back.prompt_set.name == "conflict_example" and back.settings["max_new_tokens"] == 3
    assert back.model.label == h.label and back.records[0]["id"] == "capital-france"


@pytest.mark.parametrize("answer", ["yes", "no"])
def test_one_way_answerer_is_flagged(pico_triples, answer: str) -> None:
    """A planted head that always answers Yes (No): accuracy is the label balance (or its complement),
    the bias-free measures sit at chance, and the one-way flag is up."""
    h = load_model(pico_triples["llama"][Variant.BASE])
    ps = load_conflicts(example_path("lensft"))
    yes, no = yes_no_ids(h)
    bias = torch.zeros(len(h.tokenizer))
    bias[yes if answer == "yes" else no] = 6.0
    force_head(h, bias)
    res = score_knowledge(h, ps, KnowledgeSettings(generate=False, lens=False))
    s, labels = res.summary, [it.yn_label for it in ps.items]
    label_yes = sum(labels) / len(labels)
    assert 0 < label_yes < 1 and s["yn_label_yes_rate"] == pytest.approx(label_yes)
    assert all(r["yn_pred"] is (answer == "yes") for r in res.records)
    assert s["yn_yes_rate"] == (1.0 if answer == "yes" else 0.0) and s["yn_one_way"] == 1.0
    assert s["yn_accuracy"] == pytest.approx(label_yes if answer == "yes" else 1 - label_yes)
    assert s["yn_balanced_accuracy"] == 0.5 and s["yn_auc"] == 0.5  # P(yes) is the same on every item
    assert s["ctx_follow_rate"] is None and s["n_open"] == 0  # generation off
    assert res.settings["known_rule_used"] == "rank"
    # with the rank rule an item is known iff log p(mem) > log p(ctx) closed-book: here a constant head
    # makes every answer's log-prob a sum of bias - lse over its tokens
    lse = float(torch.logsumexp(bias, 0))

    def lp(ids: list[int]) -> float:
        return sum(float(bias[t]) - lse for t in ids)

    for it, r in zip(ps.items, res.records):
        _, c, m = encode_conflict(h, it, chat=True, closed_book=True)
        assert r["known"] == r["known_rank"] == (lp(m) > lp(c)) and r["known_greedy"] is None
        _, c, m = encode_conflict(h, it, chat=True)
        assert r["margin"] == pytest.approx(lp(c) - lp(m), abs=1e-4)


def test_p_yes_and_auc_match_their_definitions(pico_triples) -> None:
    """P(yes) = sigmoid(log p(Yes-like) - log p(No-like)) per item, and the AUC equals the pairwise oracle."""
    h = load_model(pico_triples["llama"][Variant.BASE])
    ps = load_conflicts(example_path("lensft"))
    res = score_knowledge(h, ps, KnowledgeSettings(generate=False, lens=False))
    recs = [r for r in res.records if r["yn_p_yes"] is not None]
    for r in recs:
        assert r["yn_p_yes"] == pytest.approx(float(torch.sigmoid(torch.tensor(r["yn_logp_yes"] - r["yn_logp_no"]))))
        assert r["yn_pred"] == (r["yn_p_yes"] > 0.5) and r["yn_correct"] == (r["yn_pred"] == r["yn_label"])
    pos = [r["yn_p_yes"] for r in recs if r["yn_label"]]
    neg = [r["yn_p_yes"] for r in recs if not r["yn_label"]]
    oracle = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert res.summary["yn_auc"] == pytest.approx(oracle)


def test_greedy_own_memory_and_open_answers_with_planted_generations(pico_triples, monkeypatch) -> None:
    """Planted generations: closed book, the model states the memory answer on items 0, 2, 4 only; open book it
    repeats the context answer on even items and the memory answer on odd ones."""
    h = load_model(pico_triples["llama"][Variant.BASE])
    ps = load_conflicts(example_path("lensft"))
    items = ps.items
    calls = []

    def planted(handle, prompts, **kw):
        calls.append(len(prompts))
        if len(calls) == 1:  # closed book
            return [f"It is {it.memory_answer}." if k in (0, 2, 4) else "I do not know." for k, it in enumerate(items)]
        return [f"So {it.context_answer}." if k % 2 == 0 else f"Surely {it.memory_answer}" for k, it in enumerate(items)]

    monkeypatch.setattr(K, "greedy_generate", planted)
    res = score_knowledge(h, ps, KnowledgeSettings(lens=False))
    assert calls == [len(items), len(items)]
    assert [r["known"] for r in res.records] == [k in (0, 2, 4) for k in range(len(items))]
    assert [r["outcome"] for r in res.records] == ["context" if k % 2 == 0 else "memory" for k in range(len(items))]
    s = res.summary
    assert s["ctx_follow_rate"] == 0.5 and s["mem_follow_rate"] == 0.5 and s["mr_count"] == 0.5
    assert s["ctx_follow_rate_known"] == 1.0 and s["mr_count_known"] == 0.0 and s["n_known"] == 3
    either = score_knowledge(h, ps, KnowledgeSettings(lens=False, known_rule="either"))
    assert all(r["known"] == (r["known_greedy"] or r["known_rank"]) for r in either.records)


def test_items_whose_context_does_not_address_the_question(pico_triples) -> None:
    h = load_model(pico_triples["gpt2"][Variant.BASE])
    ps = load_conflicts(example_path("yesno"))
    res = score_knowledge(h, ps, KnowledgeSettings(max_new_tokens=2))
    off = res.records[3]
    assert off["context_addressed"] is False and off["context_answer"] is None
    assert off["margin"] is None and off["mr_prob"] is None and off["logp_ctx"] is None and off["lens_margin"] is None
    assert off["outcome"] in ("memory", "neither") and off["yn_pred"] is not None and off["logp_mem"] is not None
    assert res.summary["n_addressed"] == 3 and res.summary["n_yn"] == 4 and res.summary["n_open"] == 3
    assert res.summary["margin_mean"] == pytest.approx(sum(r["margin"] for r in res.records[:3]) / 3)
    with pytest.raises(LensftError, match="no context answer"):
        encode_conflict(h, ps.items[3], chat=True)


def test_rejects_wrong_sets_and_warns_on_repeated_ids(pico_triples, caplog) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    with pytest.raises(LensftError, match="needs a 'conflict' prompt set"):
        score_knowledge(h, make_prompt_set("t", "1", "task", []))
    with pytest.raises(LensftError, match="has no items"):
        score_knowledge(h, make_prompt_set("c", "1", "conflict", []))
    ps = load_conflicts(example_path("lensft"))
    twice = make_prompt_set("twice", "1", "conflict", [ps.items[0], ps.items[0]])
    score_knowledge(h, twice, KnowledgeSettings(generate=False, lens=False))
    assert "repeats item ids" in caplog.text
