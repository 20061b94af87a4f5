"""Reliability, kills: ``kill -9`` at many moments of ``lensft swap`` and ``lensft study`` (and of
``lensft organism build``, in test_reliability_organism.py).

Kill points are of two kinds: injected (``LENSFT_FAULT=kill@*#N``: the process SIGKILLs itself at
the N-th fault-injection point it reaches -- every atomic write, every tensor put in a shard, every
directory install) and timed (the process SIGKILLs itself after a seeded random delay). Both are
real SIGKILLs: no ``finally`` block, no cleanup runs. The runs are forked from a warm server
(``fault_support``), so each costs a fraction of a second.

Promises checked:

- a killed swap leaves nothing at ``--out`` (with ``--force``: the old output or the new one,
  complete), never touches its inputs, and the next swap succeeds and removes what was left;
- a killed study never leaves a half-written file, and rerunning it resumes from its last
  completed unit: after a chain of 20+ kills and one last run, every file of the results directory
  is byte-identical to an uninterrupted run (the study record's timings and run/cached statuses
  aside).
"""

from __future__ import annotations

import json
import random
import signal
import shutil
from pathlib import Path

import yaml

from lensft.study import STEP_NAMES

from fault_support import ForkServer, forkserver, tree_hash  # noqa: F401 (fixture)

SEED = 1414


def _kill_at(n: int) -> dict[str, str]:
    return {"LENSFT_FAULT": f"kill@*#{n}"}


def _hits(srv: ForkServer, argv: list[str], where: Path) -> int:
    """Run ``argv`` to completion and return how many fault-injection points it reached."""
    r = srv.run(argv, hits_file=where)
    assert r.code == 0, r.stderr
    return json.loads(where.read_text())["*"]


def _leftovers(parent: Path, name: str) -> list[str]:
    """lensft's hidden temporaries and lock files for ``name`` in ``parent``."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.") or p.name.startswith(f"..{name}."))


# --- swap -------------------------------------------------------------------------------------

def _manifest_without_time(out: Path) -> dict:
    m = json.loads((out / "lensft_manifest.json").read_text())
    m.pop("created")
    return m


def _same_graft(out: Path, ref: Path) -> None:
    got = {k: v for k, v in tree_hash(out).items() if k != "lensft_manifest.json"}
    assert got == {k: v for k, v in tree_hash(ref).items() if k != "lensft_manifest.json"}
    assert _manifest_without_time(out) == _manifest_without_time(ref)


def test_killed_swap_leaves_nothing_and_reruns_clean(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    t = {v.value: p for v, p in llama_triple.items()}
    inputs = tree_hash(t["short"].parent)

    def argv(out: Path, *extra: str) -> list[str]:
        return ["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long", "--ffn", "long",
                "--host", "short", "--alpha", "0.5", "--out", str(out), *extra]

    ref = tmp_path / "ref"
    n_points = _hits(forkserver, argv(ref), tmp_path / "hits.json")
    assert n_points >= 20  # every tensor written, the manifest, the install
    out = tmp_path / "g"
    rng = random.Random(SEED)
    timed = [rng.uniform(0.0, 0.08) for _ in range(5)]
    kills = 0
    for k in [*range(1, n_points + 1), *[None] * len(timed)]:
        delay = timed.pop() if k is None else None
        r = forkserver.run(argv(out), env=_kill_at(k) if k else None, kill_after=delay)
        if r.killed:
            kills += 1
            if out.exists():  # a timed kill can land after the install: then the graft is complete
                assert k is None, f"kill point {k}: something was left at --out"
                _same_graft(out, ref)
                shutil.rmtree(out)
        else:
            assert r.code == 0, r.stderr
            _same_graft(out, ref)
            shutil.rmtree(out)
        again = forkserver.run(argv(out))  # the next swap succeeds and clears what the killed one left
        assert again.code == 0, again.stderr
        _same_graft(out, ref)
        assert _leftovers(tmp_path, "g") == [], f"kill point {k or delay}"
        shutil.rmtree(out)
    assert kills >= 20  # issue 14: at least 20 kill points (a point past the last one a run reaches does not kill)
    assert tree_hash(t["short"].parent) == inputs


def test_killed_forced_swap_keeps_old_or_new_output(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    """With --force over an existing graft, a kill leaves the old graft, the new one or (between
    the two renames of the install) none -- never a mixture -- and the next run repairs it."""
    t = {v.value: p for v, p in llama_triple.items()}
    base = ["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--ffn", "short", "--out"]
    old_ref, new_ref, out = tmp_path / "old", tmp_path / "new", tmp_path / "g"
    assert forkserver.run(base + [str(old_ref), "--mha", "short"]).code == 0
    n_points = _hits(forkserver, base + [str(new_ref), "--mha", "long"], tmp_path / "hits.json")
    for k in random.Random(SEED).sample(range(1, n_points + 3), 8):
        shutil.copytree(old_ref, out)
        r = forkserver.run(base + [str(out), "--mha", "long", "--force"], env=_kill_at(k))
        if out.exists():
            tree = {n: h for n, h in tree_hash(out).items() if n != "lensft_manifest.json"}
            assert tree in ({n: h for n, h in tree_hash(ref).items() if n != "lensft_manifest.json"}
                            for ref in (old_ref, new_ref)), f"kill point {k}: a mixture at --out"
        else:
            assert r.killed
        assert forkserver.run(base + [str(out), "--mha", "long", "--force"]).code == 0
        _same_graft(out, new_ref)
        assert _leftovers(tmp_path, "g") == []
        shutil.rmtree(out)


# --- study ------------------------------------------------------------------------------------

TIMINGS = {"started", "prepare_seconds", "total_seconds", "seconds"}


def _normalised_record(path: Path) -> dict:
    """The study record without timings; ``cached`` and ``run`` both mean the result is there."""
    def norm(x):  # noqa: ANN001, ANN202
        if isinstance(x, dict):
            return {k: ("done" if k == "status" and v in ("run", "cached") else norm(v))
                    for k, v in x.items() if k not in TIMINGS}
        if isinstance(x, list):
            return [norm(v) for v in x]
        return x
    return norm(json.loads(path.read_text()))


def _study_config(tmp: Path, triple: dict[str, Path]) -> Path:
    steps = {n: {"enabled": n in ("short_tasks", "module_grid", "attention_spread", "ffn_activations", "knowledge"),
                 "max_items": 2} for n in STEP_NAMES}
    cfg = tmp / "study.yaml"
    cfg.write_text(yaml.safe_dump({"base": str(triple["base"]), "short": str(triple["short"]),
                                   "long": str(triple["long"]), "png": False, "steps": steps}))
    return cfg


def _check_partial(out: Path, ref: dict[str, str], ref_dir: Path, when: str) -> None:
    """Whatever a killed study left is either absent or complete: every file equals the uninterrupted run's."""
    for name, digest in tree_hash(out, skip_hidden=True).items():
        if name == "manifest.json":
            assert _normalised_record(out / name) == _normalised_record(ref_dir / name), when
        else:
            assert name in ref and digest == ref[name], f"{when}: {name} is not the uninterrupted run's"


def test_killed_study_resumes_to_identical_results(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    t = {v.value: p for v, p in llama_triple.items()}
    inputs = tree_hash(t["short"].parent)
    cfg = _study_config(tmp_path, t)
    argv = lambda out: ["study", "--config", str(cfg), "--out", str(out), "--quiet"]  # noqa: E731
    ref_dir = tmp_path / "ref"
    r = forkserver.run(argv(ref_dir))
    assert r.code == 0, r.stderr
    ref = tree_hash(ref_dir)
    n_units = len(list((ref_dir / "results").glob("*.json")))
    assert n_units >= 12 and (ref_dir / "report.html").is_file() and (ref_dir / "claims.json").is_file()
    cached_points = _hits(forkserver, argv(ref_dir), tmp_path / "hits.json")  # a run with nothing left to run

    out = tmp_path / "study"
    rng = random.Random(SEED)
    kills, resumed = 0, []
    for i in range(24):
        done = len(list((out / "results").glob("*.json"))) if (out / "results").exists() else 0
        if i < 20:  # injected: a point this run is sure to reach (each unit left to run adds two),
            # early in the run for the first 14 kills (so the chain resumes unit by unit), anywhere after
            reach = cached_points + 2 * (n_units - done)
            r = forkserver.run(argv(out), env=_kill_at(rng.randint(1, min(reach, 12) if i < 14 else reach)))
            assert r.killed, f"run {i} was not killed: {r.stderr[-500:]}"
        else:  # timed: anywhere, including in the imports of the report
            r = forkserver.run(argv(out), kill_after=rng.uniform(0.0, 1.5))
            assert r.killed or r.code == 0, r.stderr
        kills += r.killed
        now = len(list((out / "results").glob("*.json"))) if (out / "results").exists() else 0
        assert now >= done, f"run {i}: a completed unit was lost"
        resumed.append(now)
        _check_partial(out, ref, ref_dir, f"after kill {i}")
    assert kills >= 20
    assert resumed[-1] > 0 and len(set(resumed)) >= 5  # the chain made progress, unit by unit

    final = forkserver.run(argv(out))
    assert final.code == 0, final.stderr
    got = tree_hash(out)
    assert set(got) == set(ref), "the resumed study has other files than the uninterrupted one"
    for name in ref:
        if name != "manifest.json":
            assert got[name] == ref[name], f"{name} differs from the uninterrupted run's"
    assert _normalised_record(out / "manifest.json") == _normalised_record(ref_dir / "manifest.json")
    assert _leftovers(tmp_path, "study") == []
    assert tree_hash(t["short"].parent) == inputs


def test_kill_signal_is_sigkill(forkserver: ForkServer, llama_triple, tmp_path: Path) -> None:
    """The harness's kills are real SIGKILLs (exit by signal 9), not exceptions lensft could catch."""
    t = {v.value: p for v, p in llama_triple.items()}
    r = forkserver.run(["inspect", str(t["short"]), str(t["long"])], env=_kill_at(1) | {"LENSFT_FAULT": "kill@*#1"})
    # inspect writes nothing, so it reaches no fault point and finishes
    assert r.code == 0 and r.signal is None
    r = forkserver.run(["swap", "--short", str(t["short"]), "--long", str(t["long"]), "--mha", "long", "--ffn",
                        "short", "--out", str(tmp_path / "g")], env=_kill_at(1))
    assert r.code is None and r.signal == signal.SIGKILL
