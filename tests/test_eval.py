"""lm-evaluation-harness glue: a local task YAML and exported prompt sets scored by lm-eval on pico
models and on in-memory grafts, checked item by item against lensft's own scorer (short_tasks);
registered tasks over local files; offline errors; the exporter's layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from test_short_tasks import force_head

from lensft.checkpoints.load import load_triple
from lensft.errors import EvaluationError, LensftError, OutputExists
from lensft.evaluation.convert import metric_rows
from lensft.evaluation.export import export_task_dir
from lensft.evaluation.offline import hf_offline, is_offline
from lensft.evaluation.settings import HarnessSettings
from lensft.graft import GraftSpec, graft_model
from lensft.handle import ModelHandle, load_model
from lensft.probes.registry import get_probe
from lensft.probes.scoring import encode_continuation, first_line
from lensft.probes.short_tasks import ShortTaskSettings, score_tasks
from lensft.prompts import TaskItem, make_prompt_set
from lensft.results import load_result, save_result
from lensft.variants import Variant

GEN_DOCS = [  # a model forced to say "7" gets exactly the first two right
    {"id": "g1", "prompt": "What is 3 plus 4?", "answer": "7"},
    {"id": "g2", "prompt": "What is 12 minus 5?", "answer": "7"},
    {"id": "g3", "prompt": "What is 2 plus 2?", "answer": "4"},
]
MC_DOCS = [
    {"id": "m1", "prompt": "The sky is", "choices": ["blue", "green"], "label": 0},
    {"id": "m2", "prompt": "The capital of Italy is", "choices": ["Rome", "Paris", "Madrid"], "label": 0},
    {"id": "m3", "prompt": "The cat sleeps on the warm", "choices": ["mat", "fox"], "label": 1},
]


def _write_task_dir(root: Path) -> Path:
    """The user's own lm-eval tasks over local JSONL: lm-eval's built-in exact_match and acc."""
    root.mkdir(parents=True, exist_ok=True)
    for name, docs in (("toy_gen", GEN_DOCS), ("toy_mc", MC_DOCS)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    common = {"dataset_path": "json", "test_split": "test"}
    gen = {"task": "toy_gen", **common, "dataset_kwargs": {"data_files": {"test": str(root / "toy_gen.jsonl")}},
           "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{answer}}",
           "generation_kwargs": {"until": ["\n"], "max_gen_toks": 1, "do_sample": False},
           "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                            "ignore_case": True, "ignore_punctuation": True}]}
    mc = {"task": "toy_mc", **common, "dataset_kwargs": {"data_files": {"test": str(root / "toy_mc.jsonl")}},
          "output_type": "multiple_choice", "doc_to_text": "{{prompt}}", "doc_to_choice": "{{choices}}",
          "doc_to_target": "{{label}}", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    for cfg in (gen, mc):
        (root / f"{cfg['task']}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_task_dir(tmp_path_factory.mktemp("lm-eval-tasks"))


def _same_items_as_prompt_set(chat: bool):
    items = [TaskItem(task="toy_gen", **d) for d in GEN_DOCS]
    items += [TaskItem(task="toy_mc", answer=d["choices"][d["label"]], **d) for d in MC_DOCS]
    return make_prompt_set("toy", "1", "task", items, chat=chat)


def _force_seven(h: ModelHandle) -> None:
    seven = encode_continuation(h, "7")
    assert len(seven) == 1
    bias = torch.randn(len(h.tokenizer)) * 0.1
    bias[seven[0]] = 5.0
    force_head(h, bias)


def _lm_eval(h: ModelHandle, prompts=None, **settings):
    return get_probe("lm_eval").evaluate(h, prompts, HarnessSettings(**settings))


def _check_against_short_tasks(run, reference, tasks: dict[str, str]) -> None:
    """Item by item: the same answers, the same choice log-likelihoods; the same accuracy for each
    lm-eval task as for its short_tasks task (``tasks``: lm-eval name -> short_tasks name)."""
    ours = {r["id"]: r for r in run.result.records}
    assert set(ours) == {r["id"] for r in reference.records}
    for ref in reference.records:
        rec = ours[ref["id"]]
        if ref["mode"] == "generate":
            assert first_line(rec["response"]) == ref["prediction"]
            score = rec["exact_match"] if "exact_match" in rec else rec["contains_match"]
            assert bool(score) == ref["correct"]
        else:
            # fp32, different padding per batch: ~1e-3 nats apart after 30 real layers, 1e-5 on pico models
            torch.testing.assert_close(torch.tensor(rec["choice_logprobs"]), torch.tensor(ref["choice_logprobs"]),
                                       atol=2e-3, rtol=1e-4)
            assert rec["pred_index"] == ref["pred_index"] and bool(rec["acc"]) == ref["correct"]
    rows = {r.task: r for r in metric_rows(run.result)}
    for lm_task, ours_task in tasks.items():
        assert rows[lm_task].value == pytest.approx(reference.summary[f"accuracy_{ours_task}"], abs=1e-12)


# ---------------------------------------------------------------------------------------------
def test_local_yaml_matches_short_tasks_on_a_checkpoint(llama_triple, task_dir, tmp_path) -> None:
    h = load_model(llama_triple[Variant.SHORT])
    _force_seven(h)
    run = _lm_eval(h, tasks=["toy_gen", "toy_mc"], include_path=[str(task_dir)], batch_size=2)
    reference = score_tasks(h, _same_items_as_prompt_set(chat=False), ShortTaskSettings(max_new_tokens=1))
    _check_against_short_tasks(run, reference, {"toy_gen": "toy_gen", "toy_mc": "toy_mc"})
    s = run.result.summary
    assert s["toy_gen/exact_match,none"] == pytest.approx(2 / 3)  # the planted answers, and only those
    assert s["toy_gen/exact_match_stderr,none"] == pytest.approx((2 / 3 * 1 / 3 / 2) ** 0.5)  # sample sd / sqrt(n)
    assert s["n_items"] == 6
    row = {r.task: r for r in metric_rows(run.result)}["toy_gen"]
    lo, hi = row.ci95
    assert lo < row.value < hi and hi - lo == pytest.approx(2 * 1.959964 * row.stderr)
    back = load_result(save_result(run.result, tmp_path / "r.json"))
    assert back.probe == "lm_eval" and back.model.label == h.label and back.settings["tasks"] == ["toy_gen", "toy_mc"]
    assert back.prompt_set.name == "lm-eval:toy_gen,toy_mc" and back.prompt_set.n_items == 6
    assert run.raw["results"]["toy_mc"]["acc,none"] == s["toy_mc/acc,none"] and "samples" not in run.raw
    assert h.tokenizer.padding_side == load_model(llama_triple[Variant.SHORT]).tokenizer.padding_side


def test_in_memory_graft_is_what_lm_eval_scores(llama_triple, task_dir) -> None:
    triple = load_triple(short=llama_triple[Variant.SHORT], long=llama_triple[Variant.LONG])
    graft = graft_model(triple, GraftSpec.build(mha="long", ffn="short"))
    _force_seven(graft)
    run = _lm_eval(graft, tasks=["toy_gen", "toy_mc"], include_path=[str(task_dir)])
    reference = score_tasks(graft, _same_items_as_prompt_set(chat=False), ShortTaskSettings(max_new_tokens=1))
    _check_against_short_tasks(run, reference, {"toy_gen": "toy_gen", "toy_mc": "toy_mc"})
    assert run.result.model.graft["mha"] == "long" and run.result.model.label == "short + long.mha"
    short = load_model(llama_triple[Variant.SHORT])
    _force_seven(short)
    other = score_tasks(short, _same_items_as_prompt_set(chat=False), ShortTaskSettings(max_new_tokens=1))
    ours = [r["choice_logprobs"] for r in run.result.records if "choice_logprobs" in r]
    theirs = [r["choice_logprobs"] for r in other.records if r["mode"] == "loglik"]
    assert max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y)) > 1e-3  # not the host alone


@pytest.mark.parametrize("family,chat", [("llama", True), ("gpt2", True), ("qwen2", False)])
def test_exported_prompt_set_matches_short_tasks(pico_triples, family: str, chat: bool) -> None:
    """Unforced random models: the exported task's greedy answers (8 tokens, no newline stop) and
    choice log-likelihoods equal short_tasks' item for item, with and without the chat template."""
    h = load_model(pico_triples[family][Variant.BASE])
    ps = _same_items_as_prompt_set(chat=chat)
    run = _lm_eval(h, ps, max_new_tokens=8, batch_size=3)
    reference = score_tasks(h, ps, ShortTaskSettings(max_new_tokens=8, batch_size=3))
    _check_against_short_tasks(run, reference, {"toy_toy_gen": "toy_gen", "toy_toy_mc": "toy_mc"})
    assert run.result.settings["chat_applied"] is chat
    assert run.result.prompt_set.name == "toy" and run.result.prompt_set.version == "1"
    assert {r.task for r in metric_rows(run.result)} >= {"toy_toy_gen", "toy_toy_mc"}
    assert {tuple(r["groups"]) for r in run.result.records} == {("toy",)}


def test_a_checkpoints_own_max_new_tokens_does_not_cut_lm_eval_answers(pico_triples) -> None:
    """transformers lets ``generation_config.max_new_tokens`` override lm-eval's ``max_length``; the
    harness clears it while lm-eval runs (the organism's checkpoints set 16), then restores it."""
    h = load_model(pico_triples["llama"][Variant.BASE])
    h.model.generation_config.max_new_tokens = 2
    ps = _same_items_as_prompt_set(chat=False)
    run = _lm_eval(h, ps, max_new_tokens=8, batch_size=3)
    assert h.model.generation_config.max_new_tokens == 2
    reference = score_tasks(h, ps, ShortTaskSettings(max_new_tokens=8, batch_size=3))
    _check_against_short_tasks(run, reference, {"toy_toy_gen": "toy_gen", "toy_toy_mc": "toy_mc"})
    lengths = [len(encode_continuation(h, r["prediction"])) for r in reference.records if r["mode"] == "generate"]
    assert max(lengths) > 2, lengths  # the reference answers are longer than the checkpoint's own limit


def test_registered_task_over_local_files(llama_triple, tmp_path) -> None:
    """gsm8k_cot from lm-eval's registry, its dataset replaced by a local JSONL (nothing cached)."""
    data = tmp_path / "gsm8k-test.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in (
        {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "3 + 4 = 7\n#### 7"},
        {"question": "A box holds 12 eggs and 5 break. How many are left?", "answer": "12 - 5 = 7\n#### 7"},
        {"question": "Ann has 2 pens and loses 1. How many pens are left?", "answer": "2 - 1 = 1\n#### 1"})))
    h = load_model(llama_triple[Variant.SHORT])
    run = _lm_eval(h, tasks=["gsm8k_cot"], data_files={"gsm8k_cot": str(data)}, num_fewshot=4, limit=2,
                   gen_kwargs={"max_gen_toks": 6})
    s = run.result.summary
    assert {"gsm8k_cot/exact_match,strict-match", "gsm8k_cot/exact_match,flexible-extract"} <= set(s)
    assert s["n_items"] == 2 and run.raw["n-shot"]["gsm8k_cot"] == 4
    recs = [r for r in run.result.records if r["filter"] == "strict-match"]
    assert [r["target"] for r in recs] == ["7", "7"] and all(isinstance(r["response"], str) for r in recs)
    assert [r["id"] for r in recs] == ["gsm8k_cot:0", "gsm8k_cot:1"]  # documents without an id of their own
    prompt = json.loads(json.dumps(run.samples["gsm8k_cot"][0]["arguments"]))[0][0]
    assert prompt.count("Q: ") == 5 and prompt.endswith("How many apples does he have?\nA:")  # 4 shots + the question


def test_missing_dataset_is_one_line_and_offline(llama_triple, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    h = load_model(llama_triple[Variant.SHORT])
    with pytest.raises(EvaluationError) as e:
        _lm_eval(h, tasks=["gsm8k_cot"], limit=1)
    msg = str(e.value)
    assert "\n" not in msg and "'gsm8k_cot'" in msg and "'openai/gsm8k'" in msg and "data files gsm8k_cot=FILE" in msg
    with pytest.raises(EvaluationError, match=r"no task, group or tag 'gsm8k_cott'\. Did you mean gsm8k_cot"):
        _lm_eval(h, tasks=["gsm8k_cott"])
    with pytest.raises(EvaluationError, match="not among the tasks"):
        _lm_eval(h, tasks=["toy_gen"], data_files={"gsm8k": "x.jsonl"})
    with pytest.raises(EvaluationError, match="scored 0-shot"):
        _lm_eval(h, _same_items_as_prompt_set(chat=False), num_fewshot=2)


def test_hf_offline_sets_and_restores_the_flags(monkeypatch) -> None:
    import datasets.config
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with hf_offline():
        assert is_offline() and datasets.config.HF_HUB_OFFLINE and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert not is_offline() and not datasets.config.HF_HUB_OFFLINE and "HF_DATASETS_OFFLINE" not in os.environ


def test_export_layout_and_refusals(tmp_path) -> None:
    a = make_prompt_set("facts", "3", "task", [TaskItem(id="a", task="recall", prompt="Capital of France?", answer="Paris"),
                                                TaskItem(id="b", task="cloze", prompt="The sky is", answer="blue",
                                                         choices=["blue", "red"], label=0),
                                                TaskItem(id="c", task="cloze", prompt="Grass is", answer="green")],
                        chat=False)
    b = make_prompt_set("sums", "1", "task", [TaskItem(id="s", task="sums", prompt="2+2=", answer="4")], chat=False)
    done = export_task_dir([a, b], tmp_path / "out", group="Org")
    assert done.group == "org" and done.n_items == 4 and done.chat is False
    assert done.tasks == ["org_facts_recall", "org_facts_cloze", "org_facts_cloze_mc", "org_sums"]
    files = sorted(p.name for p in done.path.iterdir())
    assert files == sorted([f"{t}.{x}" for t in done.tasks for x in ("yaml", "jsonl")] + ["_org.yaml", "lensft_hooks.py"])
    mc = yaml.safe_load((done.path / "org_facts_cloze_mc.yaml").read_text())
    assert mc["output_type"] == "multiple_choice" and mc["target_delimiter"] == ""
    assert Path(mc["dataset_kwargs"]["data_files"]["test"]) == done.path / "org_facts_cloze_mc.jsonl"
    doc = json.loads((done.path / "org_facts_cloze_mc.jsonl").read_text())
    assert doc["choices"] == [" blue", " red"] and doc["label"] == 0  # the continuation short_tasks scores
    gen_text = (done.path / "org_sums.yaml").read_text()
    assert "process_results: !function lensft_hooks.exact_match" in gen_text
    assert yaml.safe_load((done.path / "_org.yaml").read_text())["task"] == done.tasks
    with pytest.raises(OutputExists):
        export_task_dir([a], tmp_path / "out")
    with pytest.raises(LensftError, match="kind 'text'"):
        export_task_dir([make_prompt_set("t", "1", "text", [])], tmp_path / "x")
    assert not (tmp_path / "x").exists() and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_settings_validation() -> None:
    assert HarnessSettings(limit=5).lm_eval_limit() == 5 and isinstance(HarnessSettings(limit=5).lm_eval_limit(), int)
    assert HarnessSettings(limit=0.25).lm_eval_limit() == 0.25
    with pytest.raises(ValueError):
        HarnessSettings(limit=2.5)
    with pytest.raises(ValueError):
        HarnessSettings(tasks=["a", "a"])
    with pytest.raises(ValueError):
        HarnessSettings(nonsense=1)


def _result_with(values: dict[tuple[str, int], float], label: str):
    from lensft.provenance import Provenance
    from lensft.results import ProbeResult

    recs = [{"task": t, "groups": ["grp"], "doc_id": i, "filter": "none", "acc": v} for (t, i), v in values.items()]
    return ProbeResult(probe="lm_eval", model=Provenance(label=label), records=recs)


def test_paired_difference_against_numpy() -> None:
    import numpy as np

    from lensft.evaluation.compare import paired_difference

    rng = np.random.default_rng(3)
    a = {("t1", i): float(x) for i, x in enumerate(rng.integers(0, 2, 40))} | {("t2", 0): 1.0}
    b = {("t1", i): float(x) for i, x in enumerate(rng.integers(0, 2, 40))} | {("t2", 0): 0.0, ("t1", 99): 1.0}
    d = paired_difference(_result_with(a, "a"), _result_with(b, "b"), "grp", "acc")
    diffs = np.array([a[k] - b[k] for k in sorted(set(a) & set(b))])
    assert d.n == 41 and d.delta == pytest.approx(diffs.mean())
    assert d.stderr == pytest.approx(diffs.std(ddof=1) / np.sqrt(41))
    assert d.ci95 == pytest.approx((diffs.mean() - 1.959964 * d.stderr, diffs.mean() + 1.959964 * d.stderr))
    only_t1 = paired_difference(_result_with(a, "a"), _result_with(b, "b"), "t1", "acc")
    assert only_t1.n == 40
    with pytest.raises(EvaluationError, match="share 0 documents"):
        paired_difference(_result_with({("x", 0): 1.0}, "a"), _result_with(b, "b"), "grp", "acc")


def test_swap_effect_is_paired_per_document(llama_triple, task_dir) -> None:
    """A graft and its host on the same documents: the paired difference of their MC accuracy is
    the mean of the per-document differences lm-eval logged."""
    from lensft.evaluation.compare import paired_difference

    triple = load_triple(short=llama_triple[Variant.SHORT], long=llama_triple[Variant.LONG])
    runs = {}
    for name, spec in (("host", GraftSpec.build(mha="short", ffn="short")), ("graft", GraftSpec.build(mha="long", ffn="short"))):
        h = graft_model(triple, spec)
        runs[name] = _lm_eval(h, tasks=["toy_mc"], include_path=[str(task_dir)]).result
    d = paired_difference(runs["graft"], runs["host"], "toy_mc", "acc")
    accs = {k: {r["doc_id"]: r["acc"] for r in v.records} for k, v in runs.items()}
    assert d.n == 3 and d.delta == pytest.approx(sum(accs["graft"][i] - accs["host"][i] for i in range(3)) / 3)
    assert d.delta == pytest.approx(runs["graft"].summary["toy_mc/acc,none"] - runs["host"].summary["toy_mc/acc,none"])
