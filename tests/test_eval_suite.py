"""Benchmark suites: the shipped paper suite checked against the paper's Table 1 and the installed
lm-eval's task definitions; a suite run with measured and not-measured benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_eval import _write_task_dir

from lensft.cli.app import main
from lensft.errors import EvaluationError
from lensft.evaluation.suite import load_suite
from lensft.evaluation.suite_run import run_suite
from lensft.evaluation.tasks import registry
from lensft.handle import load_model
from lensft.results import load_result
from lensft.variants import Variant

#: Table 1's Avg column (the paper's mean of its nine benchmarks), an oracle for the transcription
TABLE1_AVG = {"UltraChat": 53.41, "Tulu-v2": 57.48, "LongAlpaca": 58.20, "LongMIT": 57.83, "ChatQA2": 58.33}


def test_paper_suite_transcribes_table_1_and_3() -> None:
    suite = load_suite("paper")
    assert [b.name for b in suite.benchmarks] == ["MMLU", "BBH", "LAMBADA", "GSM8K", "MATH", "MBPP", "HumanEval",
                                                  "OpenBookQA", "PIQA"]
    for dataset, avg in TABLE1_AVG.items():
        scores = [b.paper_scores[dataset] for b in suite.benchmarks]
        assert sum(scores) / len(scores) == pytest.approx(avg, abs=0.01)  # inputs and Avg rounded to 0.01
    for b in suite.benchmarks:
        assert b.num_fewshot == b.paper.shots and b.difference
        assert b.unsafe_code is (b.name in ("MBPP", "HumanEval"))
    assert suite.paper_score(suite.benchmarks[3], "short") == 54.69 and suite.arms == {"short": "UltraChat",
                                                                                         "long": "ChatQA2"}
    gsm = {(s.host, s.block): (s.own, s.swapped) for s in suite.swaps}
    assert gsm == {("short", "mha"): (54.7, 67.8), ("long", "mha"): (68.8, 65.2)}


def test_paper_suite_names_what_the_installed_lm_eval_reports() -> None:
    """Each headline score is a metric (and filter) the task's own YAML declares."""
    from lm_eval.tasks._yaml_loader import load_yaml

    for b in load_suite("paper").benchmarks:
        entry = registry().task_index.get(b.score.task)
        assert entry is not None and b.score.task in b.tasks, b.name
        cfg = load_yaml(entry.yaml_path, resolve_func=False)
        metrics = [str(m["metric"]).rsplit(".", 1)[-1] for m in cfg.get("metric_list") or cfg["aggregate_metric_list"]]
        assert b.score.metric in metrics, (b.name, metrics)
        filters = [f["name"] for f in cfg.get("filter_list") or []] + \
                  [m.get("filter_list") for m in cfg.get("aggregate_metric_list") or [] if m.get("filter_list")]
        assert b.score.filter in (None, "none") or b.score.filter in filters, (b.name, filters)


def _toy_suite(tmp_path: Path, task_dir: Path) -> Path:
    suite = {"name": "toy", "arms": {"short": "A", "long": "B"}, "benchmarks": [
        {"name": "Toy MC", "tasks": ["toy_mc"], "num_fewshot": 0, "score": {"task": "toy_mc", "metric": "acc"},
         "paper_scores": {"A": 50.0, "B": 60.0}},
        {"name": "Toy gen", "tasks": ["toy_gen"], "score": {"task": "toy_gen", "metric": "exact_match", "filter": "none"}},
        {"name": "GSM8K", "tasks": ["gsm8k_cot"], "num_fewshot": 4,
         "score": {"task": "gsm8k_cot", "metric": "exact_match", "filter": "flexible-extract"}},
        {"name": "Code", "tasks": ["toy_gen"], "unsafe_code": True, "score": {"task": "toy_gen", "metric": "exact_match"}},
    ]}
    path = tmp_path / "toy-suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_suite_run_measures_what_it_can(llama_triple, tmp_path) -> None:
    task_dir = _write_task_dir(tmp_path / "tasks")
    suite = load_suite(_toy_suite(tmp_path, task_dir))
    h = load_model(llama_triple[Variant.SHORT])
    out = tmp_path / "run"
    run = run_suite(h, suite, out, include_path=[str(task_dir)])
    rows = {r.benchmark: r for r in run.rows}
    assert [r.benchmark for r in run.not_measured] == ["GSM8K", "Code"]
    assert "'openai/gsm8k'" in rows["GSM8K"].reason and "model-written code" in rows["Code"].reason
    mc = rows["Toy MC"]
    res = load_result(out / mc.result_file)
    assert mc.value == res.summary["toy_mc/acc,none"] and mc.n == 3 and mc.paper == {"short": 50.0, "long": 60.0}
    assert mc.ci95[0] < mc.value < mc.ci95[1] or mc.stderr == 0
    assert (out / "toy-mc.lm_eval.json").is_file() and not (out / "gsm8k.json").exists()
    saved = json.loads((out / "suite.json").read_text())
    assert [r["status"] for r in saved["rows"]] == ["measured", "measured", "not measured", "not measured"]
    with pytest.raises(EvaluationError, match="neither a shipped suite"):
        load_suite(tmp_path / "nope.yaml")


def test_cli_paper_suite_offline(llama_triple, tmp_path, capsys) -> None:
    out = tmp_path / "paper"
    assert main(["eval", "--suite", "paper", "--model", str(llama_triple[Variant.SHORT]), "--limit", "1",
                 "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "paper short" in captured.out and "54.69" in captured.out
    err = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: 9 of 9 benchmarks not measured")
    rows = json.loads((out / "suite.json").read_text())["rows"]
    assert len(rows) == 9 and all(r["status"] == "not measured" for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["suite.json"]
    assert main(["eval", "--suite", "paper", "--model", str(llama_triple[Variant.SHORT]), "--num-fewshot", "2",
                 "--out", str(tmp_path / "x")]) == 1
    assert "set per benchmark" in capsys.readouterr().err
