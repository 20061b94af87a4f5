"""Reliability of ``lensft organism build``: kills, concurrent builds, bad inputs, a full disk and
the resumable training state, on the ``tiny`` preset built from scratch.

The runs are forked from the warm server of ``fault_support`` (real command lines, real
``SIGKILL``s). Pretraining and every SFT arm save a resumable state every
``LENSFT_ORGANISM_RESUME_EVERY`` steps (4 here, so the tiny preset's 13-16-step stages save
several); the interval never changes what is built (the concurrent builds below run with the
default interval and must match the reference built with 4).

"Identical" means every file of the build directory has the same bytes, hidden files included
(so no temporary, lock or resume state may be left), except the wall-clock fields: in
``manifest.json`` and each checkpoint's ``organism.json`` the training records' ``seconds`` and
``tokens_per_s`` and the manifest's ``stage_seconds``; in ``training_log.jsonl`` each step's
``elapsed_s``. Those files are compared as JSON with these fields removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch

from lensft.locks import holder, lock_path

from fault_support import AUDIT_NETWORK, ForkServer, Run, forkserver, tree_hash  # noqa: F401 (fixture)

SEED = 1414
RESUME = {"LENSFT_ORGANISM_RESUME_EVERY": "4"}
WALL = {"seconds", "tokens_per_s", "elapsed_s", "stage_seconds"}
NOBODY = 65534


def _argv(out: Path, *extra: str, verbose: bool = False) -> list[str]:
    return [*(["-v"] if verbose else []), "organism", "build", "tiny", "--from-scratch", "--out", str(out), *extra]


def _strip(x):  # noqa: ANN001, ANN202
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in WALL}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _digest(path: Path) -> str:
    """sha256 of a file's bytes; of its JSON without the wall-clock fields for the files that hold them."""
    if path.name in ("manifest.json", "organism.json"):
        data = json.dumps(_strip(json.loads(path.read_text())), sort_keys=True)
    elif path.name == "training_log.jsonl":
        data = json.dumps([_strip(json.loads(ln)) for ln in path.read_text().splitlines()])
    else:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return "json:" + hashlib.sha256(data.encode()).hexdigest()


def build_tree(root: Path) -> dict[str, str]:
    """``{relative path: digest}`` of everything under ``root`` (hidden files included; see the module docstring)."""
    return {rel: (d if d == "<dir>" or d.startswith("-> ") else _digest(root / rel))
            for rel, d in tree_hash(root).items()}


def _one_line(r: Run, phrase: str, what: str) -> None:
    lines = r.error_lines()
    assert r.code == 1, f"{what}: exit {r.code}, signal {r.signal}; stderr {r.stderr[-2000:]!r}"
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr, (what, r.stderr)
    assert phrase.lower() in lines[0].lower(), f"{what}: {phrase!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def reference(forkserver: ForkServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """One uninterrupted build (resume interval 4) and how often it reached each fault-injection
    site; it runs without network: every socket connection or name lookup is refused and recorded."""
    root = tmp_path_factory.mktemp("organism-ref")
    out, audit = root / "ref", root / "network.txt"
    env = {**RESUME, AUDIT_NETWORK: str(audit), "HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None}
    r = forkserver.run(_argv(out), env=env, hits_file=root / "hits.json", timeout=300)
    assert r.code == 0, r.stderr[-3000:]
    assert not audit.exists(), audit.read_text()
    return out, json.loads((root / "hits.json").read_text())


def _hits(srv: ForkServer, argv: list[str], where: Path) -> int:
    """Run ``argv`` (resume interval 4) to completion; how many fault-injection points it reached."""
    r = srv.run(argv, env=RESUME, hits_file=where)
    assert r.code == 0, r.stderr[-3000:]
    return json.loads(where.read_text())["*"]


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# --- kills ------------------------------------------------------------------------------------

def _check_partial(out: Path, ref: Path, ref_tree: dict[str, str], when: str) -> None:
    """What a killed build left is complete where it exists: every file but the manifest, config,
    lensft's temporaries and the resume states equals the uninterrupted build's; the manifest
    parses and records only arms that are built, as the uninterrupted build records them; a
    resume state loads with ``weights_only=True`` and its step log is the uninterrupted one's prefix."""
    if not out.exists():
        return
    for rel, digest in build_tree(out).items():
        name = Path(rel).name
        if ".lensft-tmp-" in rel or rel in ("config.json", "manifest.json"):
            continue
        if name.endswith("-resume.pt"):
            state = torch.load(out / rel, weights_only=True)
            slug = name[1:-len("-resume.pt")]
            steps = [_strip(row) for row in state["history"]]
            full = [_strip(json.loads(ln)) for ln in (ref / "checkpoints" / slug / "training_log.jsonl").read_text().splitlines()]
            assert 0 < len(steps) < len(full) and steps == full[:len(steps)], f"{when}: {rel} is not a prefix"
            continue
        assert ref_tree.get(rel) == digest, f"{when}: {rel} is not the uninterrupted build's"
    if (out / "manifest.json").exists():
        m, full = json.loads((out / "manifest.json").read_text()), json.loads((ref / "manifest.json").read_text())
        for arm in m["arms"]:
            assert _strip(arm) in [_strip(a) for a in full["arms"]], when
            assert (out / arm["path"] / "model.safetensors").is_file(), when
        if m["base"] is not None:
            assert _strip(m["base"]) == _strip(full["base"]), when


def _units(out: Path) -> tuple[int, int]:
    """Progress of a build: (stages and checkpoints completed, training steps saved in resume states)."""
    if not out.exists():
        return 0, 0
    done = sum((out / p).exists() for p in ("world.json", "tokenizer", "data"))
    done += sum(1 for p in out.glob("checkpoints/*/model.safetensors") if not p.parent.name.startswith("."))
    steps = sum(len(torch.load(p, weights_only=True)["history"]) for p in out.glob("checkpoints/.*-resume.pt"))
    return done, steps


def test_killed_build_resumes_to_identical_build(forkserver: ForkServer, reference, tmp_path: Path) -> None:
    """A chain of 20+ injected kills (at the N-th fault point of the run: atomic writes, directory
    installs, training steps, resume-state saves; N seeded) and timed kills, each rerun resuming
    what the last one left, then one run to the end: the build is the uninterrupted one."""
    ref, hits = reference
    ref_tree = build_tree(ref)
    assert hits["train.step"] >= 40 and hits["install"] >= 6 and hits["atomic.staged"] >= 15, hits
    out = tmp_path / "b"
    rng = random.Random(SEED)
    cached = _hits(forkserver, _argv(ref), tmp_path / "cached.json")  # points of a run with nothing left to do
    span = max(8, (hits["*"] - cached) // 6)
    timed = set(rng.sample(range(2, 27), 5))
    injected, by_timer, resumed, lock_taken_over, progress, complete = 0, 0, 0, 0, [], False
    for i in range(27):  # 22 injected kills, 5 timed ones
        if i in timed:
            r = forkserver.run(_argv(out, verbose=True), env=RESUME, kill_after=rng.uniform(0.05, 1.0), timeout=120)
        else:  # mostly past what every run does first (lock, config.json), sometimes in it
            k = rng.randint(1, cached) if complete or rng.random() < 0.2 else cached + rng.randint(1, span)
            r = forkserver.run(_argv(out, verbose=True), env={**RESUME, "LENSFT_FAULT": f"kill@*#{k}"}, timeout=120)
        resumed += r.stderr.count(" resumed at step ")
        if r.killed:
            injected += i not in timed
            by_timer += i in timed
            _check_partial(out, ref, ref_tree, f"after kill {i}")
            info = holder(out)
            if info is not None and info["pid"] != os.getpid():  # the dead builder's lock: the next run takes it over
                lock_taken_over += 1
            progress.append(_units(out))
        else:  # the build was finished (or a timer fired after the end): later kills hit the reruns
            assert r.code == 0, r.stderr[-3000:]
            complete = True
    print(f"organism kill chain: {injected} injected + {by_timer} timed kills, {len(progress)} states, "
          f"{resumed} resumes; reference {hits}, cached run {cached} points; progress {progress}")
    assert injected >= 20 and by_timer >= 1, (injected, by_timer)
    assert resumed >= 3, "no killed run left a training state that the next one resumed"
    assert lock_taken_over >= 10
    units = [p[0] for p in progress]
    assert units == sorted(units), progress  # never a completed unit lost
    assert len(set(progress)) >= 8 and max(units) >= 5, progress  # kills all along the build, into the SFT arms
    final = forkserver.run(_argv(out), env=RESUME)
    assert final.code == 0, final.stderr[-3000:]
    again = forkserver.run(_argv(out), env=RESUME, hits_file=tmp_path / "hits.json")  # finished: reused
    assert again.code == 0 and json.loads((tmp_path / "hits.json").read_text()).get("train.step", 0) == 0
    assert build_tree(out) == ref_tree
    assert _leftovers(tmp_path, "b") == []


def test_malicious_resume_state_is_refused_not_run(forkserver: ForkServer, reference, tmp_path: Path) -> None:
    """The resume state is read with ``torch.load(weights_only=True)``: a pickle that would run
    code (here: write a marker file) is refused with one line, and the code never runs."""
    ref, _ = reference
    out, marker = tmp_path / "b", tmp_path / "EXECUTED"
    out.mkdir()
    for name in ("config.json", "world.json", "tokenizer", "data"):
        (shutil.copytree if (ref / name).is_dir() else shutil.copy)(ref / name, out / name)
    m = json.loads((ref / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "base": None, "arms": []}))
    (out / "checkpoints").mkdir()
    torch.save({"model": _WritesMarker(marker), "history": []}, out / "checkpoints" / ".base-resume.pt")
    torch.load(out / "checkpoints" / ".base-resume.pt", weights_only=False)  # the payload is real
    assert marker.read_text() == "executed"
    marker.unlink()
    r = forkserver.run(_argv(out), env=RESUME)
    _one_line(r, "is not a plain tensor file", "malicious resume state")
    assert "delete it" in r.stderr and not marker.exists()
    assert not (out / "checkpoints" / "base").exists()


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


# --- concurrency ------------------------------------------------------------------------------

def _wait_for_holder(d: Path, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (info := holder(d)) is None or info.get("pid") != pid:
        assert time.monotonic() < deadline, f"pid {pid} never took the lock of {d}"
        time.sleep(0.01)


def test_two_builds_wait_then_reuse_and_a_dead_builders_lock_is_taken_over(forkserver: ForkServer, reference,
                                                                           tmp_path: Path) -> None:
    """A builder killed mid-pretraining leaves its lock (its pid, dead); two builders started on
    the directory: the first takes the stale lock over and finishes the build, the second waits
    for it (naming its pid), then trains nothing and reuses it. The build equals the reference,
    although these runs save resume states at the default interval (none in the tiny preset)."""
    ref, _ = reference
    out = tmp_path / "b"
    dead = forkserver.run(_argv(out), env={"LENSFT_FAULT": "kill@train.step#5"})
    assert dead.killed
    assert holder(out)["pid"] != os.getpid() and lock_path(out).exists()
    stale_pid = holder(out)["pid"]
    first = forkserver.start(_argv(out), hits_file=tmp_path / "first.json")
    _wait_for_holder(out, first)
    second = forkserver.start(_argv(out), hits_file=tmp_path / "second.json")
    r1, r2 = forkserver.wait(first, timeout=120), forkserver.wait(second, timeout=120)
    assert r1.code == 0 and r2.code == 0, (r1.stderr[-2000:], r2.stderr[-2000:])
    assert f"pid {stale_pid}" not in r1.stderr + r2.stderr  # nobody waited for the dead builder
    waited = [ln for ln in r2.stderr.splitlines() if "waiting for it to finish" in ln]
    assert len(waited) == 1 and f"in use by lensft pid {first} " in waited[0], r2.stderr[-2000:]
    h1, h2 = (json.loads((tmp_path / f).read_text()) for f in ("first.json", "second.json"))
    assert h1["train.step"] > 40 and h2.get("train.step", 0) == 0 and h2.get("install", 0) == 0
    assert build_tree(out) == build_tree(ref)
    assert not lock_path(out).exists() and _leftovers(tmp_path, "b") == []


# --- a full disk ----------------------------------------------------------------------------------

def test_out_of_space_then_rerun(forkserver: ForkServer, reference, tmp_path: Path) -> None:
    """A full disk (injected ``ENOSPC``) while installing the tokenizer, while writing a prompt set
    and while installing the pretrained base: each run gives one line and exit 1 and leaves no
    temporary; each rerun goes on from what is complete, and the last one ends with the identical build."""
    ref, _ = reference
    out = tmp_path / "b"
    for fault in ("enospc@install#1", "enospc@atomic.staged#6", "enospc@install#2"):
        r = forkserver.run(_argv(out), env={**RESUME, "LENSFT_FAULT": fault})
        _one_line(r, "no space left on device", fault)
        assert "free some space" in r.stderr
        assert [p for p in build_tree(out) if ".lensft-tmp-" in p] == [] and _leftovers(tmp_path, "b") == [], fault
    assert not (out / "checkpoints" / "base").exists() and (out / "data").is_dir()
    assert forkserver.run(_argv(out), env=RESUME).code == 0
    assert build_tree(out) == build_tree(ref)


# --- bad inputs -------------------------------------------------------------------------------

def _bad_dirs(ref: Path, inputs: Path) -> dict[str, Path]:
    """Build directories (and other outputs) that must be refused, made from the reference's files."""
    d: dict[str, Path] = {}

    def build_like(name: str, manifest: str | None = None, config: str | None = None) -> Path:
        p = inputs / name
        p.mkdir()
        shutil.copy(ref / "world.json", p / "world.json")
        (p / "config.json").write_text(config if config is not None else (ref / "config.json").read_text())
        (p / "manifest.json").write_text(manifest if manifest is not None else (ref / "manifest.json").read_text())
        return p

    m = json.loads((ref / "manifest.json").read_text())
    d["old_version"] = build_like("old-version", manifest=json.dumps({**m, "lensft_version": "0.0.1"}))
    d["corrupt_manifest"] = build_like("corrupt-manifest", manifest='{"lensft_version": "0.1.0", "arms": [')
    d["manifest_wrong_schema"] = build_like("wrong-schema", manifest=json.dumps({**m, "arms": "all of them"}))
    d["corrupt_config"] = build_like("corrupt-config", config="{not json")
    d["file"] = inputs / "a-file"
    d["file"].write_text("not a directory\n")
    d["checkpoint"] = inputs / "ckpt"
    shutil.copytree(ref / "checkpoints" / "base", d["checkpoint"])
    d["other"] = inputs / "notes"
    d["other"].mkdir()
    (d["other"] / "todo.txt").write_text("mine\n")
    d["built"] = inputs / "built"
    shutil.copytree(ref, d["built"])
    return d


BAD = {  # what: (argv after "organism build", extra env, phrase of the one error line)
    "unknown preset": (lambda d, o: ["huge", "--out", str(o)], {}, "unknown organism preset 'huge'"),
    "--mix above 1": (lambda d, o: ["tiny", "--from-scratch", "--mix", "1.5", "--out", str(o)], {}, "--mix"),
    "--mix below 0": (lambda d, o: ["tiny", "--from-scratch", "--mix", "-0.25", "--out", str(o)], {}, "--mix"),
    "--out is a file": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["file"])], {}, "is a file"),
    "--out under a file": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["file"] / "b")], {},
                           "lies under the file"),
    "--out inside a model checkpoint": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["checkpoint"] / "org")],
                                        {}, "inside the model checkpoint"),
    "--out holds something else": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["other"])], {},
                                   "holds no organism"),
    "build of another configuration": (lambda d, o: ["tiny", "--from-scratch", "--seed", "7", "--out", str(d["built"])],
                                       {}, "another configuration"),
    "build of another from-scratch choice": (lambda d, o: ["tiny", "--out", str(d["built"])], {},
                                             "another configuration"),
    "build of another lensft version": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["old_version"])], {},
                                        "built by lensft 0.0.1"),
    "corrupt manifest.json": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["corrupt_manifest"])], {},
                              "manifest.json is not a readable organism build file"),
    "manifest.json of the wrong shape": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["manifest_wrong_schema"])],
                                         {}, "manifest.json is not a readable organism build file"),
    "corrupt config.json": (lambda d, o: ["tiny", "--from-scratch", "--out", str(d["corrupt_config"])], {},
                            "config.json is not a readable organism build file"),
    "resume interval not a number": (lambda d, o: ["tiny", "--from-scratch", "--out", str(o)],
                                     {"LENSFT_ORGANISM_RESUME_EVERY": "often"}, "not a positive number of steps"),
}


def test_bad_input_one_line_exit_1_nothing_changed(forkserver: ForkServer, reference, tmp_path: Path) -> None:
    """Each bad ``lensft organism build`` gives exit 1 and one line saying what to do; the input
    trees (build directories, a checkpoint, files) keep every byte, and no output appears."""
    ref, _ = reference
    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    inputs.mkdir()
    outputs.mkdir()
    dirs = _bad_dirs(ref, inputs)
    before = tree_hash(inputs)
    for what, (argv, env, phrase) in BAD.items():
        r = forkserver.run(["organism", "build", *argv(dirs, outputs / "o")], env=env)
        _one_line(r, phrase, what)
        assert tree_hash(inputs) == before, f"{what}: an input changed"
        assert list(outputs.iterdir()) == [], f"{what}: output left"


def test_read_only_out(forkserver: ForkServer) -> None:
    """A build into a directory the user may not write: one line naming the permission, nothing written."""
    root = Path(tempfile.mkdtemp(prefix="lensft-org-ro-"))
    try:
        os.chmod(root, 0o755)
        (root / "ro").mkdir(mode=0o555)
        os.chmod(root / "ro", 0o555)
        r = forkserver.run(["organism", "build", "tiny", "--from-scratch", "--out", str(root / "ro" / "b")],
                           as_user=NOBODY if os.geteuid() == 0 else None, env={"HF_HOME": str(root / "hf")})
        _one_line(r, "permission denied", "read-only --out")
        assert list((root / "ro").iterdir()) == []
    finally:
        os.chmod(root / "ro", 0o755)
        shutil.rmtree(root)


def test_build_uses_no_network(reference) -> None:
    """The reference build ran with every socket connection and name lookup refused and recorded
    (see the fixture); the audit itself works: a lookup in a forked run is recorded and refused."""
    ref, _ = reference
    assert (ref / "checkpoints" / "long" / "model.safetensors").is_file()


def test_network_audit_records_a_lookup(tmp_path: Path) -> None:
    """The audit hook the reference build runs under catches a name lookup (it can fail)."""
    import subprocess
    import sys

    record = tmp_path / "net.txt"
    code = ("import fault_support, socket; fault_support._audit_network(%r)\n"
            "try:\n    socket.getaddrinfo('example.org', 80)\nexcept RuntimeError:\n    pass\n") % str(record)
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert "socket.getaddrinfo" in record.read_text()


def test_kill_is_a_real_sigkill(forkserver: ForkServer, tmp_path: Path) -> None:
    """The training-step fault point is reached, and its kill is a SIGKILL (no cleanup runs)."""
    r = forkserver.run(_argv(tmp_path / "b"), env={"LENSFT_FAULT": "kill@train.step#1"})
    assert r.code is None and r.signal == signal.SIGKILL
    assert holder(tmp_path / "b") is not None  # the lock was never released: no finally block ran
