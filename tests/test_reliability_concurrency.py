"""Reliability, concurrency: two lensft processes never write the same directory at once.

A study directory (and a report) is guarded by :mod:`lensft.locks`: a second ``lensft study`` into
it refuses with one line naming the holder's pid; a lock left by a killed process is taken over.
(Organism builds wait for each other instead: test_reliability_organism.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from lensft.locks import DirectoryBusy, holder, lock_path, locked
from lensft.study import STEP_NAMES

from fault_support import ForkServer, forkserver, tree_hash  # noqa: F401 (fixture)


# --- the lock itself --------------------------------------------------------------------------

def test_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    d = tmp_path / "work"
    with locked(d, "lensft test"):
        info = holder(d)
        assert info is not None and info["pid"] == os.getpid() and info["command"] == "lensft test"
        with locked(d, "again"):  # the same thread may take it again
            pass
        assert lock_path(d).exists()
    assert not lock_path(d).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no lock file, no temporary, and d was never created


def test_another_thread_is_refused_or_waits(tmp_path: Path) -> None:
    d = tmp_path / "work"
    order: list[str] = []
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locked(d, "first holder"):
            order.append("first in")
            taken.set()
            release.wait(30)
            order.append("first out")

    t = threading.Thread(target=hold)
    t.start()
    taken.wait(30)
    with pytest.raises(DirectoryBusy, match=rf"in use by lensft pid {os.getpid()} .*first holder"):
        with locked(d, "second"):
            pass
    threading.Timer(0.3, release.set).start()
    with locked(d, "second", wait=True, poll_s=0.05):
        order.append("second in")
    t.join()
    assert order == ["first in", "first out", "second in"]


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    d = tmp_path / "work"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(d).write_text(json.dumps({"pid": dead.pid, "host": "here", "command": "lensft study"}))
    with locked(d, "lensft study"):
        assert holder(d)["pid"] == os.getpid()
    assert not lock_path(d).exists()


# --- studies ----------------------------------------------------------------------------------

def _config(tmp: Path, triple) -> Path:  # noqa: ANN001
    t = {v.value: p for v, p in triple.items()}
    steps = {n: {"enabled": n in ("short_tasks", "ffn_activations"), "max_items": 2} for n in STEP_NAMES}
    cfg = tmp / "study.yaml"
    cfg.write_text(yaml.safe_dump({"short": str(t["short"]), "long": str(t["long"]), "png": False, "steps": steps}))
    return cfg


def test_study_refuses_a_directory_in_use(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    cfg = _config(tmp_path, llama_triple)
    out = tmp_path / "s"
    for argv in (["study", "--config", str(cfg), "--out", str(out), "--quiet"], ["report", str(out)]):
        with locked(out, "lensft study"):  # this process is busy with it
            r = forkserver.run(argv)
        assert r.code == 1
        lines = r.error_lines()
        assert len(lines) == 1 and f"in use by lensft pid {os.getpid()}" in lines[0], r.stderr
        assert "wait for it to finish or use another directory" in lines[0]
        assert not out.exists() or not any(out.iterdir())


def test_two_studies_at_once_never_interleave(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    """Two studies started together into one directory: one runs, the other refuses naming it (or,
    if it starts after the first finished, finds every unit cached); the directory ends as one
    uninterrupted run leaves it."""
    cfg = _config(tmp_path, llama_triple)
    ref = tmp_path / "ref"
    assert forkserver.run(["study", "--config", str(cfg), "--out", str(ref), "--quiet"]).code == 0
    ref_files = {k: v for k, v in tree_hash(ref).items() if k != "manifest.json"}
    outcomes = set()
    for i in range(3):
        out = tmp_path / f"s{i}"
        argv = ["study", "--config", str(cfg), "--out", str(out), "--quiet"]
        a, b = forkserver.start(argv), forkserver.start(argv)
        ra, rb = forkserver.wait(a), forkserver.wait(b)
        for me, other, r in ((a, b, ra), (b, a, rb)):
            if r.code == 1:
                assert f"in use by lensft pid {other}" in r.stderr and len(r.error_lines()) == 1, r.stderr
                outcomes.add("refused")
            else:
                assert r.code == 0, r.stderr
        assert 0 in (ra.code, rb.code)
        assert {k: v for k, v in tree_hash(out).items() if k != "manifest.json"} == ref_files
        assert not lock_path(out).exists()
    assert outcomes  # at least one of the three races overlapped
