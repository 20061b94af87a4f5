"""``lensft probe``: the real command line, in process and through the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lensft.cli.app import main
from lensft.probes.conflict_formats import example_path
from lensft.results import load_result
from lensft.variants import Variant


def test_list(capsys) -> None:
    assert main(["probe", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("ffn_activations", "short_tasks", "knowledge_preference"):
        assert name in out


def test_ffn_default_prompts(pico_triples, tmp_path, capsys) -> None:
    model = pico_triples["llama"][Variant.BASE]
    out = tmp_path / "ffn.json"
    assert main(["probe", "ffn_activations", "--model", str(model), "--out", str(out),
                 "--set", "thresholds=[0.01, 0.1]"]) == 0
    assert "act_sparsity" in capsys.readouterr().out
    res = load_result(out)
    assert res.prompt_set.name == "ffn_default" and res.settings["thresholds"] == [0.01, 0.1]
    assert res.model.sources and res.dims["mean"] == ["site", "phase", "layer"]
    raw = json.loads(out.read_text())
    assert isinstance(raw["arrays"]["sparsity"][0][0][0], list)  # nested lists
    assert main(["probe", "ffn_activations", "--model", str(model), "--out", str(out)]) == 1  # exists
    assert main(["probe", "ffn_activations", "--model", str(model), "--out", str(out), "--force"]) == 0


def test_short_tasks_user_file_and_knowledge_formats(pico_triples, tmp_path) -> None:
    model = pico_triples["gpt2"][Variant.BASE]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"prompt": "What is 3 plus 4?", "answer": "7"}\n'
                     '{"prompt": "The sky is", "choices": ["blue", "green"], "label": 0}\n')
    out = tmp_path / "st.json"
    assert main(["probe", "short_tasks", "--model", str(model), "--prompts", str(tasks), "--out", str(out),
                 "--set", "max_new_tokens=2", "--set", "chat=false"]) == 0
    res = load_result(out)
    assert res.prompt_set.name == "tasks" and res.settings["chat"] is False and len(res.records) == 2
    out2 = tmp_path / "kp.json"
    assert main(["probe", "knowledge_preference", "--model", str(model), "--prompts", str(example_path("conflictqa")),
                 "--out", str(out2), "--set", "generate=false"]) == 0
    assert load_result(out2).summary["n_items"] == 3


@pytest.mark.parametrize("argv,msg", [
    (["probe", "short_tasks", "--set", "max_new_tokens=2"], "--model"),
    (["probe", "short_tasks", "--model", "M", "--set", "nope=1"], "unknown setting"),
    (["probe", "short_tasks", "--model", "M", "--set", "batch_size=zero"], "batch_size"),
    (["probe", "short_tasks", "--model", "M", "--set", "novalue"], "key=value"),
    (["probe", "knowledge_preference", "--model", "M", "--prompts", "TASKS"], "cannot tell the conflict format"),
    (["probe", "ffn_activation", "--model", "M"], "Did you mean 'ffn_activations'"),
    (["probe"], "--list"),
])
def test_bad_input_is_one_line_exit_1(pico_triples, tmp_path, capsys, argv, msg) -> None:
    tasks = tmp_path / "t.jsonl"
    tasks.write_text('{"prompt": "p", "answer": "a"}\n')
    model = str(pico_triples["llama"][Variant.BASE])
    argv = [model if a == "M" else str(tasks) if a == "TASKS" else a for a in argv]
    assert main([*argv, "--out", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_console_script(pico_triples, tmp_path) -> None:
    exe = shutil.which("lensft") or str(Path(sys.executable).with_name("lensft"))
    out = tmp_path / "k.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([exe, "probe", "knowledge_preference", "--model", str(pico_triples["qwen2"][Variant.BASE]),
                           "--out", str(out), "--set", "max_new_tokens=2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "margin_mean" in proc.stdout
    assert load_result(out).probe == "knowledge_preference"


def test_every_registered_probe_runs_on_its_built_in_prompts(pico_triples, tmp_path, capsys) -> None:
    from lensft.probes.registry import get_probe, is_pair_probe, list_probes

    model, other = (str(pico_triples["qwen2"][v]) for v in (Variant.BASE, Variant.LONG))
    names = list(list_probes())
    assert "patching" in names and is_pair_probe(get_probe("patching"))
    for name in names:
        out = tmp_path / f"{name}.json"
        donor = ["--donor", other] if is_pair_probe(get_probe(name)) else []
        assert main(["probe", name, "--model", model, *donor, "--out", str(out)]) == 0, capsys.readouterr().err
        res = load_result(out)
        assert res.probe == name and res.prompt_set is not None and res.prompt_set.n_items > 0


def test_pair_probe_needs_a_donor_and_a_plain_probe_refuses_one(pico_triples, tmp_path, capsys) -> None:
    model = str(pico_triples["qwen2"][Variant.BASE])
    assert main(["probe", "patching", "--model", model, "--out", str(tmp_path / "p.json")]) == 1
    assert "pair probe: give --donor" in capsys.readouterr().err
    assert main(["probe", "ffn_activations", "--model", model, "--donor", model, "--out", str(tmp_path / "f.json")]) == 1
    assert "takes no --donor" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "f.json").exists()


def test_patch_command(pico_triples, tmp_path, capsys) -> None:
    short, long = (str(pico_triples["llama"][v]) for v in (Variant.SHORT, Variant.LONG))
    out = tmp_path / "patch.json"
    assert main(["patch", "--host", short, "--donor", short, "--component", "mha", "--out", str(out)]) == 0
    res = load_result(out)
    assert res.probe == "patching" and res.dims["delta"] == ["component", "layer"]
    assert all(abs(x) < 1e-9 for row in res.arrays["delta"] for x in row)  # donor == host: nothing moves
    assert main(["patch", "--host", short, "--donor", long, "--layers", "1:2", "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    assert main(["patch", "--host", short, "--donor", long, "--component", "attn", "--out", str(tmp_path / "x.json")]) == 1
    assert "--component must be one of mha, ffn, both" in capsys.readouterr().err


def test_device_dtype_and_batch_size_flags(pico_triples, tmp_path, capsys) -> None:
    model = str(pico_triples["llama"][Variant.BASE])
    out = tmp_path / "spread.json"
    assert main(["probe", "attention_spread", "--model", model, "--out", str(out), "--device", "cpu",
                 "--dtype", "bfloat16", "--batch-size", "3"]) == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.settings["batch_size"] == 3 and res.model.dtype == "bfloat16" and res.model.device == "cpu"
    assert main(["probe", "ffn_activations", "--model", model, "--out", str(tmp_path / "f.json"),
                 "--device", "auto"]) == 0
    assert load_result(tmp_path / "f.json").model.dtype == "float32"  # the checkpoint's own dtype
    short, long = (str(pico_triples["llama"][v]) for v in (Variant.SHORT, Variant.LONG))
    assert main(["patch", "--host", short, "--donor", long, "--component", "mha", "--out",
                 str(tmp_path / "p.json"), "--dtype", "float16", "--batch-size", "2"]) == 0
    p = load_result(tmp_path / "p.json")
    assert p.model.dtype == "float16" and p.settings["batch_size"] == 2


@pytest.mark.parametrize("argv,msg", [
    (["--device", "gpu"], "--device: device must be cpu, cuda, cuda:N, auto or meta"),
    (["--dtype", "int8"], "int8"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bad_device_dtype_batch_size(pico_triples, tmp_path, capsys, argv, msg) -> None:
    model = str(pico_triples["llama"][Variant.BASE])
    assert main(["probe", "ffn_activations", "--model", model, "--out", str(tmp_path / "o.json"), *argv]) == 1
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal without a GPU")
def test_cuda_without_a_gpu_is_one_line(pico_triples, tmp_path, capsys) -> None:
    model = str(pico_triples["llama"][Variant.BASE])
    assert main(["probe", "ffn_activations", "--model", model, "--out", str(tmp_path / "o.json"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "no GPU" in err and "device cpu" in err and len(err.strip().splitlines()) == 1


def test_not_enough_memory_names_the_flags_to_try(pico_triples, tmp_path, capsys, monkeypatch) -> None:
    import lensft.devices.memory as memory

    monkeypatch.setattr(memory, "host_available", lambda: 100_000)
    model = str(pico_triples["llama"][Variant.BASE])
    assert main(["probe", "attention_spread", "--model", model, "--out", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs about" in err and "0.00 GB free" in err
    assert "--dtype bfloat16" in err and "--batch-size" in err
    assert not (tmp_path / "o.json").exists()
