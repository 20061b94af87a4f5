"""Building the organism: a tiny build end to end, its cache, manifest, seeds, prompt sets and CLI."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from lensft import organism
from lensft.errors import LensftError, OutputExists
from lensft.organism.config import preset
from lensft.organism.manifest import BuildManifest
from lensft.organism.names import is_eval_name
from lensft.organism.tasks import MAX_OPERAND
from lensft.organism.world import make_world
from lensft.prompts.io import read_prompt_set
from lensft.variants import ArmRef

CFG = preset("tiny")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> organism.OrganismBuild:
    return organism.build("tiny", out=tmp_path_factory.mktemp("org") / "a")


@pytest.fixture(scope="module")
def world():
    return make_world(CFG.base.world, CFG.seed)


# -- the build ---------------------------------------------------------------------------------
def test_build_exposes_typed_checkpoints(built: organism.OrganismBuild) -> None:
    assert list(built.arms) == [ArmRef(long_fraction=f) for f in (0.0, 0.5, 1.0)]
    assert built.short == built.arm(0.0) == built.root / "checkpoints" / "short"
    assert built.arm(0.5) == built.root / "checkpoints" / "mix-0.50"
    assert list(built.checkpoints) == ["base", "short", "mix 0.50", "long"]
    with pytest.raises(LensftError, match="sft seed 3"):
        built.arm(1.0, sft_seed=3)
    for path in built.checkpoints.values():
        for f in ("model.safetensors", "config.json", "tokenizer.json", "training_log.jsonl", "organism.json"):
            assert (path / f).is_file(), (path, f)


def test_checkpoints_load_as_hf_llama_with_gqa(built: organism.OrganismBuild) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(built.long))
    tok = AutoTokenizer.from_pretrained(str(built.long))
    assert model.config.model_type == "llama"
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    enc = tok.apply_chat_template([{"role": "user", "content": "Where?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_manifest_records_every_stage(built: organism.OrganismBuild) -> None:
    m = BuildManifest.read(built.root)
    assert m == built.manifest
    assert m.base is not None and m.base.origin == "trained" and m.base.base_key == CFG.base.key()
    log = [json.loads(x) for x in (built.base / "training_log.jsonl").read_text().splitlines()]
    assert m.base.training.steps == len(log) and m.base.training.tokens == log[-1]["tokens"]
    assert [a.arm for a in m.arms] == list(built.arms)
    for a in m.arms:
        arm_log = [json.loads(x) for x in (built.root / a.path / "training_log.jsonl").read_text().splitlines()]
        assert a.training.tokens == arm_log[-1]["tokens"] and a.training.answer_tokens == arm_log[-1]["answer_tokens"]
        assert a.examples == a.short_examples + a.long_examples and a.questions >= a.examples
        assert a.training.tokens_per_s > 0 and a.data_seeds["order"][0] == CFG.seed
    short, long = m.arm(ArmRef(long_fraction=0.0)), m.arm(ArmRef(long_fraction=1.0))
    assert short.long_examples == 0 and long.short_examples == 0 and long.questions > 2 * long.examples


def test_arms_see_the_same_tokens_and_answer_tokens(built: organism.OrganismBuild) -> None:
    m = built.manifest
    budget = CFG.sft.train.tokens
    for a in m.arms:
        assert abs(a.training.tokens - budget) <= 0.05 * budget, a.arm
    assert m.spread("tokens") <= 0.05
    assert m.spread("answer_tokens") <= 0.10, [a.training.answer_tokens for a in m.arms]


def test_second_build_is_cached_and_new_sft_seeds_train_only_new_arms(built: organism.OrganismBuild) -> None:
    stamps = {p: (p / "model.safetensors").stat().st_mtime_ns for p in built.checkpoints.values()}
    again = organism.build("tiny", out=built.root)
    assert again.arms == built.arms and again.manifest == built.manifest
    assert all((p / "model.safetensors").stat().st_mtime_ns == t for p, t in stamps.items())
    seeds = organism.build("tiny", out=built.root, sft_seeds=2)
    assert all((p / "model.safetensors").stat().st_mtime_ns == t for p, t in stamps.items())
    new = [r for r in seeds.arms if r.sft_seed == 1]
    assert [r.long_fraction for r in new] == [0.0, 0.5, 1.0]
    assert seeds.arms[ArmRef(long_fraction=0.0, sft_seed=1)].name == "short-sft1"
    a = (built.short / "model.safetensors").read_bytes()
    b = (seeds.arms[ArmRef(long_fraction=0.0, sft_seed=1)] / "model.safetensors").read_bytes()
    assert a != b  # another data draw and order
    rec0 = seeds.manifest.arm(ArmRef(long_fraction=0.0))
    rec1 = seeds.manifest.arm(ArmRef(long_fraction=0.0, sft_seed=1))
    assert rec0.data_seeds != rec1.data_seeds
    assert organism.load(built.root).arms == seeds.arms


def test_same_seed_gives_bit_identical_data_and_checkpoints(built: organism.OrganismBuild, tmp_path: Path) -> None:
    twin = organism.build("tiny", out=tmp_path / "b")
    files = ["world.json", "tokenizer/tokenizer.json", *[f"data/{p.name}" for p in built.prompt_sets.values()],
             *[f"checkpoints/{r.slug}/model.safetensors" for r in twin.arms], "checkpoints/base/model.safetensors"]
    for f in files:
        assert (built.root / f).read_bytes() == (twin.root / f).read_bytes(), f


def test_build_refuses_a_directory_of_another_configuration(built: organism.OrganismBuild, tmp_path: Path) -> None:
    with pytest.raises(OutputExists):
        organism.build("tiny", seed=CFG.seed + 1, out=built.root)
    with pytest.raises(OutputExists):
        organism.build("tiny", from_scratch=True, out=built.root)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExists):
        organism.build("tiny", out=tmp_path / "x")
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"
    with pytest.raises(LensftError):
        organism.preset("huge")
    with pytest.raises(LensftError):
        organism.load(tmp_path / "x")


def test_default_cache_dir_follows_lensft_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LENSFT_CACHE", str(tmp_path))
    assert organism.default_cache_dir() == tmp_path / "organism"
    assert organism.build_dir(CFG) == tmp_path / "organism" / CFG.cache_key()
    assert organism.build_dir(CFG, from_scratch=True).name == CFG.cache_key() + "-scratch"
    assert CFG.cache_key() == CFG.with_overrides(mixes=[0.1, 0.9], sft_seeds=3).cache_key()  # arms are cached one by one
    assert CFG.cache_key() != CFG.with_overrides(seed=CFG.seed + 1).cache_key()
    assert CFG.with_overrides(mixes=[0.0, 0.5, 1.0]).mixes == (0.5,)


def test_progress_events_reach_the_callback(tmp_path: Path) -> None:
    events: list[organism.ProgressEvent] = []
    organism.build("tiny", out=tmp_path / "p", mixes=[], progress=events.append)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["base", "short", "long"]
    for stage in stages:
        ev = [e for e in events if e.stage == stage]
        assert [e.step for e in ev] == list(range(1, len(ev) + 1)) and ev[-1].done
        assert all(e.total_steps == len(ev) and e.tokens > 0 and e.tokens_per_s > 0 for e in ev)
        assert ev[-1].seconds_left == 0.0 and ev[0].seconds_left > 0


# -- prompt sets -------------------------------------------------------------------------------
def test_prompt_sets_are_valid_and_held_out(built: organism.OrganismBuild, world) -> None:
    names = {f"{t}{s}" for t in ("fact_recall", "reading", "cloze", "arithmetic") for s in ("", "_long")}
    assert names | {"fact_recall_seen", "needle", "conflict"} == set(built.prompt_sets)
    for it in read_prompt_set(built.prompt_sets["fact_recall"]).items:
        assert it.meta["subject"] in world.heldout and it.meta["heldout"]
    for it in read_prompt_set(built.prompt_sets["fact_recall_seen"]).items:
        assert it.meta["subject"] not in world.heldout
    for name in ("arithmetic", "arithmetic_long"):
        for it in read_prompt_set(built.prompt_sets[name]).items:
            if it.meta["op"] == "-":
                assert it.meta["b"] < it.meta["a"]
            assert max(it.meta["a"], it.meta["b"]) <= (9 if it.meta["op"] == "x" else MAX_OPERAND)
    for name in ("reading", "reading_long", "cloze"):
        for it in read_prompt_set(built.prompt_sets[name]).items:
            people = re.findall(r"\b(?:[A-Z][a-z])+ (?:[A-Z][a-z])+\b", it.prompt)
            novel = [p for p in people if not set(p.split()) & world.words()]  # filler names world people
            assert novel and all(is_eval_name(p) for p in novel)
    lo, hi = CFG.eval.long_context_tokens
    for it in read_prompt_set(built.prompt_sets["reading_long"]).items:
        assert lo <= it.meta["context_tokens"] <= hi and 0.0 <= it.meta["key_depth"] <= 1.0
        assert len(it.prompt) > 2 * lo


def test_needles_sit_at_their_depths(built: organism.OrganismBuild) -> None:
    items = read_prompt_set(built.prompt_sets["needle"]).items
    assert {it.context_tokens for it in items} == set(CFG.eval.needle_context_tokens)
    for it in items:
        assert it.prompt[it.needle.start: it.needle.end] == it.answer and it.answer.isdigit()
        assert it.prompt.rstrip().endswith("?") and it.meta["person"] in it.prompt.split("\n")[-1]
        rel = it.needle.start / len(it.prompt.split("\n")[0])
        assert abs(rel - it.depth) < 0.25


def test_conflict_context_answer_differs_from_memory(built: organism.OrganismBuild, world) -> None:
    truth = {(f.subject, f.relation): f.obj for f in world.facts()}
    items = read_prompt_set(built.prompt_sets["conflict"]).items
    assert items
    for it in items:
        assert it.context_answer != it.memory_answer
        assert truth[(it.meta["subject"], it.meta["relation"])] == it.memory_answer
        assert it.context_answer in it.context and it.prompt.startswith(it.context)
        assert (it.memory_answer if it.yn_label else it.context_answer) in it.yn_prompt.split("\n")[1]


# -- evaluation --------------------------------------------------------------------------------
def test_evaluation_runs_lensft_probes(built: organism.OrganismBuild) -> None:
    from lensft.organism.evaluate import evaluate_checkpoint

    s = evaluate_checkpoint(built.short, built.prompt_sets, label="short", max_items=3)
    assert set(s.accuracy) == {n for n in built.prompt_sets if n not in ("needle", "conflict")}
    assert all(0.0 <= v <= 1.0 for v in s.accuracy.values()) and s.n_items["reading"] == 3
    assert s.needle_copy_accuracy is not None and s.conflict["yn_accuracy"] is not None


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_build_and_info(built: organism.OrganismBuild, capsys: pytest.CaptureFixture[str]) -> None:
    from lensft.cli.app import main

    assert main(["organism", "build", "tiny", "--out", str(built.root), "--mix", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "mix 0.50" in out and "answer tokens" in out
    assert main(["organism", "info", "tiny", "--out", str(built.root)]) == 0
    assert "prompt sets" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["organism", "build", "tiny", "--mix", "1.5"], ["organism", "build", "tiny", "--mix", "half"],
                                  ["organism", "build", "nope"], ["organism", "build", "tiny", "--sft-seeds", "0"],
                                  ["organism", "build", "--preset", "tiny"]])
def test_cli_rejects_bad_input(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lensft.cli.app import main

    assert main([*argv, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_mix_option_validates_fractions() -> None:
    import typer

    from lensft.cli.options import check_mixes

    assert check_mixes([0.0, 0.5, 1.0]) == [0.0, 0.5, 1.0] and check_mixes(None) is None and check_mixes([]) is None
    for bad in ([1.5], [-0.1]):
        with pytest.raises(typer.BadParameter):
            check_mixes(bad)


def test_progress_renderer_draws_every_stage() -> None:
    from lensft.cli.progress import TrainingProgress, format_seconds

    assert [format_seconds(s) for s in (0, 75, 3725, -3)] == ["0:00", "1:15", "1:02:05", "0:00"]
    buf = io.StringIO()
    with TrainingProgress(Console(file=buf, width=140, force_terminal=False)) as progress:
        for stage in ("base", "short"):
            for step in (1, 2):
                progress(organism.ProgressEvent(stage, step, 2, 4096 * step, 12345.0, 30.0 * (2 - step), 2.5))
    text = buf.getvalue()
    assert "base" in text and "short" in text and "12,345 tokens/s" in text and "2/2" in text
