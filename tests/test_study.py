"""The study runner: config round trip, a user (pico) triple end to end, resume, reruns, CLI, organism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lensft.cli.app import main
from lensft.study import STEP_NAMES, StepConfig, StudyConfig, StudyConfigError, run
from lensft.study.plan import bands
from lensft.study.record import ModelRef, StudyRecord, StudyRecordError
from lensft.variants import Variant

from study_support import tiny_study


def _small_steps(**over: StepConfig) -> dict[str, StepConfig]:
    """Every step on at most 4 items per task (keeps the pico study to a few seconds)."""
    return {n: over.get(n, StepConfig(max_items=4)) for n in STEP_NAMES}


def _cfg(triple: dict[Variant, Path], **kw) -> StudyConfig:
    kw.setdefault("steps", _small_steps())
    return StudyConfig(base=str(triple[Variant.BASE]), short=str(triple[Variant.SHORT]), long=str(triple[Variant.LONG]),
                       report=False, **kw)


@pytest.fixture(scope="module")
def pico_study(llama_triple: dict[Variant, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pico-study")
    return out, run(_cfg(llama_triple), out)


def test_config_yaml_round_trip(llama_triple: dict[Variant, Path]) -> None:
    cfg = _cfg(llama_triple, band=2, steps=_small_steps(knowledge=StepConfig(settings={"generate": False}, max_items=3)))
    again = StudyConfig.from_yaml(cfg.to_yaml())
    assert again == cfg
    assert set(again.steps) == set(STEP_NAMES)


@pytest.mark.parametrize("data, msg", [
    ({}, "organism"),
    ({"organism": "quick", "short": "a", "long": "b"}, "not both"),
    ({"organism": "quick", "steps": {"nope": {}}}, "unknown step"),
    ({"organism": "quick", "mixes": [1.5]}, "strictly between"),
    ({"organism": "quick", "colour": 1}, "colour"),
    ({"short": "a", "long": "b", "seeds": [0, 1]}, "organism options"),
    ({"organism": "quick", "prompts": {"needles": "x"}}, "unknown prompt role"),
])
def test_config_errors_are_one_line(data: dict, msg: str) -> None:
    with pytest.raises(StudyConfigError, match=msg) as e:
        StudyConfig.validate_dict(data)
    assert "\n" not in str(e.value)


def test_bad_yaml() -> None:
    with pytest.raises(StudyConfigError, match="not valid YAML"):
        StudyConfig.from_yaml("a: [1,")


def test_bands() -> None:
    assert bands(4, 1) == ["0:1", "1:2", "2:3", "3:4"]
    assert bands(5, 2) == ["0:2", "2:4", "4:5"]


def test_user_triple_runs_every_step_but_mixes(pico_study) -> None:
    out, outcome = pico_study
    assert not outcome.failures
    record = StudyRecord.load(out)  # the typed record round-trips through manifest.json
    assert record == outcome.record
    steps = {s.name: s for s in record.steps}
    assert list(steps) == list(STEP_NAMES)
    assert not steps["benchmarks"].units and "no benchmarks configured" in steps["benchmarks"].skipped[0]  # off by default
    for name, s in steps.items():
        assert s.units or name == "benchmarks", f"step {name} ran nothing: {s.skipped}"
        for u in s.units:
            assert (out / u.file).is_file()
            assert not u.model.is_mix
    assert any("organism-only" in r for r in record.skipped)
    grid = {u.model.label for u in steps["module_grid"].units}
    assert grid == {"short", "long", "short + long.mha", "short + long.ffn", "long + short.mha", "long + short.ffn"}
    hosts = {u.model.label: u.model.graft.host.value for u in steps["module_grid"].units if u.model.kind == "graft"}
    assert hosts == {"short + long.mha": "short", "short + long.ffn": "short", "long + short.mha": "long",
                     "long + short.ffn": "long"}  # the paper's swaps keep everything else from the host
    sweep = steps["layer_sweep"].units
    assert len(sweep) == 2 * 2 * 2  # hosts x blocks x layer bands of the 2-layer pico model
    assert {str(u.model.graft.layers) for u in sweep} == {"0:1", "1:2"}
    patch = steps["patching"].units
    assert {(u.model.label, u.donor.label) for u in patch} == {("short", "long"), ("long", "short")}
    assert StudyConfig.load(out / "study.yaml").short == record.config.short
    assert {c.model.label for c in record.checkpoints} == {"base", "short", "long"}
    assert all(len(h) == 64 for c in record.checkpoints for h in c.sha256.values())


def test_results_are_deterministic_bytes(pico_study, llama_triple: dict[Variant, Path], tmp_path: Path) -> None:
    """The same study into a new directory writes byte-identical result files (no timestamps)."""
    out, outcome = pico_study
    cfg = _cfg(llama_triple, steps={n: StepConfig(enabled=n == "ffn_activations", max_items=4) for n in STEP_NAMES})
    again = run(cfg, tmp_path)
    for u in again.record.units("ffn_activations"):
        assert (tmp_path / u.file).read_bytes() == (out / u.file).read_bytes()


def test_resume_and_changed_step_reruns_alone(pico_study, llama_triple: dict[Variant, Path]) -> None:
    out, _ = pico_study
    again = run(_cfg(llama_triple), out)
    assert all(s.n_run == 0 for s in again.record.steps), "a finished study reran units"
    steps = _small_steps(ffn_activations=StepConfig(max_items=4, settings={"thresholds": [0.05]}))
    changed = run(_cfg(llama_triple, steps=steps), out)
    ran = {s.name: s.n_run for s in changed.record.steps}
    assert ran["ffn_activations"] == len(changed.record.step("ffn_activations").units) > 0
    assert all(n == 0 for k, n in ran.items() if k != "ffn_activations")


def test_interrupted_study_resumes(llama_triple: dict[Variant, Path], tmp_path: Path, monkeypatch) -> None:
    from lensft.study import execute

    calls = {"n": 0}
    real = execute.ModelCache.get

    def flaky(self, model):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, model)

    monkeypatch.setattr(execute.ModelCache, "get", flaky)
    cfg = _cfg(llama_triple, steps={n: StepConfig(enabled=n in ("short_tasks", "module_grid"), max_items=2) for n in STEP_NAMES})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path)
    done = len(list((tmp_path / "results").glob("*.json")))
    assert done >= 2
    monkeypatch.setattr(execute.ModelCache, "get", real)
    outcome = run(cfg, tmp_path)
    assert sum(s.n_cached for s in outcome.record.steps) >= done


def test_a_study_of_another_lensft_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1, "lensft_version": "0.0.9"}))
    with pytest.raises(StudyRecordError, match="written by lensft 0.0.9") as e:
        StudyRecord.load(tmp_path)
    assert "\n" not in str(e.value) and "new directory" in str(e.value)


def test_model_refs_compare_by_value() -> None:
    from lensft.graft import GraftSpec

    a = ModelRef.grafted(GraftSpec.build(mha="long", ffn="short", host="short"))
    b = ModelRef.grafted(GraftSpec.build(host="short", ffn="short", mha="long"))
    assert a.key == b.key and a.label == "short + long.mha"
    assert ModelRef.grafted(GraftSpec.build(mha="short", ffn="short")) == ModelRef.arm(0.0)  # a no-op graft is the arm
    assert ModelRef.arm(0.5).is_mix and ModelRef.arm(0.5).label == "mix 0.50" and ModelRef.arm(0.5).variant is None
    with pytest.raises(ValueError):
        ModelRef(kind="arm")


def test_missing_probe_is_skipped_with_reason(llama_triple: dict[Variant, Path], tmp_path: Path, monkeypatch) -> None:
    from lensft.errors import LensftError
    from lensft.probes import registry

    real = registry.get_probe

    def fake(name: str):
        if name == "retrieval_heads":
            raise LensftError("unknown probe 'retrieval_heads'")
        return real(name)

    monkeypatch.setattr(registry, "get_probe", fake)
    only = {"retrieval", "short_tasks"}
    cfg = _cfg(llama_triple, steps={n: StepConfig(max_items=3) for n in only})
    outcome = run(cfg, tmp_path, only=only)
    steps = {s.name: s for s in outcome.record.steps}
    assert steps["retrieval"].status == "skipped"
    assert any("retrieval_heads" in r for r in steps["retrieval"].skipped)
    assert steps["short_tasks"].units


def test_cli_study_on_user_triple(llama_triple: dict[Variant, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("steps:\n" + "".join(f"  {n}:\n    max_items: 3\n" for n in STEP_NAMES), encoding="utf-8")
    argv = ["study", "--base", str(llama_triple[Variant.BASE]), "--short", str(llama_triple[Variant.SHORT]),
            "--long", str(llama_triple[Variant.LONG]), "--out", str(out), "--config", str(cfg), "--no-png", "-q"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "organism-only" in text and "skipped" in text
    assert (out / "report.html").is_file()
    assert all(s.status in ("done", "partial") or s.name == "benchmarks" for s in StudyRecord.load(out).steps)
    assert "no benchmarks configured" in text  # the benchmarks step is off until configured, and says so
    assert main(["study", "--organism", "quick", "--short", "x", "--out", str(tmp_path / "bad")]) == 1
    assert main(["study", "--short", str(llama_triple[Variant.SHORT]), "--long", str(llama_triple[Variant.LONG]),
                 "--steps", "nope", "--out", str(tmp_path / "bad2")]) == 1


def test_console_script_report(pico_study) -> None:
    out, _ = pico_study
    r = subprocess.run([sys.executable, "-m", "lensft.cli.app", "report", str(out), "--no-png"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").is_file()
    r = subprocess.run([sys.executable, "-m", "lensft.cli.app", "report", str(out / "nope")], capture_output=True, text=True)
    assert r.returncode == 1 and "manifest.json" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_tiny_organism_study(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tiny_study(tmp_path_factory)
    m = StudyRecord.load(out)
    steps = {s.name: s for s in m.steps}
    assert all(s.status == "done" for s in steps.values()), {k: s.skipped for k, s in steps.items()}
    labels = {u.model.label for u in steps["short_tasks"].units}
    assert labels == {"base", "short", "mix 0.50", "long"}
    assert {u.model.label for u in steps["knowledge"].units} >= {"mix 0.50", "short + long.mha", "long + short.ffn"}
    assert m.source == "organism" and m.organism_dirs


def test_study_dtype_and_batch_size_reach_every_unit(llama_triple: dict[Variant, Path], tmp_path: Path) -> None:
    only = {"ffn_activations", "module_grid"}
    cfg = _cfg(llama_triple, dtype="bfloat16", batch_size=3,
               steps={n: StepConfig(max_items=3, enabled=n in only) for n in STEP_NAMES})
    outcome = run(cfg, tmp_path)
    assert not outcome.failures
    from lensft.results import load_result

    for u in outcome.record.units():
        r = load_result(tmp_path / u.file)
        assert r.model.dtype == "bfloat16", (u.step, u.model.label)
        assert r.settings["batch_size"] == 3
    # a different dtype is a different unit: nothing is taken from the bfloat16 cache
    again = run(_cfg(llama_triple, dtype="float32", steps=cfg.steps), tmp_path)
    assert all(u.status == "run" for u in again.record.units())
