"""The model organism: a miniature build (seconds) and the properties issue 3 asks for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lensft import organism
from lensft.errors import LensftError, OutputExists
from lensft.organism.config import preset
from lensft.organism.packing import pack
from lensft.organism.sft_data import arm_sequences, encode_chat, make_pool
from lensft.organism.tasks import TaskMaker, arithmetic_heldout
from lensft.organism.tokenizer import chat_text
from lensft.organism.training import forward_packed, make_model, train
from lensft.organism.world import make_world
from lensft.prompts.io import read_prompt_set

CFG = preset("test")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> organism.OrganismBuild:
    return organism.build("test", out=tmp_path_factory.mktemp("org") / "a")


@pytest.fixture(scope="module")
def world():
    return make_world(CFG.world, CFG.seed)


@pytest.fixture(scope="module")
def tokenizer(built: organism.OrganismBuild):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(built.tokenizer))


# -- world -------------------------------------------------------------------------------------
def test_world_is_consistent(world) -> None:
    assert world.check() == []
    for country, cap in world.capital.items():
        assert world.city_country[cap] == country
    assert set(world.birthplace.values()) <= set(world.cities)
    assert set(world.employer.values()) <= set(world.companies)
    assert set(world.headquarters.values()) <= set(world.cities)
    facts = world.facts()
    assert len({(f.subject, f.relation) for f in facts}) == len(facts)  # one object per subject and relation
    assert any(f.heldout for f in facts) and not all(f.heldout for f in facts)


def test_world_depends_only_on_seed() -> None:
    a, b, c = make_world(CFG.world, 1), make_world(CFG.world, 1), make_world(CFG.world, 2)
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()


# -- tokenizer ---------------------------------------------------------------------------------
def test_tokenizer_round_trips(tokenizer, world) -> None:
    rng = np.random.default_rng(0)
    maker = TaskMaker(world, rng, heldout=False)
    texts = [maker.make(t, 60).prompt for t in ("fact_recall", "arithmetic", "cloze", "reading")]
    texts += ["1234 + 5678 = 6912", "  two  spaces\nand a newline", "unseen wörds: Zyx ÆØ!"]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text
    assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id
    assert len(tokenizer("2026", add_special_tokens=False).input_ids) == 4  # one token per digit


def test_tokenizer_has_chat_template_and_turn_tokens(tokenizer) -> None:
    for tok in ("<|user|>", "<|assistant|>", "<|end|>"):
        assert len(tokenizer(tok, add_special_tokens=False).input_ids) == 1
    assert tokenizer.eos_token == "<|end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A"}],
                                         tokenize=False)
    assert text == "<|bos|>" + chat_text([("Q?", "A")])


# -- training ----------------------------------------------------------------------------------
def test_training_steps_lower_the_loss(tokenizer) -> None:
    model = make_model(CFG.model, tokenizer, seed=0)
    seqs = [np.asarray(tokenizer(f"The capital of Land{i} is City{i}.").input_ids) for i in range(16)]
    data = pack(seqs, [np.ones(len(s), dtype=bool) for s in seqs], (64,), 256, tokenizer.pad_token_id,
                np.random.default_rng(0))
    data.batches = data.batches[:1] * 12  # the same batch, so the loss must fall
    tc = CFG.pretrain.model_copy(update={"lr": 3e-3, "warmup_ratio": 0.0})
    history = train(model, data, tc, seed=0, num_threads=1)
    assert history[-1]["loss"] < history[0]["loss"] - 0.5


def test_packing_keeps_sequences_apart() -> None:
    seqs = [np.arange(1, n + 1) for n in (5, 9, 30, 3, 60)]
    masks = [np.arange(len(s)) % 2 == 0 for s in seqs]
    p = pack(seqs, masks, (16, 64), 64, pad_id=0, rng=np.random.default_rng(0))
    assert p.n_tokens == sum(len(s) for s in seqs)
    assert p.n_loss_tokens == sum(int(m.sum()) for m in masks)
    for b in p.batches:
        assert b.input_ids.shape == b.labels.shape == b.position_ids.shape
        real = b.input_ids != 0
        # every packed sequence starts at position 0 and tokens equal their position + 1 here
        np.testing.assert_array_equal(b.input_ids[real], b.position_ids[real] + 1)


def test_training_forward_never_attends_across_packed_sequences(tokenizer) -> None:
    """Each packed sequence's logits equal the logits of that sequence run alone.

    A regression test: with transformers' default cache the block-diagonal mask is skipped and
    packed documents attend to each other at scrambled relative positions.
    """
    import torch

    model = make_model(CFG.model, tokenizer, seed=0)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(5, 200, size=int(rng.integers(4, 40))) for _ in range(10)]
    data = pack(seqs, [np.ones(len(s), dtype=bool) for s in seqs], (64,), 128, tokenizer.pad_token_id, rng)
    checked = 0
    with torch.no_grad():
        for batch in data.batches:
            logits = forward_packed(model, batch).logits
            for r in range(batch.input_ids.shape[0]):
                starts = list(np.flatnonzero(batch.position_ids[r] == 0)) + [batch.input_ids.shape[1]]
                for s, e in zip(starts[:-1], starts[1:]):
                    if batch.input_ids[r, s] == tokenizer.pad_token_id:
                        continue  # the row's padding tail
                    alone = model(input_ids=torch.from_numpy(batch.input_ids[r, s:e])[None]).logits[0]
                    torch.testing.assert_close(logits[r, s:e], alone, rtol=1e-4, atol=1e-5)
                    checked += 1
    assert checked == len(seqs)


# -- SFT data ----------------------------------------------------------------------------------
def test_sft_mask_covers_exactly_the_assistant_tokens(tokenizer) -> None:
    prompts, answers = ["Where was Ana born?", "Complete the text with one word.\nIt was a"], ["Lyonburg", "lamp"]
    ids, masks = encode_chat(tokenizer, prompts, answers)
    for p, a, i, m in zip(prompts, answers, ids, masks):
        chat = [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
        full = tokenizer.apply_chat_template(chat, tokenize=False)
        assert i.tolist() == tokenizer(full, add_special_tokens=False).input_ids
        prefix = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
        n_prefix = len(tokenizer(prefix, add_special_tokens=False).input_ids)
        assert not m[:n_prefix].any() and m[n_prefix:].all()
        assert tokenizer.decode(i[m]) == a + "<|end|>"


def test_arms_share_the_token_budget(built: organism.OrganismBuild) -> None:
    metas = {n: json.loads((p / "organism.json").read_text()) for n, p in built.checkpoints.items() if n != "base"}
    budget = CFG.sft.train.tokens
    for name, meta in metas.items():
        assert abs(meta["tokens"] - budget) <= 0.01 * budget, (name, meta["tokens"])
    assert metas["short"]["long_tokens"] == 0 and metas["long"]["short_tokens"] == 0
    mix = metas["mix-0.50"]
    assert abs(mix["long_tokens"] - mix["short_tokens"]) <= 0.05 * budget


def test_sft_pools_draw_the_same_tasks_from_the_training_split(world, tokenizer) -> None:
    kw = {"tokenizer": tokenizer, "budget": 4000, "chars_per_token": 3.0, "max_len": 256}
    short = make_pool(world, CFG.sft, rng=np.random.default_rng(1), long=False, **kw)
    long = make_pool(world, CFG.sft, rng=np.random.default_rng(2), long=True, **kw)
    assert {e.task for e in short.examples} == {e.task for e in long.examples}
    assert np.mean(long.lengths) > 2 * np.mean(short.lengths)
    heldout = world.heldout
    for e in short.examples + long.examples:
        if e.task == "fact_recall":
            assert e.meta["subject"] not in heldout
        if e.task == "arithmetic":
            assert not arithmetic_heldout("+-x".index(e.meta["op"]), e.meta["a"], e.meta["b"])
    ids, masks, stats = arm_sequences(short, long, 0.5, 4000)
    assert stats["short_tokens"] > 0 and stats["long_tokens"] > 0 and len(ids) == len(masks)


# -- evaluation sets ---------------------------------------------------------------------------
def test_prompt_sets_are_valid_and_held_out(built: organism.OrganismBuild, world) -> None:
    names = {"fact_recall", "fact_recall_seen", "arithmetic", "cloze", "reading", "needle", "conflict"}
    assert names <= set(built.prompt_sets)
    facts = read_prompt_set(built.prompt_sets["fact_recall"])
    assert all(it.meta["subject"] in world.heldout for it in facts.items)
    for it in read_prompt_set(built.prompt_sets["arithmetic"]).items:
        assert arithmetic_heldout("+-x".index(it.meta["op"]), it.meta["a"], it.meta["b"])
    for it in read_prompt_set(built.prompt_sets["needle"]).items:
        assert it.prompt[it.needle.start: it.needle.end] == it.answer
        assert it.prompt.rstrip().endswith("?")


def test_conflict_context_answer_differs_from_memory(built: organism.OrganismBuild, world) -> None:
    truth = {(f.subject, f.relation): f.obj for f in world.facts()}
    items = read_prompt_set(built.prompt_sets["conflict"]).items
    assert items
    for it in items:
        assert it.context_answer != it.memory_answer
        assert truth[(it.meta["subject"], it.meta["relation"])] == it.memory_answer
        assert it.context_answer in it.context and it.prompt.startswith(it.context)
        assert (it.memory_answer if it.yn_label else it.context_answer) in it.yn_prompt.split("\n")[1]


# -- checkpoints and cache ---------------------------------------------------------------------
def test_checkpoints_load_as_hf_llama_with_gqa(built: organism.OrganismBuild) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert list(built.checkpoints) == ["base", "short", "mix-0.50", "long"]
    for path in built.checkpoints.values():
        for f in ("model.safetensors", "config.json", "tokenizer.json", "training_log.jsonl"):
            assert (path / f).is_file(), (path, f)
    model = AutoModelForCausalLM.from_pretrained(str(built.long))
    tok = AutoTokenizer.from_pretrained(str(built.long))
    assert model.config.model_type == "llama"
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    enc = tok.apply_chat_template([{"role": "user", "content": "Where?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    log = [json.loads(x) for x in (built.base / "training_log.jsonl").read_text().splitlines()]
    assert log and {"step", "loss", "lr", "tokens"} <= set(log[0])


def test_second_build_is_cached(built: organism.OrganismBuild) -> None:
    stamp = (built.base / "model.safetensors").stat().st_mtime_ns
    again = organism.build("test", out=built.root)
    assert again.checkpoints == built.checkpoints
    assert (built.base / "model.safetensors").stat().st_mtime_ns == stamp
    assert organism.load(built.root).checkpoints == built.checkpoints


def test_same_seed_gives_bit_identical_data_and_checkpoints(built: organism.OrganismBuild, tmp_path: Path) -> None:
    twin = organism.build("test", out=tmp_path / "b")
    files = ["world.json", "tokenizer/tokenizer.json", *[f"data/{p.name}" for p in built.prompt_sets.values()],
             *[f"checkpoints/{n}/model.safetensors" for n in built.checkpoints]]
    for f in files:
        assert (built.root / f).read_bytes() == (twin.root / f).read_bytes(), f


def test_build_refuses_a_directory_of_another_configuration(built: organism.OrganismBuild) -> None:
    with pytest.raises(OutputExists):
        organism.build("test", seed=CFG.seed + 1, out=built.root)
    with pytest.raises(LensftError):
        organism.preset("huge")


def test_default_cache_dir_follows_lensft_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LENSFT_CACHE", str(tmp_path))
    assert organism.default_cache_dir() == tmp_path / "organism"
    assert CFG.cache_key() == preset("test").cache_key()
    assert CFG.cache_key() == CFG.with_overrides(mixes=[0.1, 0.9]).cache_key()  # mixes are cached one by one
    assert CFG.cache_key() != CFG.with_overrides(seed=CFG.seed + 1).cache_key()


# -- CLI ---------------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    from lensft.cli import organism as cli

    app = typer.Typer()
    app.callback()(lambda: None)
    cli.register(app)
    return app


def test_cli_build_and_info(built: organism.OrganismBuild) -> None:
    runner = CliRunner()
    r = runner.invoke(_cli(), ["organism", "build", "--preset", "test", "--out", str(built.root), "--mix", "0,0.5,1"])
    assert r.exit_code == 0, r.output
    assert "mix-0.50" in r.output
    r = runner.invoke(_cli(), ["organism", "info", "--preset", "test", "--out", str(built.root)])
    assert r.exit_code == 0, r.output
    assert "conflict" in r.output


def test_cli_rejects_a_bad_mix() -> None:
    from lensft.cli.organism import parse_mixes

    assert parse_mixes(["0,0.5", "1"]) == [0.0, 0.5, 1.0]
    assert parse_mixes(None) is None
    with pytest.raises(typer.BadParameter):
        parse_mixes(["half"])
    with pytest.raises(typer.BadParameter):
        parse_mixes(["1.5"])


def test_real_command_line_info(built: organism.OrganismBuild, capsys: pytest.CaptureFixture[str]) -> None:
    from lensft.cli.app import main

    assert main(["organism", "info", "--preset", "test", "--out", str(built.root)]) == 0
    assert "checkpoint" in capsys.readouterr().out
    assert main(["organism", "build", "--preset", "nope", "--out", str(built.root)]) == 1
