"""Reliability, disk faults: a full disk during ``lensft swap`` or ``lensft study`` gives one clear
line and exit code 1, removes the partial output, leaves the inputs untouched, and (for a study)
a rerun once there is space again finishes as an uninterrupted run would.

The full disk is simulated by ``LENSFT_FAULT=enospc@SITE#N`` (the N-th visit of a fault point raises
``OSError(ENOSPC)`` exactly where a real write would), and, where this machine lets the test mount
one, by a real size-limited tmpfs.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lensft.study import STEP_NAMES

from fault_support import ForkServer, forkserver, tree_hash  # noqa: F401 (fixture)

SEED = 1415


def _enospc(site: str, n: int) -> dict[str, str]:
    return {"LENSFT_FAULT": f"enospc@{site}#{n}"}


def _one_clear_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: No space left on device") and "free some space" in lines[0], lines[0]
    return lines[0]


def _swap_argv(triple, out: Path) -> list[str]:  # noqa: ANN001
    t = {v.value: p for v, p in triple.items()}
    return ["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long", "--ffn", "short",
            "--alpha", "0.5", "--out", str(out)]


@pytest.mark.parametrize("site", ["write", "atomic.staged", "install"])
def test_swap_out_of_space(site: str, forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    """A full disk while writing a shard, the manifest or installing the directory."""
    inputs = tree_hash(next(iter(llama_triple.values())).parent)
    for n in (1, 2, 7) if site == "write" else (1,):  # the manifest is the swap's one atomic write
        out = tmp_path / f"g-{n}"
        r = forkserver.run(_swap_argv(llama_triple, out), env=_enospc(site, n))
        assert r.code == 1, (site, n, r.stderr)
        _one_clear_line(r.stderr)
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir()] == [], f"partial output left: {list(tmp_path.iterdir())}"
    assert tree_hash(next(iter(llama_triple.values())).parent) == inputs


def test_study_out_of_space_then_resumes(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    t = {v.value: p for v, p in llama_triple.items()}
    inputs = tree_hash(t["short"].parent)
    steps = {n: {"enabled": n in ("short_tasks", "module_grid", "ffn_activations"), "max_items": 2} for n in STEP_NAMES}
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"short": str(t["short"]), "long": str(t["long"]), "png": False, "steps": steps}))
    argv = lambda out: ["study", "--config", str(cfg), "--out", str(out), "--quiet"]  # noqa: E731
    ref = tmp_path / "ref"
    assert forkserver.run(argv(ref)).code == 0
    ref_tree = tree_hash(ref)
    out = tmp_path / "s"
    # every run writes at least 9 files atomically (lock record, study.yaml, hashes.json, results or
    # the record, the report's files), so each of these faults happens; the first ones hit results
    for n in random.Random(SEED).sample(range(1, 10), 5):
        r = forkserver.run(argv(out), env=_enospc("atomic.staged", n))
        assert r.code == 1, (n, r.stderr)
        _one_clear_line(r.stderr)
        for name, digest in tree_hash(out).items():  # what is there is complete; no temporary is left
            assert not Path(name).name.startswith("."), f"temporary {name} left"
            if name != "manifest.json":
                assert ref_tree.get(name) == digest, f"after ENOSPC at write {n}: {name} is not complete"
    assert forkserver.run(argv(out)).code == 0
    got = tree_hash(out)
    assert {k: v for k, v in got.items() if k != "manifest.json"} == {k: v for k, v in ref_tree.items()
                                                                       if k != "manifest.json"}
    assert tree_hash(t["short"].parent) == inputs


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_swap_onto_a_really_full_file_system(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    """A real ENOSPC: a tmpfs smaller than the graft (skipped where mounting is not allowed)."""
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); the injected ENOSPC tests cover it")
    try:
        r = forkserver.run(_swap_argv(llama_triple, small / "g"))
        assert r.code == 1, r.stderr
        _one_clear_line(r.stderr)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
