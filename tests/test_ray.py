"""Study units as Ray tasks (lensft.study.ray_executor) on a local Ray instance: the same bytes as a
local run, retries, failures reported by name while the other units finish, progress, resume after
the driver is killed, and the CLI's executor options.

One Ray instance (2 CPUs, no dashboard, a small object store) serves the module. Its workers run
``ray_faults.install`` at start-up, which fails the units a test plants faults in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import torch

ray = pytest.importorskip("ray", reason='the Ray tests need the ray extra: pip install -e ".[dev,ray]"')

import ray_faults  # noqa: E402
from lensft.cli.app import main  # noqa: E402
from lensft.report.pipeline import run_study  # noqa: E402
from lensft.study import STEP_NAMES, StepConfig, StudyConfig, run  # noqa: E402
from lensft.study.record import StudyRecord, UnitRecord  # noqa: E402
from lensft.study.execute import UnitOutcome, UnitTask  # noqa: E402
from lensft.study.ray_executor import RayExecutor  # noqa: E402
from lensft.variants import Variant  # noqa: E402

from study_support import TINY_STEPS, tiny_organism_dir, tiny_study  # noqa: E402

TESTS = Path(__file__).parent


@dataclass
class Cluster:
    address: str
    faults: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    faults = tmp_path_factory.mktemp("ray-faults")
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
                   log_to_driver=False, _system_config={"memory_monitor_refresh_ms": 0},
                   runtime_env={"worker_process_setup_hook": "ray_faults.install",
                                "env_vars": {"PYTHONPATH": str(TESTS), ray_faults.PLAN_ENV: str(faults)}})
    try:
        yield Cluster(ctx.address_info["address"], faults)
    finally:
        ray.shutdown()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` threads (a local run that matches Ray units of ``n`` CPUs)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def same_files(a: Path, b: Path, pattern: str) -> list[str]:
    """Names matching ``pattern`` under ``a``, after checking ``b`` holds the same names with the same bytes."""
    names = sorted(str(p.relative_to(a)) for p in a.glob(pattern))
    assert names == sorted(str(p.relative_to(b)) for p in b.glob(pattern))
    differ = [n for n in names if (a / n).read_bytes() != (b / n).read_bytes()]
    assert not differ, f"differ between the local and the Ray run: {differ}"
    return names


def pico_config(triple: dict[Variant, Path], steps: tuple[str, ...], max_items: int = 2) -> StudyConfig:
    return StudyConfig(base=str(triple[Variant.BASE]), short=str(triple[Variant.SHORT]), long=str(triple[Variant.LONG]),
                       report=False, steps={n: StepConfig(enabled=n in steps, max_items=max_items) for n in STEP_NAMES})


def _runs_on_ray(u: UnitRecord) -> bool:
    """The units the tiny-study test runs on Ray: every probe's units with the long arm as host (the
    quick ones: the long arm stops generating early) and the patching pairs."""
    m = u.model
    return (m.kind == "arm" and m.long_fraction == 1.0) or (m.graft is not None and m.graft.host is Variant.LONG) \
        or u.step == "patching"


@pytest.mark.slow
def test_study_on_ray_is_byte_identical_to_local(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tiny-organism study on Ray writes the local run's bytes: results, claims, captions, report.

    Ray runs one to four units of every step (every probe, the pair probe too); the others are
    taken from the local run's results, as a resumed study takes them, which keeps the test short.
    """
    local = tiny_study(tmp_path_factory)  # local executor, torch on this process's threads
    out = tmp_path_factory.mktemp("tiny-study-ray")
    units = list(StudyRecord.load(local).units())
    on_ray = {u.key for u in units if _runs_on_ray(u)}
    (out / "results").mkdir()
    for u in units:
        if u.key not in on_ray:
            shutil.copy(local / u.file, out / u.file)
    cfg = StudyConfig(organism="tiny", organism_dir=str(tiny_organism_dir(tmp_path_factory)), mixes=[0.5], png=False,
                      steps=TINY_STEPS)
    outcome = run_study(cfg, out, executor=RayExecutor(cpus_per_unit=torch.get_num_threads(), poll_seconds=0.1))
    assert not outcome.failures, outcome.failures
    ran = {u.key for u in outcome.record.units() if u.status == "run"}
    assert ran == on_ray and {u.step for u in outcome.record.units() if u.key in ran} == set(STEP_NAMES)
    assert len(same_files(local, out, "results/*.json")) == len({u.key for u in units})
    for name in ("claims.json", "captions.json", "report.html"):
        same_files(local, out, name)


class Watched:
    """An executor that runs another and records its progress reports (each unit starts once,
    before it finishes), counting the units running at once."""

    def __init__(self, inner: RayExecutor) -> None:
        self.inner = inner
        self.started_keys: list[str] = []
        self.outcomes: list[UnitOutcome] = []
        self.max_running = 0

    def run(self, tasks, sources, done, progress=None) -> None:  # noqa: ANN001
        self.inner.run(tasks, sources, done, self)

    def started(self, task: UnitTask) -> None:
        assert task.key not in self.started_keys, f"{task.where} started twice"
        self.started_keys.append(task.key)
        self.max_running = max(self.max_running, len(self.started_keys) - len(self.outcomes))

    def finished(self, outcome: UnitOutcome) -> None:
        assert outcome.task.key in self.started_keys, f"{outcome.task.where} finished before it started"
        self.outcomes.append(outcome)


def test_retries_and_failures(cluster: Cluster, llama_triple: dict[Variant, Path], tmp_path: Path) -> None:
    """A unit that fails once or whose worker dies is retried; one that always fails, or raises a
    LensftError (not retried), is reported by name while the others finish; a rerun runs only those."""
    cfg = pico_config(llama_triple, ("short_tasks", "module_grid"))
    ray_faults.plant(cluster.faults, {"short_tasks/short": "once", "short_tasks/base": "crash",
                                      "module_grid/short + long.mha": "always",
                                      "module_grid/long + short.ffn": "input"})
    watched = Watched(RayExecutor(max_retries=2, poll_seconds=0.1))
    try:
        outcome = run(cfg, tmp_path / "ray", executor=watched)
    finally:
        ray_faults.clear(cluster.faults)
    attempts = [ray_faults.attempts(cluster.faults, u) for u in ("short_tasks/short", "short_tasks/base",
                                                                  "module_grid/short + long.mha",
                                                                  "module_grid/long + short.ffn")]
    assert attempts == [2, 2, 3, 1]
    assert outcome.failures == [
        "module_grid/short + long.mha (seed 0): RuntimeError: planted fault in module_grid/short + long.mha",
        "module_grid/long + short.ffn (seed 0): LensftError: planted bad input in module_grid/long + short.ffn"]
    failed = [(u.step, u.model.label) for u in outcome.record.units() if u.status == "failed"]
    assert failed == [("module_grid", "short + long.mha"), ("module_grid", "long + short.ffn")]
    keys = {u.key for u in outcome.record.units()}
    assert sorted(watched.started_keys) == sorted(keys) and len(watched.outcomes) == len(keys) == 7
    assert sum(o.error is not None for o in watched.outcomes) == 2 and 1 <= watched.max_running <= 7

    again = run(cfg, tmp_path / "ray", executor=RayExecutor())  # no faults now: the two failed units run
    assert not again.failures
    assert sorted(u.model.label for u in again.record.units() if u.status == "run") == ["long + short.ffn",
                                                                                      "short + long.mha"]
    with torch_threads(1):  # each Ray unit ran torch on its 1 CPU
        run(cfg, tmp_path / "local")
    same_files(tmp_path / "local", tmp_path / "ray", "results/*.json")


def _study_argv(triple: dict[Variant, Path], out: Path, config: Path, report: bool = False) -> list[str]:
    return ["study", "--base", str(triple[Variant.BASE]), "--short", str(triple[Variant.SHORT]),
            "--long", str(triple[Variant.LONG]), "--out", str(out), "--config", str(config), "-q",
            "--no-png" if report else "--no-report"]


def test_killed_driver_resumes_from_cached_units(cluster: Cluster, llama_triple: dict[Variant, Path],
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``kill -9`` of a driver mid-study leaves whole result files only; the rerun (through the
    CLI) takes them from the cache, runs the rest and writes the local run's bytes (every unit of
    every step of a pico-triple study: results, claims, captions, report)."""
    config = tmp_path / "study.yaml"
    config.write_text("steps:\n" + "".join(f"  {n}:\n    max_items: 2\n" for n in STEP_NAMES), encoding="utf-8")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "lensft.cli.app", *_study_argv(llama_triple, out, config),
            "--executor", "ray", "--address", cluster.address]
    log = tmp_path / "driver.log"
    with open(log, "w") as f:  # a file, not a pipe: a full pipe would stall the driver
        driver = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while len(list((out / "results").glob("*.json"))) < 3 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert driver.poll() is None, f"the driver ended before it was killed: {log.read_text()[-2000:]}"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert not (out / "manifest.json").exists()
    kept = {p.stem for p in (out / "results").glob("*.json")}
    assert len(kept) >= 3

    assert main([*_study_argv(llama_triple, out, config, report=True), "--executor", "ray"]) == 0, capsys.readouterr().err
    units = list(StudyRecord.load(out).units())
    keys = {u.key for u in units}
    assert len(kept) < len(keys) == 33, "the killed driver had finished the study"
    assert {u.key for u in units if u.status == "run"} == keys - kept  # kept units are not rerun
    assert all(u.status == "cached" for u in units if u.key in kept)

    with torch_threads(1):  # each Ray unit ran torch on its 1 CPU
        assert main(_study_argv(llama_triple, tmp_path / "local", config, report=True)) == 0
    assert len(same_files(tmp_path / "local", out, "results/*.json")) == 33
    for name in ("claims.json", "captions.json", "report.html"):
        same_files(tmp_path / "local", out, name)


def test_cli_executor_options_are_checked_before_anything_runs(cluster: Cluster, llama_triple: dict[Variant, Path],
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("steps:\n  short_tasks:\n    max_items: 2\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = _study_argv(llama_triple, out, config)
    cases = [(["--address", "auto"], "--address apply to Ray: add --executor ray"),
             (["--executor", "ray", "--gpus-per-unit", "1"], "no node of the Ray cluster offers 1.0 CPUs and 1.0 GPUs"),
             (["--executor", "ray", "--gpus-per-unit", "-1"], "a unit needs a positive number of CPUs or GPUs"),
             (["--executor", "ray", "--device", "cuda"], "Ray shows a unit only the GPUs it reserves"),
             (["--executor", "ray", "--max-retries", "-1"], "max_retries must be 0 or more"),
             (["--executor", "dask"], "'dask' is not one of 'local', 'ray'")]
    for extra, message in cases:
        assert main([*argv, *extra]) == 1, extra
        err = capsys.readouterr().err
        assert message in " ".join(err.split()) and "Traceback" not in err, (extra, err)
        assert not out.exists(), f"{extra} wrote {out}"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    assert main([*argv, "--executor", "ray"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert 'pip install "lensft[ray]"' in err and "--executor" in err and not out.exists()
