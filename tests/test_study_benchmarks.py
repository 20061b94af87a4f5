"""The study's benchmarks step: lm-eval tasks on every arm and swap as cached units, byte-identical
reruns, the report's tables against independent oracles (lm-eval's own aggregates, per-document
differences), the organism's task sets through lm-eval equal to short_tasks, the paper config, and
the off / missing-lm-eval paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from test_eval import _write_task_dir

from lensft.cli.app import main
from lensft.evaluation.convert import metric_rows
from lensft.probes.scoring import first_line
from lensft.results import load_result
from lensft.study import STEP_NAMES, StepConfig, StudyConfig, StudyConfigError, run
from lensft.study.plan import Available, plan_benchmarks
from lensft.study.record import Replicate, StudyRecord
from lensft.variants import Variant

from study_support import tiny_organism_dir

ROOT = Path(__file__).resolve().parents[1]


def _steps(bench: dict, *on: str) -> dict[str, StepConfig]:
    steps = {n: StepConfig(enabled=n in on, max_items=4) for n in STEP_NAMES}
    steps["benchmarks"] = StepConfig(settings=bench)
    return steps


def _cfg(triple: dict[Variant, Path], bench: dict, *on: str, **kw) -> StudyConfig:
    return StudyConfig(base=str(triple[Variant.BASE]), short=str(triple[Variant.SHORT]), long=str(triple[Variant.LONG]),
                       report=False, png=False, steps=_steps(bench, *on), **kw)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_task_dir(tmp_path_factory.mktemp("study-tasks"))


@pytest.fixture(scope="module")
def bench_study(llama_triple, task_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-study")
    bench = {"tasks": ["toy_gen", "toy_mc"], "include_path": [str(task_dir)], "batch_size": 4}
    return out, run(_cfg(llama_triple, bench, band=2), out)


def test_every_arm_and_swap_is_a_unit(bench_study) -> None:
    out, outcome = bench_study
    assert not outcome.failures, outcome.failures
    step = outcome.record.step("benchmarks")
    labels = {u.model.label for u in step.units}
    assert labels == {"base", "short", "long", "short + long.mha", "short + long.ffn", "long + short.mha",
                      "long + short.ffn", "short + long.mha[0:2]", "short + long.ffn[0:2]", "long + short.mha[0:2]",
                      "long + short.ffn[0:2]"}, labels
    assert len(step.units) == 2 * len(labels)  # one unit per (model, task)
    for u in step.units:
        r = load_result(out / u.file)
        assert r.probe == "lm_eval" and r.settings["tasks"] in (["toy_gen"], ["toy_mc"]) and r.model.label == u.model.label
        assert len(r.records) == 3
    assert any("organism-only" in s for s in step.skipped)  # the mixes, as in every arm step


def test_rerun_is_cached_and_byte_identical(bench_study, llama_triple, task_dir, tmp_path) -> None:
    out, outcome = bench_study
    bench = {"tasks": ["toy_gen", "toy_mc"], "include_path": [str(task_dir)], "batch_size": 4}
    again = run(_cfg(llama_triple, bench, band=2), out)
    assert again.record.step("benchmarks").n_run == 0
    fresh = run(_cfg(llama_triple, {**bench, "models": ["arms"]}, band=2), tmp_path)
    assert fresh.record.step("benchmarks").n_run == 6
    for u in fresh.record.units("benchmarks"):
        assert (tmp_path / u.file).read_bytes() == (out / u.file).read_bytes(), u.model.label


def test_editing_a_local_task_reruns_its_units(llama_triple, task_dir, tmp_path) -> None:
    tasks = _write_task_dir(tmp_path / "tasks")
    bench = {"tasks": ["toy_mc"], "include_path": [str(tasks)], "models": ["arms"]}
    first = run(_cfg(llama_triple, bench), tmp_path / "out")
    data = tasks / "toy_mc.jsonl"
    data.write_text(data.read_text().replace("warm", "soft"))
    second = run(_cfg(llama_triple, bench), tmp_path / "out")
    assert first.record.step("benchmarks").n_run == second.record.step("benchmarks").n_run == 3


def test_report_tables_against_lm_eval_and_paired_differences(bench_study) -> None:
    from lensft.report.benchmarks import benchmark_tables
    from lensft.report.data import StudyData
    from lensft.report.render import write_report

    out, outcome = bench_study
    d = StudyData.load(out)
    tables = {t.score: t for t in benchmark_tables(d)}
    assert set(tables) == {"toy_gen/exact_match,none", "toy_mc/acc,none"}
    results = {(u.model.label, tuple(u.record.settings["tasks"])): u.result for u in d.step("benchmarks")}
    for score, t in tables.items():
        task = score.split("/")[0]
        assert t.n_docs == 3 and len(t.rows) == 11
        rows = {r.model.label: r for r in t.rows}
        for label, r in rows.items():
            lm = {m.label: m for m in metric_rows(results[(label, (task,))])}[score]
            assert r.score.estimate == pytest.approx(lm.value, abs=1e-12)  # lm-eval's own aggregate
            assert r.score.low <= r.score.estimate <= r.score.high and not r.stderr_only
        metric = score.split("/")[1].split(",")[0]
        for label, r in rows.items():
            if "+" not in label:
                continue
            host = label.split(" + ")[0]
            a = {x["doc_id"]: float(x[metric]) for x in results[(host, (task,))].records}
            b = {x["doc_id"]: float(x[metric]) for x in results[(label, (task,))].records}
            assert r.versus == host
            assert r.delta.estimate == pytest.approx(sum(b[k] - a[k] for k in a) / len(a), abs=1e-12)
            assert r.delta.low <= r.delta.estimate <= r.delta.high
        assert rows["long"].versus == "short" and rows["base"].versus is None and rows["short"].paper is None
    report = write_report(out, png=False)
    html = report.read_text()
    assert "6. Standard benchmarks" in html and html.count("class='benchmark-table'") == 2
    saved = json.loads((out / "benchmarks.json").read_text())
    assert {t["score"] for t in saved} == set(tables)
    first = (out / "benchmarks.json").read_bytes(), report.read_bytes()
    write_report(out, png=False)
    assert ((out / "benchmarks.json").read_bytes(), report.read_bytes()) == first  # deterministic report


def test_off_by_default_says_why(llama_triple, tmp_path) -> None:
    outcome = run(_cfg(llama_triple, {}), tmp_path, only={"benchmarks"})
    step = outcome.record.step("benchmarks")
    assert step.status == "skipped" and not step.units
    assert step.skipped == ["benchmarks: not measured: no benchmarks configured (set steps.benchmarks.settings.suite, "
                            "e.g. paper, or tasks)"]


def test_missing_lm_eval_is_one_line(llama_triple, task_dir, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    cfg = _cfg(llama_triple, {"tasks": ["toy_gen"], "include_path": [str(task_dir)]})
    path = tmp_path / "study.yaml"
    path.write_text(cfg.to_yaml())
    code = main(["study", "--config", str(path), "--out", str(tmp_path / "out"), "--steps", "benchmarks", "--quiet",
                 "--no-report"])
    text = capsys.readouterr()
    assert code in (0, None)
    flat = " ".join((text.out + text.err).split())  # rich wraps long lines at the terminal's width
    assert flat.count("lm-evaluation-harness") == 1, flat
    assert ("benchmarks: not measured: lm-evaluation-harness is not installed; install it with pip install "
            "'lensft[eval]'") in flat
    step = StudyRecord.load(tmp_path / "out").step("benchmarks")
    assert not step.units and len(step.skipped) == 1 and "\n" not in step.skipped[0]
    assert "Traceback" not in text.out + text.err


@pytest.mark.parametrize("bench, msg", [
    ({"suite": "nope"}, "neither a shipped suite"),
    ({"suite": "paper", "benchmarks": ["GSM9K"]}, "no benchmark"),
    ({"tasks": ["a"], "limit": 1.5}, "limit"),
    ({"tasks": ["a"], "colour": 1}, "colour"),
])
def test_bad_benchmark_settings_are_one_line(llama_triple, bench, msg) -> None:
    with pytest.raises(StudyConfigError, match=msg) as e:
        StudyConfig.validate_dict({"short": "s", "long": "l", "steps": {"benchmarks": {"settings": bench}}})
    assert "\n" not in str(e.value)


def test_paper_config_plans_the_paper_suite() -> None:
    path = ROOT / "analyses" / "configs" / "paper_benchmarks.yaml"
    cfg = StudyConfig.merged(path, {"short": "/s", "long": "/l"})
    av = Available(Replicate(), frozenset({Variant.SHORT, Variant.LONG}), (), 4, False)
    plan = plan_benchmarks(av, cfg.step("benchmarks").settings, None, cfg)
    runs = {tuple(u.settings["tasks"]): u.settings for u in plan.units}
    assert set(runs) == {("mmlu",), ("bbh_cot_fewshot",), ("lambada_openai",), ("gsm8k_cot",), ("minerva_math",),
                         ("openbookqa",), ("piqa",)}
    assert runs[("gsm8k_cot",)]["num_fewshot"] == 4 and runs[("bbh_cot_fewshot",)]["num_fewshot"] == 3
    assert {u.model.label for u in plan.units} == {"short", "long", "short + long.mha", "short + long.ffn",
                                                   "long + short.mha", "long + short.ffn"}
    assert sum("MBPP not measured" in s or "HumanEval not measured" in s for s in plan.skipped) == 2
    assert yaml.safe_load(path.read_text())["steps"]["benchmarks"]["settings"]["suite"] == "paper"


@pytest.mark.slow
def test_organism_tasks_through_lm_eval_equal_short_tasks(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("organism-bench")
    steps = {n: StepConfig(enabled=n == "short_tasks") for n in STEP_NAMES}
    steps["benchmarks"] = StepConfig(settings={"tasks": ["organism"], "models": ["arms"]})
    cfg = StudyConfig(organism="tiny", organism_dir=str(tiny_organism_dir(tmp_path_factory)), steps=steps,
                      report=False, png=False)
    outcome = run(cfg, out)
    assert not outcome.failures, outcome.failures
    exported = out / "lm_eval_tasks" / "seed-0"
    assert (exported / "_organism_tasks.yaml").is_file()  # the task directory lm-eval scored, for lensft eval
    ref = {u.model.key: load_result(out / u.file) for u in outcome.record.units("short_tasks")}
    units = list(outcome.record.units("benchmarks"))
    assert {u.model.key for u in units} == set(ref) and len(units) >= 3
    for u in units:
        ours, theirs = load_result(out / u.file), ref[u.model.key]
        mine, said = {}, {}
        for rec in ours.records:
            score = rec.get("exact_match", rec.get("contains_match", rec.get("acc")))
            mine[rec["id"]] = bool(score)
            said[rec["id"]] = first_line(rec["response"]) if "response" in rec else rec["pred_index"]
        assert mine == {r["id"]: bool(r["correct"]) for r in theirs.records}, u.model.label
        # the tiny organism answers few items right, so the answers themselves are compared too
        assert said == {r["id"]: r["prediction"] if r["mode"] == "generate" else r["pred_index"] for r in theirs.records}
        n = len(mine)
        assert sum(mine.values()) / n == pytest.approx(theirs.summary["accuracy"], abs=1e-12)


def test_a_record_whose_suite_file_moved_still_loads(llama_triple, tmp_path) -> None:
    import shutil

    from lensft.evaluation.suite import SHIPPED

    suite = tmp_path / "suite.yaml"
    shutil.copy(ROOT / "lensft" / "evaluation" / "data" / SHIPPED["paper"], suite)
    cfg = _cfg(llama_triple, {"suite": str(suite), "benchmarks": ["PIQA"]})
    outcome = run(cfg, tmp_path / "out", only={"short_tasks"})
    suite.unlink()
    assert StudyRecord.load(tmp_path / "out").config == outcome.record.config
    with pytest.raises(StudyConfigError, match="neither a shipped suite"):
        StudyConfig.load(tmp_path / "out" / "study.yaml")
