"""Checkpoint readers: lazy opening, triples, compatibility reports."""

from __future__ import annotations

import shutil

import pytest
import torch

from lensft.checkpoints import open_checkpoint
from lensft.checkpoints.compat import check_compatibility
from lensft.checkpoints.load import load_triple
from lensft.errors import CheckpointError, IncompatibleCheckpoints
from lensft.pico import build_pico, build_tokenizer


def test_open_reads_headers_only(llama_triple, tmp_path) -> None:
    """Opening never reads tensor data: a checkpoint whose data bytes are overwritten still opens,
    and only `get` sees the change."""
    d = tmp_path / "ck"
    shutil.copytree(llama_triple["short"], d)
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    raw[8 + header_len:] = b"\x00" * (len(raw) - 8 - header_len)
    f.write_bytes(bytes(raw))
    r = open_checkpoint(d)
    assert len(r.tensors) == 21
    assert torch.count_nonzero(r.get("model.layers.0.self_attn.q_proj.weight")) == 0


def test_reader_matches_transformers_state_dict(family_triple) -> None:
    import transformers

    _, paths = family_triple
    r = open_checkpoint(paths["long"])
    model = transformers.AutoModelForCausalLM.from_pretrained(paths["long"], local_files_only=True)
    sd = model.state_dict()
    for name in r.tensors:
        torch.testing.assert_close(r.get(name), sd[r.family.runtime_name(name)], rtol=0, atol=0)


def test_triple_reference_and_cache(llama_triple) -> None:
    t = load_triple(**{v.value: p for v, p in llama_triple.items()})
    assert t.reference is t["base"]
    a = t.tensors("short")
    assert all(t.tensors("short")[k] is a[k] for k in a)  # loaded once
    assert t.tensor("short", "model.norm.weight") is a["model.norm.weight"]
    half = t.tensor("short", "model.norm.weight", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and t.tensor("short", "model.norm.weight", dtype=torch.bfloat16) is half
    meta = t.tensor("long", "model.norm.weight", device="meta")
    assert meta.is_meta and not t.is_cached("long", "model.norm.weight")
    t2 = load_triple(short=llama_triple["short"], long=llama_triple["long"])
    assert t2.reference is t2["short"]
    with pytest.raises(CheckpointError, match="no base checkpoint was given"):
        t2["base"]


def test_compatibility_report_flags_tokenizer_and_config(llama_triple, tmp_path) -> None:
    other_tok = build_pico(tmp_path / "tok", "llama", seed=0, tokenizer=build_tokenizer(300), vocab_size=384)
    t = load_triple(short=llama_triple["short"], long=other_tok, check=False)
    rep = check_compatibility(t, weight_changes=False)
    assert not rep.compatible
    assert "tokenizers differ (vocab)" in rep.first_error()
    with pytest.raises(IncompatibleCheckpoints, match="vocab"):
        load_triple(short=llama_triple["short"], long=other_tok)
    rope = build_pico(tmp_path / "rope", "llama", seed=7, rope_theta=5e5)
    rep = check_compatibility(load_triple(short=llama_triple["short"], long=rope, check=False), weight_changes=True)
    assert rep.compatible  # a rope difference is a warning, not an error
    assert any("rope" in w for w in rep.warnings())
    assert rep.change_table()["long"]["mha"][0] > 0.5  # different random init: a large change


def test_weight_change_is_zero_for_identical_checkpoints(llama_triple) -> None:
    t = load_triple(short=llama_triple["short"], long=llama_triple["short"])
    rep = check_compatibility(t)
    assert rep.weight_changes and all(w.rel_change == 0.0 for w in rep.weight_changes)
