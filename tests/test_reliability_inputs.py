"""Reliability, bad inputs: every command refuses a broken or wrong input with exit code 1 and ONE
line on stderr that says what is wrong and what to do -- never a traceback, never a changed input
file (the input trees are hashed before and after), never a partial output.

The broken inputs are made by corrupting copies of the session's pico checkpoints (truncated
files, forged safetensors headers, a pickle that would write a marker file if it were ever
executed, a checkpoint asking for its own code ...), and the command lines are the real ones
(``lensft.cli.app.main``). Cases that need file permissions to bite run in a child process
without root's privileges (root reads and writes everything).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from safetensors.torch import load_file, save_file

from lensft.cli.app import main
from lensft.pico import build_pico, build_tokenizer

from fault_support import forkserver, tree_hash  # noqa: F401 (fixture)

NOBODY = 65534


# --- broken inputs ----------------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _header(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    """Forge a safetensors header: the tensor bytes stay, the header says something else."""
    header, body = _header(path)
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + body)


def _tensor_names(header: dict) -> list[str]:
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _overlap(h: dict) -> None:
    a, b = _tensor_names(h)[:2]
    h[b]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + (h[b]["data_offsets"][1] - h[b]["data_offsets"][0])]


def _out_of_range(h: dict) -> None:
    last = _tensor_names(h)[-1]
    s, e = h[last]["data_offsets"]
    h[last]["data_offsets"] = [s + 1 << 20, e + 1 << 20]


def _wrong_dtype(h: dict) -> None:
    h[_tensor_names(h)[0]]["dtype"] = "F16"  # half the bytes the span holds


def _wrong_shape(h: dict) -> None:
    t = h[_tensor_names(h)[0]]
    t["shape"] = [t["shape"][0] * 2] + t["shape"][1:]


class _WritesMarker:
    """Unpickling this object runs ``open(marker, 'w')``: the payload of a malicious .bin file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


def _pickle_checkpoint(src: Path, dst: Path, marker: Path) -> Path:
    """A checkpoint whose weights are a pytorch_model.bin that writes ``marker`` when unpickled."""
    _copy(src, dst)
    state = load_file(dst / "model.safetensors")
    (dst / "model.safetensors").unlink()
    state["model.embed_tokens.weight"] = _WritesMarker(marker)  # type: ignore[assignment]
    torch.save(state, dst / "pytorch_model.bin")
    return dst


_CODE = "open({marker!r}, 'w').write('executed')\n"


def _remote_code_checkpoint(src: Path, dst: Path, marker: Path, model_type: str) -> Path:
    """A checkpoint asking for its own Python code (``auto_map``); importing that code writes ``marker``."""
    _copy(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(model_type=model_type, architectures=["EvilForCausalLM"],
               auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                         "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    (dst / "config.json").write_text(json.dumps(cfg))
    for f in ("configuration_evil.py", "modeling_evil.py"):
        (dst / f).write_text(_CODE.format(marker=str(marker)))
    return dst


def _nonfinite_checkpoint(src: Path, dst: Path) -> Path:
    _copy(src, dst)
    state = load_file(dst / "model.safetensors")
    w = state["model.layers.1.mlp.down_proj.weight"].clone()
    w[0, 0], w[1, 1] = float("nan"), float("inf")
    state["model.layers.1.mlp.down_proj.weight"] = w
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _prompt_file(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(ln + "\n" for ln in lines))
    return path


TEXT_HEADER = json.dumps({"lensft_prompt_set": 1, "name": "t", "version": "1", "kind": "text"})
TASK_HEADER = json.dumps({"lensft_prompt_set": 1, "name": "q", "version": "1", "kind": "task"})
ITEM = {"id": "a", "text": "The capital of France is Paris.", "spans": [{"name": "answer", "start": 25, "end": 30}]}


@dataclass
class World:
    """Every input of the bad-input cases, under ``inputs/`` (hashed before and after each case)."""

    root: Path
    inputs: Path
    t: dict[str, Path]
    bad: dict[str, Path] = field(default_factory=dict)
    marker: Path = Path()

    def out(self, name: str) -> Path:
        return self.root / "outputs" / name


@pytest.fixture(scope="module")
def world(llama_triple, pico_triples, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-inputs")
    inputs = root / "inputs"
    t = {v.value: _copy(p, inputs / v.value) for v, p in llama_triple.items()}
    w = World(root, inputs, t, marker=root / "EXECUTED")
    (root / "outputs").mkdir()
    b = w.bad
    for name, edit in (("overlap", _overlap), ("out_of_range", _out_of_range), ("dtype", _wrong_dtype),
                       ("shape", _wrong_shape)):
        b[name] = _copy(t["long"], inputs / name)
        _rewrite_header(b[name] / "model.safetensors", edit)
    b["truncated"] = _copy(t["long"], inputs / "truncated")
    data = (b["truncated"] / "model.safetensors").read_bytes()
    (b["truncated"] / "model.safetensors").write_bytes(data[: len(data) * 2 // 3])
    b["header_past_end"] = _copy(t["long"], inputs / "header_past_end")
    f = b["header_past_end"] / "model.safetensors"
    f.write_bytes((len(data) * 4).to_bytes(8, "little") + data[8:])
    b["header_not_json"] = _copy(t["long"], inputs / "header_not_json")
    f = b["header_not_json"] / "model.safetensors"
    n = int.from_bytes(data[:8], "little")
    f.write_bytes(data[:8] + b"\x00not json{" + b"#" * (n - 10) + data[8 + n:])
    b["config_not_json"] = _copy(t["long"], inputs / "config_not_json")
    (b["config_not_json"] / "config.json").write_text('{"model_type": "llama",')
    b["pickle"] = _pickle_checkpoint(t["long"], inputs / "pickle", w.marker)
    b["remote_code"] = _remote_code_checkpoint(t["long"], inputs / "remote_code", w.marker, "evilnet")
    b["nonfinite"] = _nonfinite_checkpoint(t["long"], inputs / "nonfinite")
    sharded = build_pico(inputs / "sharded", "llama", seed=5, max_shard_size="20KB")
    sorted(sharded.glob("model-*.safetensors"))[-1].unlink()
    b["missing_shard"] = sharded
    b["vocab"] = build_pico(inputs / "vocab", "llama", seed=9, tokenizer=build_tokenizer(300))
    b["tokenizer"] = _copy(t["long"], inputs / "tokenizer")  # same vocabulary size, other tokens
    tok = json.loads((b["tokenizer"] / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, c = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[c] = vocab[c], vocab[a]
    (b["tokenizer"] / "tokenizer.json").write_text(json.dumps(tok))
    b["loop"] = inputs / "loop"
    os.symlink("loop", b["loop"])
    b["weights_loop"] = _copy(t["long"], inputs / "weights_loop")
    (b["weights_loop"] / "model.safetensors").unlink()
    os.symlink("model.safetensors", b["weights_loop"] / "model.safetensors")
    b["gpt2"] = pico_triples["gpt2"][next(iter(pico_triples["gpt2"]))]
    # prompt files
    p = inputs / "prompts"
    p.mkdir()
    long_text = " ".join(["word"] * 700)  # more tokens than gpt2 pico's 512 positions
    b["empty_jsonl"] = _prompt_file(p / "empty.jsonl", [])
    b["bad_json_jsonl"] = _prompt_file(p / "bad_json.jsonl", [TEXT_HEADER, json.dumps(ITEM), '{"id": "b", "text": '])
    b["unknown_kind_jsonl"] = _prompt_file(p / "unknown_kind.jsonl", [TEXT_HEADER.replace('"text"', '"poem"'),
                                                                       json.dumps(ITEM)])
    b["missing_field_jsonl"] = _prompt_file(p / "missing_field.jsonl", [TEXT_HEADER, json.dumps(ITEM),
                                                                         json.dumps({"id": "b"})])
    b["span_outside_jsonl"] = _prompt_file(p / "span_outside.jsonl", [TEXT_HEADER, json.dumps(
        {**ITEM, "spans": [{"name": "answer", "start": 25, "end": 300}]})])
    b["too_long_jsonl"] = _prompt_file(p / "too_long.jsonl", [TASK_HEADER, json.dumps(
        {"id": "a", "task": "recall", "prompt": long_text, "answer": "word"})])
    b["study_yaml"] = p / "study.yaml"
    b["study_yaml"].write_text(f"short: {t['short']}\nlong: {t['long']}\nreprot: true\n")
    # a study directory written by another lensft
    old = inputs / "old-study"
    (old / "results").mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"schema_version": 1, "lensft_version": "0.0.1", "steps": []}))
    b["old_study"] = old
    b["not_a_study"] = _copy(t["short"], inputs / "not_a_study")
    return w


# --- the cases --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A command line (built from the world) and a phrase its one error line must contain."""

    argv: Callable[[World], list[str]]
    phrase: str
    outputs: tuple[str, ...] = ("o",)  # names under outputs/ that must not exist afterwards


def _swap(long: str, *extra: str) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        lp = str(w.bad.get(long, w.t.get(long, Path(long))))
        return ["swap", "--short", str(w.t["short"]), "--long", lp, "--mha", "long", "--ffn", "short",
                "--out", str(w.out("o")), *extra]
    return argv


def _inspect(third: str) -> Callable[[World], list[str]]:
    return lambda w: ["inspect", str(w.t["base"]), str(w.t["short"]), str(w.bad.get(third, w.t.get(third)))]


def _probe(model: str, *extra: str, name: str = "ffn_activations") -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        m = str(w.bad.get(model, w.t.get(model)))
        return ["probe", name, "--model", m, "--out", str(w.out("o") / "r.json"), *(_with(w, a) for a in extra)]
    return argv


def _with(w: World, text: str) -> str:
    return text.format(short=w.t["short"], long=w.t["long"], base=w.t["base"], out=w.out("o"),
                       **w.bad)


def _cmd(*parts: str) -> Callable[[World], list[str]]:
    return lambda w: [_with(w, p) for p in parts]


CASES: dict[str, Case] = {
    # checkpoints: corrupt files
    "swap: truncated safetensors": Case(_swap("truncated"), "truncated"),
    "inspect: header length past the end": Case(_inspect("header_past_end"), "truncated or not a safetensors"),
    "probe: header not JSON": Case(_probe("header_not_json"), "corrupt safetensors header"),
    "swap: overlapping offsets": Case(_swap("overlap"), "not a readable safetensors"),
    "inspect: offsets out of range": Case(_inspect("out_of_range"), "truncated"),
    "swap: dtype disagrees with its bytes": Case(_swap("dtype"), "not a readable safetensors"),
    "probe: shape disagrees with its bytes": Case(_probe("shape"), "not a readable safetensors"),
    "inspect: config.json not JSON": Case(_inspect("config_not_json"), "not valid JSON"),
    "swap: pickle .bin checkpoint": Case(_swap("pickle"), "weights_only"),
    "probe: pickle .bin checkpoint": Case(_probe("pickle"), "weights_only"),
    "probe: trust_remote_code architecture": Case(_probe("remote_code"), "its own code"),
    "swap: shard index names a missing shard": Case(_swap("missing_shard"), "missing shard"),
    "probe: shard index names a missing shard": Case(_probe("missing_shard"), "missing shard"),
    # the triple disagrees
    "swap: vocabulary size differs": Case(_swap("vocab"), "vocab_size"),
    "inspect: tokenizer differs": Case(_inspect("tokenizer"), "tokenizers differ"),
    "study: tokenizer differs": Case(_cmd("study", "--short", "{short}", "--long", "{tokenizer}", "--out", "{out}",
                                          "--quiet"), "tokenizers differ"),
    # the file system
    "swap: symlink loop as a checkpoint": Case(_swap("loop"), "symbolic link"),
    "probe: weights file is a symlink loop": Case(_probe("weights_loop"), "symbolic link"),
    "swap: output inside an input checkpoint": Case(lambda w: _swap("long")(w)[:-1] + [str(w.t["short"] / "graft")],
                                                    "overlaps"),
    "probe: output inside the checkpoint": Case(_cmd("probe", "ffn_activations", "--model", "{short}", "--out",
                                                     "{short}/ffn.json"), "inside the"),
    "inspect: --json inside an input": Case(_cmd("inspect", "{short}", "{long}", "--json", "{long}/r.json"),
                                            "inside the"),
    "study: output inside an input checkpoint": Case(_cmd("study", "--short", "{short}", "--long", "{long}", "--out",
                                                          "{long}/study", "--quiet"), "inside the"),
    # prompt files
    "probe: empty prompt file": Case(_probe("short", "--prompts", "{empty_jsonl}"), "is empty"),
    "probe: bad JSON on line 3": Case(_probe("short", "--prompts", "{bad_json_jsonl}"), "bad_json.jsonl:3"),
    "probe: unknown prompt kind": Case(_probe("short", "--prompts", "{unknown_kind_jsonl}"), "unknown_kind.jsonl:1"),
    "probe: item missing a field": Case(_probe("short", "--prompts", "{missing_field_jsonl}"), "missing_field.jsonl:3"),
    "probe: span outside its text": Case(_probe("short", "--prompts", "{span_outside_jsonl}"), "span_outside.jsonl:2"),
    "probe: prompt longer than the positions": Case(_probe("gpt2", "--prompts", "{too_long_jsonl}",
                                                                   name="short_tasks"), "positions"),
    "study: bad input, output in new folders": Case(_cmd("study", "--short", "{short}", "--long", "{vocab}",
                                                         "--out", "{out}/deeper/study", "--quiet"), "vocab_size"),
    "study: prompt file missing": Case(_cmd("study", "--short", "{short}", "--long", "{long}", "--prompts",
                                            "ffn={short}/nope.jsonl", "--out", "{out}", "--quiet"), "does not exist"),
    # settings and options
    "probe: unknown setting": Case(_probe("short", "--set", "colour=red"), "unknown setting"),
    "probe: setting of the wrong type": Case(_probe("short", "--set", "thresholds=abc"), "--set thresholds"),
    "probe: unknown probe": Case(_probe("short", name="attention_entropy"), "attention_entropy"),
    "study: YAML with an unknown key": Case(_cmd("study", "--config", "{study_yaml}", "--out", "{out}", "--quiet"),
                                            "reprot"),
    "swap: --layers out of range": Case(_swap("long", "--layers", "1:7"), "out of bounds"),
    "swap: --layers reversed": Case(_swap("long", "--layers", "2:1"), "--layers"),
    "patch: --layers out of range": Case(_cmd("patch", "--host", "{short}", "--donor", "{long}", "--layers", "0:9",
                                              "--out", "{out}"), "--layers"),
    "patch: --layers reversed": Case(_cmd("patch", "--host", "{short}", "--donor", "{long}", "--layers", "2:0",
                                          "--out", "{out}"), "--layers"),
    "patch: unknown component": Case(_cmd("patch", "--host", "{short}", "--donor", "{long}", "--component", "attn",
                                          "--out", "{out}"), "--component"),
    "swap: --alpha above 1": Case(_swap("long", "--alpha", "1.5"), "--alpha"),
    "swap: --alpha below 0": Case(_swap("long", "--alpha", "-0.25"), "--alpha"),
    "swap: --alpha nan": Case(_swap("long", "--alpha", "nan"), "--alpha"),
    "swap: --no-hash with a value": Case(_swap("long", "--no-hash", "true"), "true"),
    "study: unknown organism preset": Case(_cmd("study", "--organism", "huge", "--out", "{out}", "--quiet"),
                                           "unknown organism preset"),
    "study: unknown step": Case(_cmd("study", "--short", "{short}", "--long", "{long}", "--steps", "retrieval,fly",
                                     "--out", "{out}", "--quiet"), "fly"),
    # study directories
    "study: directory of another lensft": Case(_cmd("study", "--short", "{short}", "--long", "{long}", "--out",
                                                    "{old_study}", "--quiet"), "was written by lensft 0.0.1"),
    "report: directory of another lensft": Case(_cmd("report", "{old_study}"), "was written by lensft 0.0.1"),
    "report: not a study directory": Case(_cmd("report", "{not_a_study}"), "not a study results directory"),
    # organism builds: more cases (build directories of another configuration or version, corrupt
    # manifests, --out under a file or inside a checkpoint, read-only --out) in test_reliability_organism.py
    "organism: unknown preset": Case(_cmd("organism", "build", "huge", "--out", "{out}"), "unknown organism preset"),
    "organism: --mix outside [0, 1]": Case(_cmd("organism", "build", "tiny", "--mix", "1.5", "--out", "{out}"), "--mix"),
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_one_line(err: str, phrase: str, what: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{what}: expected one line on stderr, got {err!r}"
    line = lines[0]
    assert line.startswith("error:") and "Traceback" not in err, (what, err)
    assert phrase.lower() in line.lower(), f"{what}: {phrase!r} not in {line!r}"
    assert len(line) < 600, (what, line)


@pytest.mark.parametrize("what", list(CASES))
def test_bad_input_one_line_exit_1_nothing_changed(what: str, world: World, capsys) -> None:
    case = CASES[what]
    before = tree_hash(world.inputs)
    out_before = tree_hash(world.root / "outputs")
    try:
        code, err = _run(case.argv(world), capsys)
        assert code == 1, f"{what}: exit {code}; stderr {err!r}"
        _assert_one_line(err, case.phrase, what)
        assert tree_hash(world.inputs) == before, f"{what}: an input changed"
        assert tree_hash(world.root / "outputs") == out_before, f"{what}: partial output left"
        assert not world.marker.exists(), f"{what}: code from a checkpoint ran"
    finally:  # a failing case must not leave outputs that make the next ones fail
        for p in (world.root / "outputs").iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def test_there_are_at_least_30_kinds_over_the_commands() -> None:
    commands = {k.split(":")[0] for k in CASES}
    assert len(CASES) >= 30
    assert {"swap", "inspect", "probe", "patch", "study", "report", "organism"} <= commands


# --- what the one-line table cannot show ----------------------------------------------------------

def test_the_pickle_payload_is_real(llama_triple, tmp_path: Path) -> None:
    """The pickle checkpoint of the cases above does write its marker when unpickled without
    weights_only: the cases' 'marker absent' checks can fail."""
    marker = tmp_path / "RAN"
    ckpt = _pickle_checkpoint(next(iter(llama_triple.values())), tmp_path / "ckpt", marker)
    torch.load(ckpt / "pytorch_model.bin", weights_only=False)
    assert marker.read_text() == "executed"


def test_checkpoint_code_never_runs_even_for_a_known_model_type(world: World, capsys) -> None:
    """A llama checkpoint that also ships its own code (auto_map) is read with transformers'
    built-in llama: the probe runs and the checkpoint's modules are never imported."""
    ckpt = _remote_code_checkpoint(world.t["long"], world.root / "llama-with-code", world.marker, "llama")
    before = tree_hash(ckpt)
    code = main(["probe", "ffn_activations", "--model", str(ckpt), "--out", str(world.root / "code.json")])
    assert code == 0, capsys.readouterr().err
    assert not world.marker.exists()
    assert tree_hash(ckpt) == before


def _console(*args: str, **kw) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lensft"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lensft.cli.app"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=300, **kw)


def test_nonfinite_weights_are_warned_by_name(world: World, tmp_path: Path, forkserver) -> None:
    """NaN/Inf weights are not refused (they may be what is studied) but every command that reads
    them says which tensor holds them, on stderr: the console script's for ``probe``."""
    bad = world.bad["nonfinite"]
    before = tree_hash(bad)
    r = _console("probe", "ffn_activations", "--model", str(bad), "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if "model.layers.1.mlp.down_proj.weight" in ln]
    assert len(warn) == 1 and "1 NaN and 1 infinite" in warn[0], r.stderr
    r = forkserver.run(["inspect", str(world.t["short"]), str(bad)])
    warn = [ln for ln in r.stderr.splitlines() if "model.layers.1.mlp.down_proj.weight" in ln]
    assert len(warn) == 1 and "NaN" in warn[0], r.stderr
    assert tree_hash(bad) == before


def test_a_bad_input_through_the_console_script(world: World) -> None:
    """End to end through the installed ``lensft`` script: exit 1, one line, no traceback."""
    what = "probe: pickle .bin checkpoint"
    before = tree_hash(world.inputs)
    r = _console(*CASES[what].argv(world))
    assert r.returncode == 1, (what, r.stderr)
    _assert_one_line(r.stderr, CASES[what].phrase, what)
    assert tree_hash(world.inputs) == before and not world.marker.exists()
    assert not any((world.root / "outputs").iterdir())


# --- permissions (root reads and writes everything: those runs drop root's privileges) -----------

@pytest.fixture(scope="module")
def shared(llama_triple) -> Iterator[Path]:
    """A copy of the triple where an unprivileged user can read it (pytest's own tmp is root's only)."""
    root = Path(tempfile.mkdtemp(prefix="lensft-perm-"))
    for v, p in llama_triple.items():
        shutil.copytree(p, root / v.value)
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(Path(dirpath) / f, 0o644)
    yield root
    for dirpath, dirs, _ in os.walk(root):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(root)


PERMISSION_CASES = {
    "probe: checkpoint directory without read permission": (
        lambda r: ["probe", "ffn_activations", "--model", str(r / "locked"), "--out", str(r / "out" / "x.json")],
        "locked", 0o000, "readable"),
    "swap: config.json without read permission": (
        lambda r: ["swap", "--short", str(r / "short"), "--long", str(r / "cfg"), "--mha", "long", "--ffn",
                   "short", "--out", str(r / "out" / "g")], "cfg/config.json", 0o000, "permission denied"),
    "swap: read-only output directory": (
        lambda r: ["swap", "--short", str(r / "short"), "--long", str(r / "long"), "--mha", "long", "--ffn",
                   "short", "--out", str(r / "ro" / "g")], "ro", 0o555, "permission denied"),
    "probe: read-only output directory": (
        lambda r: ["probe", "ffn_activations", "--model", str(r / "short"), "--out", str(r / "ro" / "x.json")],
        "ro", 0o555, "permission denied"),
    "study: read-only output directory": (
        lambda r: ["study", "--short", str(r / "short"), "--long", str(r / "long"), "--out", str(r / "ro" / "s"),
                   "--quiet"], "ro", 0o555, "permission denied"),
}


@pytest.mark.parametrize("what", list(PERMISSION_CASES))
def test_permissions(what: str, shared: Path, forkserver) -> None:
    argv, target, mode, phrase = PERMISSION_CASES[what]
    root = Path(tempfile.mkdtemp(prefix="case-", dir=shared))
    for v in ("short", "long"):
        os.symlink(shared / v, root / v)
    (root / "out").mkdir()
    (root / "ro").mkdir()
    if target in ("locked", "cfg"):
        shutil.copytree(shared / "long", root / target)
    if target == "cfg/config.json":
        shutil.copytree(shared / "long", root / "cfg")
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(root / target, mode)
    before = tree_hash(shared)
    try:
        r = forkserver.run(argv(root), as_user=NOBODY if os.geteuid() == 0 else None,
                           env={"HF_HOME": str(root / "hf")})
    finally:
        os.chmod(root / target, 0o755)
    assert r.code == 1, (what, r.code, r.stderr)
    _assert_one_line(r.stderr, phrase, what)
    assert tree_hash(shared) == before
    assert not list((root / "ro").iterdir()) and not list((root / "out").iterdir()), what


# --- no network -------------------------------------------------------------------------------

_OFFLINE_DRIVER = r"""
import json, sys
attempts = []
def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        attempts.append(f"{event} {args!r}"[:200])
        raise RuntimeError("lensft tried to use the network")
sys.addaudithook(audit)
from lensft.cli.app import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "attempts": attempts}))
"""


def test_no_network(llama_triple, tmp_path: Path) -> None:
    """swap, probe, patch, study and report never open a connection or resolve a name, with the
    Hugging Face offline switches unset and an empty cache (a socket audit hook refuses and records)."""
    t = {v.value: str(p) for v, p in llama_triple.items()}
    steps = {n: {"enabled": n in ("short_tasks", "ffn_activations"), "max_items": 1}
             for n in ("short_tasks", "module_grid", "layer_sweep", "attention_spread", "retrieval",
                       "ffn_activations", "knowledge", "patching")}
    (tmp_path / "s.yaml").write_text(json.dumps({"short": t["short"], "long": t["long"], "png": False, "steps": steps}))
    runs = [["swap", "--short", t["short"], "--long", t["long"], "--mha", "long", "--ffn", "short",
             "--out", str(tmp_path / "g")],
            ["probe", "ffn_activations", "--model", str(tmp_path / "g"), "--out", str(tmp_path / "p.json")],
            ["patch", "--host", t["short"], "--donor", t["long"], "--component", "mha", "--out", str(tmp_path / "x.json")],
            ["study", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "s"), "--quiet"],
            ["report", str(tmp_path / "s"), "--no-png"]]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS="1")  # one thread: tiny models, busy cores
    r = subprocess.run([sys.executable, "-c", _OFFLINE_DRIVER, json.dumps(runs)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["attempts"] == [] and out["codes"] == [0] * len(runs), (out, r.stderr[-3000:])


def test_every_readme_promise_names_a_test_that_exists() -> None:
    """The README's Reliability table cites ``file.py::test_name`` (``::test_name`` = same file as
    the previous citation); each must be a test function in tests/."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) >= 5
    for row in rows:
        cited, current = 0, None
        for m in re.finditer(r"`(test_reliability_\w+\.py)?::(\w+)`", row.split(" | ")[-1]):
            current = m.group(1) or current
            assert current is not None, row
            source = (Path(__file__).parent / current).read_text(encoding="utf-8")
            assert re.search(rf"^def {m.group(2)}\(", source, re.M), f"{current}::{m.group(2)} does not exist"
            cited += 1
        assert cited, f"a promise without a test: {row[:80]}"


# --- defects found side by side with mergekit (same MHA graft, both bit-exact) -----------------

def test_swap_output_is_readable_by_others(llama_triple, tmp_path: Path, capsys) -> None:
    """mergekit and cp give 0755 / 0644 under umask 022; lensft once gave 0700 (mkdtemp's mode)."""
    t = {v.value: str(p) for v, p in llama_triple.items()}
    old = os.umask(0o022)
    try:
        assert main(["swap", "--short", t["short"], "--long", t["long"], "--mha", "long", "--ffn", "short",
                     "--out", str(tmp_path / "g")]) == 0, capsys.readouterr().err
    finally:
        os.umask(old)
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "g").iterdir()} == \
        {p.name: 0o644 for p in (tmp_path / "g").iterdir()}


def test_swap_flags_take_no_value(capsys) -> None:
    """--help showed ``--no-hash <bool>`` / ``--force <bool>``, yet ``--no-hash true`` was refused."""
    assert main(["swap", "--help"]) == 0
    help_lines = [ln for ln in capsys.readouterr().out.splitlines() if "--no-hash" in ln or "--force " in ln]
    assert len(help_lines) >= 2 and not any("<bool>" in ln or "BOOLEAN" in ln for ln in help_lines), help_lines


def test_swap_manifest_paths_are_absolute_whatever_was_typed(llama_triple, tmp_path: Path, monkeypatch, capsys) -> None:
    """``sources`` and the keys of ``source_file_sha256`` are resolved paths even when the
    checkpoints were given relative to the working directory."""
    for v, p in llama_triple.items():
        shutil.copytree(p, tmp_path / v.value)
    monkeypatch.chdir(tmp_path)
    assert main(["swap", "--short", "short", "--long", "./long", "--mha", "long", "--ffn", "short", "--out", "g"]) == 0, \
        capsys.readouterr().err
    m = json.loads((tmp_path / "g" / "lensft_manifest.json").read_text())
    assert m["sources"] == {"short": str((tmp_path / "short").resolve()), "long": str((tmp_path / "long").resolve())}
    assert set(m["source_file_sha256"]) == {str((tmp_path / v / "model.safetensors").resolve()) for v in ("short", "long")}
