"""The graft engine: identities, per-tensor provenance, layer bands, interpolation, written checkpoints."""

from __future__ import annotations

import json
import re

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensft.checkpoints import open_checkpoint
from lensft.checkpoints.load import load_triple
from lensft.graft.export import MANIFEST_NAME, write_graft
from lensft.graft import GraftSpec, LayerRange, apply_graft, graft_model, plan_graft
from lensft.pico import build_pico
from lensft.variants import Role, Variant


def _triple(paths):
    return load_triple(base=paths[Variant.BASE], short=paths[Variant.SHORT], long=paths[Variant.LONG])


def _stored(path) -> dict[str, torch.Tensor]:
    return open_checkpoint(path).state_dict()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("v", ["short", "long", "base"])
def test_taking_every_block_from_one_checkpoint_is_that_checkpoint(family_triple, v) -> None:
    _, paths = family_triple
    triple = _triple(paths)
    spec = GraftSpec.build(mha=v, ffn=v, host=v)
    plan = plan_graft(spec, triple.family, triple.n_layers, triple.metadata())
    out = apply_graft(plan, {x: triple.tensors(x) for x in triple.variants})
    ref = _stored(paths[Variant(v)])
    assert out.keys() == ref.keys()
    assert all(_same(out[k], ref[k]) for k in ref)


def test_mixed_graft_takes_each_tensor_from_its_role_source(family_triple) -> None:
    _, paths = family_triple
    triple = _triple(paths)
    spec = GraftSpec.build(mha="long", ffn="short")  # host defaults to the ffn source
    assert spec.host is Variant.SHORT
    plan = plan_graft(spec, triple.family, triple.n_layers, triple.metadata())
    out = apply_graft(plan, {x: triple.tensors(x) for x in triple.variants})
    short, long = _stored(paths[Variant.SHORT]), _stored(paths[Variant.LONG])
    seen_roles = set()
    for name, t in out.items():
        role = triple.family.classify(name).role
        seen_roles.add(role)
        expected = long if role is Role.MHA else short
        assert _same(t, expected[name]), name
        if role is Role.MHA:
            assert not torch.equal(t, short[name]), f"{name} should differ between short and long"
    assert {Role.MHA, Role.FFN} <= seen_roles
    assert len(out) == len(short)  # the roles partition the state dict: nothing dropped or added


def test_alpha_endpoints_and_midpoint(llama_triple) -> None:
    triple = _triple(llama_triple)
    short, long = triple.tensors("short"), triple.tensors("long")
    for alpha, expect in ((0.0, short), (1.0, long)):
        spec = GraftSpec.build(mha="long", ffn="long", host="short", alpha=alpha)
        out = apply_graft(plan_graft(spec, triple.family, triple.n_layers, triple.metadata()),
                          {v: triple.tensors(v) for v in triple.variants})
        for name, t in out.items():
            role = triple.family.classify(name).role
            ref = expect if role in (Role.MHA, Role.FFN) else short
            assert _same(t, ref[name]), (alpha, name)
    spec = GraftSpec.build(mha="long", ffn="short", alpha=0.25)
    out = apply_graft(plan_graft(spec, triple.family, triple.n_layers, triple.metadata()),
                      {v: triple.tensors(v) for v in triple.variants})
    name = "model.layers.1.self_attn.q_proj.weight"
    torch.testing.assert_close(out[name], 0.75 * short[name] + 0.25 * long[name], rtol=1e-6, atol=1e-7)


def test_layer_band_and_module_norms(llama_triple) -> None:
    triple = _triple(llama_triple)
    spec = GraftSpec.build(mha="long", ffn="long", host="short", layers="1:2", norms="module")
    out = apply_graft(plan_graft(spec, triple.family, triple.n_layers, triple.metadata()),
                      {v: triple.tensors(v) for v in triple.variants})
    short, long = triple.tensors("short"), triple.tensors("long")
    for name, t in out.items():
        info = triple.family.classify(name)
        from_long = info.layer == 1 and info.role in (Role.MHA, Role.FFN, Role.ATTN_NORM, Role.FFN_NORM)
        assert _same(t, (long if from_long else short)[name]), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    host=st.sampled_from(list(Variant)),
    mha=st.sampled_from(list(Variant)),
    ffn=st.sampled_from(list(Variant)),
    norms=st.sampled_from(["host", "module"]),
    band=st.sampled_from([None, "0:1", "1:2", "0:2"]),
    alpha=st.sampled_from([0.0, 1.0]),
)
def test_property_every_tensor_comes_from_the_source_the_spec_names(llama_triple, host, mha, ffn, norms, band, alpha) -> None:
    triple = _triple(llama_triple)
    spec = GraftSpec.build(mha=mha.value, ffn=ffn.value, host=host.value, norms=norms, layers=band, alpha=alpha)
    src = {v: triple.tensors(v) for v in triple.variants}
    out = apply_graft(plan_graft(spec, triple.family, triple.n_layers, triple.metadata()), src)
    for name, t in out.items():
        expected = _expected_llama_source(name, host, mha, ffn, norms, band) if alpha == 1.0 else host
        assert _same(t, src[expected][name]), name


def _expected_llama_source(name: str, host, mha, ffn, norms: str, band):  # noqa: ANN001, ANN202
    """Independent oracle (not the family map or GraftSpec): the paper's swap rule written out for
    HF Llama tensor names."""
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if m is None:
        return host  # embeddings, final norm, lm head stay with the host
    layer = int(m.group(1))
    if band is not None:
        a, b = map(int, band.split(":"))
        if not a <= layer < b:
            return host
    if ".self_attn." in name:
        return mha
    if ".mlp." in name:
        return ffn
    if name.endswith("input_layernorm.weight"):
        return mha if norms == "module" else host
    if name.endswith("post_attention_layernorm.weight"):
        return ffn if norms == "module" else host
    raise AssertionError(f"the oracle does not know {name}")


def test_written_checkpoint_loads_and_matches_in_memory_graft(family_triple, tmp_path) -> None:
    fam, paths = family_triple
    triple = _triple(paths)
    spec = GraftSpec.build(mha="long", ffn="short", alpha=0.5 if fam == "gpt2" else 1.0)
    plan = plan_graft(spec, triple.family, triple.n_layers, triple.metadata())
    res = write_graft(plan, triple, tmp_path / "g")
    manifest = json.loads((tmp_path / "g" / MANIFEST_NAME).read_text())
    assert manifest["spec"]["mha"] == "long" and manifest["lensft_version"]
    assert len(manifest["tensors"]) == len(plan) == res.n_tensors
    assert all(len(h) == 64 for h in manifest["source_file_sha256"].values())
    written = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "g", local_files_only=True)
    in_memory = graft_model(triple, spec)
    ids = torch.randint(0, 300, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(written(ids).logits, in_memory.model(ids).logits, rtol=0, atol=0)
    # bit-identical tensors on disk
    mem = apply_graft(plan, {v: triple.tensors(v) for v in triple.variants})
    disk = _stored(tmp_path / "g")
    assert all(_same(disk[k], mem[k]) for k in mem)


def test_sharded_and_bin_hosts(tmp_path) -> None:
    sharded = build_pico(tmp_path / "sharded", "llama", seed=3, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    other = build_pico(tmp_path / "other", "llama", seed=4)
    # a .bin copy of `other`, read only through torch.load(weights_only=True)
    binned = tmp_path / "binned"
    m = transformers.AutoModelForCausalLM.from_pretrained(other, local_files_only=True)
    binned.mkdir()
    torch.save({k: v.clone() for k, v in m.state_dict().items() if k != "lm_head.weight" or not m.config.tie_word_embeddings},
               binned / "pytorch_model.bin")
    (binned / "config.json").write_text((other / "config.json").read_text())
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (binned / f).write_text((other / f).read_text())
    triple = load_triple(short=sharded, long=binned)
    assert triple["long"].format == "bin"
    spec = GraftSpec.build(mha="long", ffn="short")
    res = write_graft(plan_graft(spec, triple.family, triple.n_layers, triple.metadata()), triple, tmp_path / "out")
    assert len(res.shards) > 1 and (tmp_path / "out" / "model.safetensors.index.json").is_file()
    out = _stored(tmp_path / "out")
    ref_long = m.state_dict()
    assert _same(out["model.layers.0.self_attn.q_proj.weight"], ref_long["model.layers.0.self_attn.q_proj.weight"])
    ref_short = _stored(sharded)
    assert _same(out["model.layers.0.mlp.up_proj.weight"], ref_short["model.layers.0.mlp.up_proj.weight"])
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", local_files_only=True)


def test_layer_range_parsing() -> None:
    assert LayerRange.parse("8:24") == LayerRange(start=8, stop=24)
    assert LayerRange.parse(":4") == LayerRange(start=0, stop=4)
    assert LayerRange.parse("3") == LayerRange(start=3, stop=4)
    from lensft.errors import GraftError

    for bad in ("a:b", "5:5", "7:2", ""):
        with pytest.raises(GraftError):
            LayerRange.parse(bad)


def test_spec_labels() -> None:
    assert GraftSpec.build(mha="long", ffn="short").label == "short + long.mha"
    assert GraftSpec.build(mha="short", ffn="short").label == "short"
    assert GraftSpec.build(mha="long", ffn="short", layers="2:4", alpha=0.5).label == "short + long.mha[2:4]@0.5"
