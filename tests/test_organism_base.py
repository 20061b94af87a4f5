"""The reading base shipped in the package: its provenance, and that it remembers and reads.

The capability thresholds are issue 12's targets, measured by lensft's own probes (greedy exact
match, Wu et al. retrieval) on held-out prompt sets drawn as the quick preset draws them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lensft import __version__, organism
from lensft.organism import shipped
from lensft.organism.config import preset
from lensft.organism.evalsets import write_eval_sets
from lensft.organism.world import make_world
from lensft.prompts.io import read_prompt_set

META = shipped.shipped_meta()


def test_the_package_ships_the_presets_base() -> None:
    assert META is not None, "lensft/organism/base/ holds no trained base"
    for name in ("quick", "full"):
        assert shipped.ships(preset(name).base), name
    assert not shipped.ships(preset("quick").with_overrides(seed=1).base)
    assert META["base"]["base_key"] == preset("quick").base.key()
    assert META["base_config"] == json.loads(preset("quick").base.model_dump_json())
    assert META["base"]["lensft_version"] and META["base"]["lensft_version"].split(".")[0] == __version__.split(".")[0]
    size = sum(f.stat().st_size for f in shipped.SHIPPED_DIR.iterdir() if f.is_file())
    assert size <= 10 * 2**20, f"shipped base is {size / 2**20:.1f} MiB"
    log = (shipped.SHIPPED_DIR / "training_log.jsonl").read_text().splitlines()
    assert len(log) == META["base"]["training"]["steps"]


def test_from_scratch_build_reproduces_the_shipped_log(tmp_path: Path) -> None:
    """The first pretraining steps of a from-scratch build match the shipped base's log."""
    n = 4
    ours = organism.first_base_steps("quick", n, tmp_path)
    theirs = [json.loads(x) for x in (shipped.SHIPPED_DIR / "training_log.jsonl").read_text().splitlines()[:n]]
    for a, b in zip(ours, theirs, strict=True):
        assert (a["step"], a["tokens"], a["answer_tokens"], a["lr"]) == (b["step"], b["tokens"], b["answer_tokens"], b["lr"])
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), (a, b)
    ours_tok = json.loads((tmp_path / "tokenizer" / "tokenizer.json").read_text())
    theirs_tok = json.loads((shipped.SHIPPED_DIR / "tokenizer.json").read_text())
    assert ours_tok["model"] == theirs_tok["model"]  # same vocabulary and merges


@pytest.fixture(scope="module")
def quick_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The quick preset's held-out sets, written as a build writes them."""
    import numpy as np
    from transformers import AutoTokenizer

    from lensft.organism.build import _EVAL
    from lensft.organism.corpus import chars_per_token

    cfg = preset("quick")
    world = make_world(cfg.base.world, cfg.seed)
    tok = AutoTokenizer.from_pretrained(str(shipped.SHIPPED_DIR))
    cpt = chars_per_token(world, cfg.base, tok)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _EVAL]))
    return write_eval_sets(world, cfg.eval, rng, tmp_path_factory.mktemp("sets"), cpt)


@pytest.mark.slow
def test_shipped_base_remembers_and_reads(quick_sets: dict[str, Path]) -> None:
    """What the shipped base does, guarded against regressions (bounds below the measured values).

    Measured (2026-11-26, 60 items per set; README's organism table): closed-book recall 1.00 on
    subjects whose questions were trained and 0.98 on held-out ones, reading 0.93 (within 64
    tokens; reverse "who" questions 9/12) and 0.73 (300-1,000 tokens; reverse questions 0/16),
    word problems 1.00 (worked answers), needle copy 1.00 at 1,000 tokens, 2 retrieval heads.
    Every issue 12 target for the base is met. A base that loses its memory or its reading fails here.
    """
    from lensft.organism.evaluate import evaluate_checkpoint

    names = ("fact_recall", "fact_recall_seen", "reading", "reading_long", "arithmetic", "needle")
    s = evaluate_checkpoint(shipped.SHIPPED_DIR, {n: quick_sets[n] for n in names}, label="base")
    assert s.accuracy["fact_recall_seen"] >= 0.9, s  # memorised: questions about these subjects were trained
    assert s.accuracy["fact_recall"] >= 0.9, s  # held-out subjects (seen only in biographies): issue 12's target
    assert s.accuracy["reading"] >= 0.85, s  # novel entities, within 64 tokens (target 0.9, measured 0.93)
    assert s.accuracy["reading_long"] >= 0.65, s  # 300-1,000 tokens, random depth (target 0.7, measured 0.73)
    assert s.accuracy["arithmetic"] >= 0.9, s  # read two operands, apply the memorised table
    assert s.n_retrieval_heads is not None and s.n_retrieval_heads >= 1, s
    assert s.max_retrieval_score is not None and s.max_retrieval_score > 0.5, s
    longest = max(s.needle_copy_by_length)
    assert s.needle_copy_by_length[longest] >= 0.8, s  # issue 12's target
    ps = read_prompt_set(quick_sets["needle"])
    assert longest == max(it.context_tokens for it in ps.items)
