"""``lensft eval`` and ``lensft export-tasks``: real command lines, in process and as a console
script with the network cut off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_eval import _write_task_dir

from lensft.cli.app import main
from lensft.organism.config import preset
from lensft.organism.evalsets import write_eval_sets
from lensft.organism.world import make_world
from lensft.probes.short_tasks import ShortTaskSettings, score_tasks
from lensft.handle import load_model
from lensft.prompts import read_prompt_set
from lensft.results import load_result
from lensft.variants import Variant


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_task_dir(tmp_path_factory.mktemp("cli-tasks"))


def test_eval_checkpoint_writes_three_files_and_refuses_to_overwrite(llama_triple, task_dir, tmp_path, capsys) -> None:
    out = tmp_path / "short.json"
    argv = ["eval", "--model", str(llama_triple[Variant.SHORT]), "--include-path", str(task_dir),
            "--tasks", "toy_gen,toy_mc", "--batch-size", "2", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "toy_gen" in text and "exact_match" in text and "95% interval" in text
    res = load_result(out)
    assert res.probe == "lm_eval" and res.settings["batch_size"] == 2 and len(res.records) == 6
    raw = json.loads((tmp_path / "short.lm_eval.json").read_text())
    assert raw["results"]["toy_mc"]["acc,none"] == res.summary["toy_mc/acc,none"] and "samples" not in raw
    samples = [json.loads(x) for x in (tmp_path / "short.lm_eval_samples.jsonl").read_text().splitlines()]
    assert sorted({s["task"] for s in samples}) == ["toy_gen", "toy_mc"] and len(samples) == 6
    before = out.read_bytes()
    assert main(argv) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*argv, "--force", "--no-samples"]) == 0
    assert load_result(out).records == []


def test_eval_in_memory_graft(llama_triple, task_dir, tmp_path) -> None:
    out = tmp_path / "graft.json"
    t = llama_triple
    assert main(["eval", "--short", str(t[Variant.SHORT]), "--long", str(t[Variant.LONG]), "--mha", "long",
                 "--ffn", "short", "--layers", "0:1", "--include-path", str(task_dir), "--tasks", "toy_mc",
                 "--out", str(out)]) == 0
    res = load_result(out)
    assert res.model.label == "short + long.mha[0:1]" and res.model.graft["layers"] == {"start": 0, "stop": 1}
    assert set(res.model.sources) == {"short", "long"}
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no checkpoint written, no leftovers


@pytest.mark.parametrize("argv,msg", [
    (["--model", "M", "--short", "M", "--tasks", "x"], "give --model DIR, or --short"),
    (["--model", "M"], "give --tasks"),
    (["--model", "M", "--tasks", "a", "--prompts", "P"], "one of the three"),
    (["--model", "M", "--tasks", "a", "--suite", "paper"], "one of the three"),
    (["--short", "M", "--long", "M", "--tasks", "toy_mc"], "needs --short, --long, --mha and --ffn"),
    (["--model", "M", "--mha", "long", "--tasks", "toy_mc"], "do not apply to --model"),
    (["--model", "M", "--tasks", "toy_mc", "--data-files", "nofile"], "TASK=FILE"),
    (["--model", "M", "--tasks", "toy_mc", "--limit", "2.5"], "--limit"),
    (["--model", "M", "--tasks", "toy_mc", "--dtype", "float8"], "Invalid value for '--dtype'"),
    (["--model", "M", "--tasks", "toy_mcc"], "Did you mean toy_mc"),
    (["--model", "M", "--tasks", "toy_mc", "--include-path", "NOPE"], "is not a directory"),
])
def test_bad_input_is_one_line_exit_1(llama_triple, task_dir, tmp_path, capsys, argv, msg) -> None:
    model = str(llama_triple[Variant.SHORT])
    sub = {"M": model, "P": str(tmp_path / "p.jsonl"), "NOPE": str(tmp_path / "nope")}
    argv = [sub.get(a, a) for a in argv]
    if "--include-path" not in argv:
        argv += ["--include-path", str(task_dir)]
    out = tmp_path / "o.json"
    assert main(["eval", *argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


_NO_NETWORK = """
import sys
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        sys.stderr.write(f"NETWORK ATTEMPT {event} {args!r}\\n")
        raise OSError("network is off in this test")
sys.addaudithook(hook)
from lensft.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def test_missing_dataset_offline_console(llama_triple, tmp_path) -> None:
    """No offline variables set by the caller, an empty HF cache: one line, exit 1, no socket opened."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    out = tmp_path / "gsm.json"
    proc = subprocess.run([sys.executable, "-c", _NO_NETWORK, "eval", "--model", str(llama_triple[Variant.SHORT]),
                           "--tasks", "gsm8k_cot", "--num-fewshot", "4", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "NETWORK ATTEMPT" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: task 'gsm8k_cot' needs the Hugging Face dataset 'openai/gsm8k'")
    assert "--data-files gsm8k_cot=FILE" in lines[0]
    assert not out.exists() and not (tmp_path / "gsm.lm_eval.json").exists()


def test_probe_list_does_not_import_lm_eval() -> None:
    code = ("import sys\nfrom lensft.cli.app import main\nassert main(['probe', '--list']) == 0\n"
            "assert 'lm_eval' not in sys.modules and 'datasets' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "lm_eval" in proc.stdout


def test_organism_task_sets_through_the_harness(pico_triples, tmp_path, capsys) -> None:
    """The organism's held-out task sets, exported and scored by lm-eval with the chat template,
    give short_tasks' accuracy on every task (on a pico model: the same harness for both)."""
    cfg = preset("tiny")
    data = tmp_path / "data"
    write_eval_sets(make_world(cfg.base.world, cfg.seed), cfg.eval, np.random.default_rng(0), data, chars_per_token=4.0)
    for long_form in data.glob("*_long.jsonl"):  # longer than the pico model's positions: short forms only
        long_form.unlink()
    tasks = tmp_path / "organism-tasks"
    assert main(["export-tasks", str(data), "--group", "organism", "--out", str(tasks)]) == 0
    printed = capsys.readouterr().out
    assert "skipped conflict.jsonl" in printed and "skipped needle.jsonl" in printed and "--chat" in printed
    expected = {"organism_arithmetic": "arithmetic", "organism_cloze": "cloze", "organism_fact_recall": "fact_recall",
                "organism_fact_recall_seen": "fact_recall", "organism_reading": "reading"}
    assert sorted(p.stem for p in tasks.glob("organism_*.yaml")) == sorted(expected)
    assert main(["export-tasks", str(data), "--out", str(tasks)]) == 1  # exists
    model = pico_triples["llama"][Variant.BASE]
    out = tmp_path / "org.json"
    assert main(["eval", "--model", str(model), "--include-path", str(tasks), "--tasks", "organism", "--chat",
                 "--out", str(out)]) == 0
    res = load_result(out)
    h = load_model(model)
    for lm_task, set_name in ((t, t.removeprefix("organism_")) for t in expected):
        ref = score_tasks(h, read_prompt_set(data / f"{set_name}.jsonl"), ShortTaskSettings())
        ours = [r for r in res.records if r["task"] == lm_task]
        assert len(ours) == ref.summary["n_items"]
        assert res.summary[f"{lm_task}/exact_match,none"] == pytest.approx(ref.summary["accuracy"], abs=1e-12)
        preds = {r["id"]: r["response"] for r in ours}
        from lensft.probes.scoring import first_line

        assert [first_line(preds[r["id"]]) for r in ref.records] == [r["prediction"] for r in ref.records]


def test_console_script_eval(llama_triple, task_dir, tmp_path) -> None:
    exe = shutil.which("lensft") or str(Path(sys.executable).with_name("lensft"))
    out = tmp_path / "c.json"
    proc = subprocess.run([exe, "eval", "--model", str(llama_triple[Variant.BASE]), "--include-path", str(task_dir),
                           "--tasks", "toy_mc", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "toy_mc" in proc.stdout and "fatal:" not in proc.stderr and "WARNING" not in proc.stderr
    assert load_result(out).summary["n_items"] == 3
