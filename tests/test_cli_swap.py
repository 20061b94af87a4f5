"""`lensft swap` / `lensft inspect` on the real command line, including every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from lensft.cli.app import main
from lensft.pico import build_pico, build_tokenizer


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def triple_copy(llama_triple, tmp_path) -> dict[str, Path]:
    out = {}
    for v, p in llama_triple.items():
        shutil.copytree(p, tmp_path / v.value)
        out[v.value] = tmp_path / v.value
    return out


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_swap_writes_a_loadable_graft(triple_copy, tmp_path, capsys) -> None:
    t = triple_copy
    code, out, err = _run(["swap", "--base", str(t["base"]), "--short", str(t["short"]), "--long", str(t["long"]),
                           "--mha", "long", "--ffn", "short", "--out", str(tmp_path / "g")], capsys)
    assert code == 0, err
    assert "mha" in out and "long" in out and "wrote" in out
    m = json.loads((tmp_path / "g" / "lensft_manifest.json").read_text())
    assert m["spec"]["host"] == "short"
    assert m["tensors"]["model.layers.0.self_attn.q_proj.weight"]["source"] == "long"
    assert m["tensors"]["model.layers.0.mlp.up_proj.weight"]["source"] == "short"
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "g", local_files_only=True)


def test_swap_layers_alpha_and_force(triple_copy, tmp_path, capsys) -> None:
    t = triple_copy
    args = ["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long", "--ffn", "long",
            "--host", "short", "--layers", "1:2", "--alpha", "0.5", "--norms", "module", "--out", str(tmp_path / "g")]
    assert _run(args, capsys)[0] == 0
    m = json.loads((tmp_path / "g" / "lensft_manifest.json").read_text())
    assert m["tensors"]["model.layers.0.self_attn.q_proj.weight"]["source"] == "short"
    assert m["tensors"]["model.layers.1.self_attn.q_proj.weight"] == {
        "role": "mha", "layer": 1, "source": "long", "host": "short", "alpha": 0.5}
    code, _, err = _run(args, capsys)
    assert code == 1 and "already exists" in err
    assert _run(args + ["--force"], capsys)[0] == 0


def test_inspect_reports_weight_changes(triple_copy, tmp_path, capsys) -> None:
    t = triple_copy
    code, out, err = _run(["inspect", str(t["base"]), str(t["short"]), str(t["long"]), "--json", str(tmp_path / "r.json")], capsys)
    assert code == 0, err
    assert "compatible" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    changes = [w for w in rep["weight_changes"] if w["role"] == "mha" and w["variant"] == "long"]
    assert len(changes) == 2 and all(0.01 < w["rel_change"] < 0.2 for w in changes)


def _make_bad_inputs(t: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: CLI args replacing the long checkpoint (or flags), and a phrase the error must contain."""
    empty = tmp / "empty"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text((t["long"] / "config.json").read_text())
    wide = build_pico(tmp / "wide", "llama", seed=9, hidden_size=64)
    vocab = build_pico(tmp / "vocab", "llama", seed=9, tokenizer=build_tokenizer(300))
    unknown = tmp / "unknown"
    shutil.copytree(t["long"], unknown)
    cfg = json.loads((unknown / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "lama", ["LamaForCausalLM"]
    (unknown / "config.json").write_text(json.dumps(cfg))
    trunc = tmp / "trunc"
    shutil.copytree(t["long"], trunc)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    sharded = build_pico(tmp / "sharded", "llama", seed=5, max_shard_size="20KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    shards[-1].unlink()
    return {
        "no such path": (["--long", str(tmp / "nope")], "does not exist"),
        "no weights": (["--long", str(empty)], "has no weights"),
        "shape mismatch": (["--long", str(wide)], "hidden_size"),
        "vocab mismatch": (["--long", str(vocab)], "vocab_size"),
        "unknown family": (["--long", str(unknown)], "unknown model family 'lama'"),
        "truncated file": (["--long", str(trunc)], "truncated"),
        "missing shard": (["--long", str(sharded)], "missing shard"),
        "bad variant": (["--long", str(t["long"]), "--mha", "medium"], "medium"),
        "bad alpha": (["--long", str(t["long"]), "--alpha", "1.5"], "alpha"),
        "bad layers": (["--long", str(t["long"]), "--layers", "5:9"], "out of bounds"),
    }


def test_bad_input_gives_one_line_and_exit_1(triple_copy, tmp_path, capsys) -> None:
    t = triple_copy
    cases = _make_bad_inputs(t, tmp_path / "bad")
    before = _tree_hash(tmp_path)
    for what, (extra, phrase) in cases.items():
        out_dir = tmp_path / f"out-{what.replace(' ', '-')}"
        args = ["swap", "--short", str(t["short"]), "--mha", "long", "--ffn", "short", "--out", str(out_dir)]
        # later options win in typer, so the case's --long/--mha replace the defaults
        args = args[:1] + ["--long", str(t["long"])] + args[1:] + extra
        code, out, err = _run(args, capsys)
        assert code == 1, (what, code, err)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(" ".join(lines)) < 400 and "Traceback" not in err, (what, err)
        assert phrase in " ".join(err.split()), (what, err)
        assert not out_dir.exists(), what
        assert not list(tmp_path.glob(".out-*")), what  # no half-written temp dir left behind
    assert _tree_hash(tmp_path) == before  # inputs untouched


def test_existing_out_is_refused_and_untouched(triple_copy, tmp_path, capsys) -> None:
    t = triple_copy
    out_dir = tmp_path / "exists"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    code, _, err = _run(["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long",
                         "--ffn", "short", "--out", str(out_dir)], capsys)
    assert code == 1 and "already exists" in err
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]


def test_output_over_an_input_is_refused_even_with_force(triple_copy, capsys) -> None:
    t = triple_copy
    before = _tree_hash(t["short"])
    code, _, err = _run(["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long",
                         "--ffn", "short", "--out", str(t["short"]), "--force"], capsys)
    assert code == 1 and "overlaps" in err
    assert _tree_hash(t["short"]) == before


def test_console_script_runs(triple_copy, tmp_path) -> None:
    t = triple_copy
    exe = Path(sys.executable).parent / "lensft"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lensft.cli.app"]
    ok = subprocess.run(cmd + ["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long",
                               "--ffn", "short", "--out", str(tmp_path / "g")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(cmd + ["swap", "--short", str(tmp_path / "nope"), "--long", str(t["long"]), "--mha", "long",
                                "--ffn", "short", "--out", str(tmp_path / "g2")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr
    help_ = subprocess.run(cmd + ["swap", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--mha long --ffn short" in help_.stdout


def test_role_override_and_incompatible_inspect(triple_copy, tmp_path, capsys) -> None:
    t = triple_copy
    code, _, err = _run(["swap", "--base", str(t["base"]), "--short", str(t["short"]), "--long", str(t["long"]),
                         "--mha", "long", "--ffn", "short", "--role", "embed=base", "--out", str(tmp_path / "g")], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "g" / "lensft_manifest.json").read_text())
    assert m["tensors"]["model.embed_tokens.weight"]["source"] == "base"
    assert m["tensors"]["model.norm.weight"]["source"] == "short"
    code, _, err = _run(["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long",
                         "--ffn", "short", "--role", "embed=base", "--out", str(tmp_path / "g2")], capsys)
    assert code == 1 and "--base" in err and not (tmp_path / "g2").exists()
    code, _, err = _run(["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long",
                         "--ffn", "short", "--role", "eyes=base", "--out", str(tmp_path / "g3")], capsys)
    assert code == 1 and "unknown role 'eyes'" in err
    wide = build_pico(tmp_path / "wide", "llama", seed=9, hidden_size=64)
    code, out, err = _run(["inspect", str(t["short"]), str(wide)], capsys)
    assert code == 1 and "hidden_size" in err and "short=32, long=64" in err


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("no_hash", [False, True])
def test_swap_output_modes_paths_and_hashes(triple_copy, tmp_path, capsys, monkeypatch, no_hash) -> None:
    """Relative input paths end up resolved in the manifest, the sha256 of every source weight
    file it reads is recorded (independent oracle: hashlib over the file), the output has the
    usual permissions, and with or without hashing the tensors are the sources' bytes."""
    import os

    from safetensors import safe_open

    monkeypatch.chdir(tmp_path)
    args = ["swap", "--short", "short", "--long", "./long", "--mha", "long", "--ffn", "short", "--out", "g"]
    assert _run(args + (["--no-hash"] if no_hash else []), capsys)[0] == 0
    m = json.loads((tmp_path / "g" / "lensft_manifest.json").read_text())
    assert m["sources"] == {"short": str((tmp_path / "short").resolve()), "long": str((tmp_path / "long").resolve())}
    if no_hash:
        assert m["source_file_sha256"] == {}
    else:
        expected = {str((tmp_path / v / "model.safetensors").resolve()):
                    hashlib.sha256((tmp_path / v / "model.safetensors").read_bytes()).hexdigest() for v in ("short", "long")}
        assert m["source_file_sha256"] == expected
    mask = _umask()
    assert (os.stat(tmp_path / "g").st_mode & 0o777) == 0o777 & ~mask
    assert all((os.stat(p).st_mode & 0o777) == 0o666 & ~mask for p in (tmp_path / "g").iterdir())
    with safe_open(str(tmp_path / "g" / "model.safetensors"), "pt") as out, \
            safe_open(str(tmp_path / "long" / "model.safetensors"), "pt") as lng, \
            safe_open(str(tmp_path / "short" / "model.safetensors"), "pt") as sht:
        for name in out.keys():
            src = lng if ".self_attn." in name else sht  # the test's own oracle of the pico llama layout
            assert torch.equal(out.get_tensor(name), src.get_tensor(name)), name


def test_flags_take_no_value(triple_copy, tmp_path, capsys) -> None:
    """--force / --no-hash are flags: help shows no value for them, and a value is refused in one line."""
    import re

    code, out, _ = _run(["swap", "--help"], capsys)
    assert code == 0
    for f in ("--force", "--no-hash"):
        line = next(ln for ln in out.splitlines() if f in ln)
        assert "<bool>" not in line, line
    t = triple_copy
    code, out, err = _run(["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long", "--ffn",
                           "short", "--out", str(tmp_path / "g"), "--no-hash", "true"], capsys)
    assert code == 1 and "true" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()
    assert re.search(r"error", err)


def test_source_digests_are_computed_once_per_file_version(triple_copy, tmp_path, capsys, monkeypatch) -> None:
    """A second swap from the same files reuses their recorded sha256; a rewritten file is hashed again."""
    import lensft.checkpoints.writer as writer

    monkeypatch.setenv("LENSFT_CACHE", str(tmp_path / "cache"))
    hashed: list[str] = []
    real = writer.sha256_file
    monkeypatch.setattr(writer, "sha256_file", lambda p, **kw: hashed.append(Path(p).parent.name) or real(p, **kw))
    t = triple_copy

    def swap(out: str) -> dict:
        args = ["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long", "--ffn", "short",
                "--out", str(tmp_path / out)]
        assert _run(args, capsys)[0] == 0
        return json.loads((tmp_path / out / "lensft_manifest.json").read_text())["source_file_sha256"]

    oracle = {str((t[v] / "model.safetensors").resolve()): hashlib.sha256((t[v] / "model.safetensors").read_bytes()).hexdigest()
              for v in ("short", "long")}
    assert swap("g1") == oracle and sorted(hashed) == ["long", "short"]
    assert swap("g2") == oracle and len(hashed) == 2  # nothing hashed again
    f = t["long"] / "model.safetensors"
    f.write_bytes(f.read_bytes())  # same bytes, new version of the file
    assert swap("g3") == oracle and sorted(hashed) == ["long", "long", "short"]
    assert _tree_hash(tmp_path / "g1") == _tree_hash(tmp_path / "g2") | {
        "lensft_manifest.json": _tree_hash(tmp_path / "g1")["lensft_manifest.json"]}
