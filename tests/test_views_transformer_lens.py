"""TransformerLens views of checkpoints and in-memory grafts, on pico models of every family.

Oracles: the Hugging Face model's own logits (the view must compute the same function), and the
attention entropy lensft streams from inside HF's attention call (``collect_attention``), set
against ``-sum p log p`` of TransformerLens's ``hook_pattern``.
"""

from __future__ import annotations

import shutil
import socket

import pytest
import torch
from torch.testing import assert_close

import lensft
from lensft.checkpoints.load import load_triple
from lensft.errors import ViewError
from lensft.families import get_family, supported_families
from lensft.graft import GraftSpec, graft_model
from lensft.handle import ModelHandle, load_model
from lensft.pico import build_pico
from lensft.probes.attention_kernel import collect_attention
from lensft.variants import Variant
from lensft.views import choose_backend, transformer_lens_view
from lensft.views.faithful import check_faithful
from lensft.views.tl_backends import build_hooked

#: The documented choice (README, lensft.views.tl_view): which TransformerLens class each pico model opens as.
EXPECTED_BACKEND = {"llama": "hooked", "mistral": "hooked", "qwen2": "hooked", "qwen3": "hooked", "gpt2": "hooked",
                    "gpt_neox": "hooked", "gemma": "bridge", "gemma2": "bridge"}
LOGIT_TOL = dict(atol=1e-4, rtol=0)
ENTROPY_TOL = dict(atol=1e-5, rtol=0)
SPECS = {
    "all": dict(mha="long", ffn="short"),
    "band_alpha": dict(mha="long", ffn="short", layers="1:2", alpha=0.5, norms="module"),
}


def _ids(h: ModelHandle, n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, len(h.tokenizer), (1, n), generator=g)


@torch.no_grad()
def tl_entropy(view, ids: torch.Tensor, n_layers: int) -> torch.Tensor:
    """-sum_k p log p of TransformerLens's attention patterns: ``[layer, head, query]`` (nats)."""
    _, cache = view.run_with_cache(ids, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    return torch.stack([torch.special.entr(cache[f"blocks.{i}.attn.hook_pattern"][0].double()).sum(-1)
                        for i in range(n_layers)])


@torch.no_grad()
def streamed_entropy(h: ModelHandle, ids: torch.Tensor) -> torch.Tensor:
    """lensft's streamed per-query entropy from inside the HF attention call: ``[layer, head, query]``."""
    with collect_attention(h, keep_per_query=True, chunk_q=16, chunk_k=16) as col:
        h.model(ids)
    return torch.stack([col.per_query[i][0].entropy[0].double() for i in range(h.n_layers)])


def assert_faithful(h: ModelHandle, view, ids: torch.Tensor) -> None:
    with torch.no_grad():
        assert_close(view(ids), h.model(ids).logits, **LOGIT_TOL)
    assert_close(tl_entropy(view, ids, h.n_layers), streamed_entropy(h, ids), **ENTROPY_TOL)


# ------------------------------------------------------------------------------------ faithfulness
def test_checkpoint_view_equals_hf(family_triple) -> None:
    family, triple = family_triple
    h = load_model(triple[Variant.SHORT])
    view = h.transformer_lens()
    assert view.lensft_backend == EXPECTED_BACKEND[family]
    assert type(view).__name__ == {"hooked": "HookedTransformer", "bridge": "TransformerBridge"}[view.lensft_backend]
    assert view.lensft_provenance == h.provenance and view.lensft_provenance is not h.provenance
    assert_faithful(h, view, _ids(h))


@pytest.mark.parametrize("kind", list(SPECS))
def test_graft_view_equals_hf(family_triple, kind: str) -> None:
    family, paths = family_triple
    triple = load_triple(**{v.value: p for v, p in paths.items()})
    spec = GraftSpec.build(**SPECS[kind])
    g = graft_model(triple, spec)
    view = g.transformer_lens()
    assert view.lensft_provenance.graft == spec.model_dump(mode="json")
    assert set(view.lensft_provenance.sources) == {"short", "long"}
    assert_faithful(g, view, _ids(g, seed=1))
    # the graft really differs from its host: the test cannot pass on the host's weights
    host = lensft.variant_model(triple, "short")
    with torch.no_grad():
        assert (view(_ids(g, seed=1)) - host.model(_ids(g, seed=1)).logits).abs().max() > 1e-3


def test_both_backends_agree_where_both_exist(pico_triples) -> None:
    h = load_model(pico_triples["qwen3"][Variant.LONG])
    ids = _ids(h, 33)
    hooked, bridge = h.transformer_lens(backend="hooked"), h.transformer_lens(backend="bridge")
    assert (hooked.lensft_backend, bridge.lensft_backend) == ("hooked", "bridge")
    with torch.no_grad():
        assert_close(hooked(ids), bridge(ids), **LOGIT_TOL)
    assert_close(tl_entropy(hooked, ids, h.n_layers), tl_entropy(bridge, ids, h.n_layers), **ENTROPY_TOL)


def test_view_matches_attention_spread_probe(pico_triples) -> None:
    """The probe's per-prompt mean entropy of phase ``all`` equals the view's patterns' mean."""
    from lensft.prompts.io import make_prompt_set
    from lensft.prompts.schema import TextItem

    h = load_model(pico_triples["gpt_neox"][Variant.BASE])
    text = "A long document may hide a needle among many distractor sentences about the weather."
    res = lensft.get_probe("attention_spread").run(h, make_prompt_set("t", "1", "text", [TextItem(id="a", text=text)]),
                                                   {"chunk_q": 8, "chunk_k": 8})
    ids = torch.tensor([h.tokenizer(text)["input_ids"]])
    ent = tl_entropy(h.transformer_lens(), ids, h.n_layers).mean(-1)  # [layer, head]
    assert_close(torch.tensor(res.array("entropy_per_prompt")[0, 0]), ent, **ENTROPY_TOL)


# ------------------------------------------------------------------------------------ choice of backend
def test_a_config_outside_the_hooked_map_opens_as_a_faithful_bridge(tmp_path) -> None:
    """Mistral with a sliding window: TL's Llama map would ignore the window, so auto picks the bridge."""
    h = load_model(build_pico(tmp_path / "m", "mistral", sliding_window=8))
    view = h.transformer_lens()
    assert view.lensft_backend == "bridge" and "sliding_window=8" in view.lensft_backend_reason
    assert_faithful(h, view, _ids(h))
    with pytest.raises(ViewError, match="sliding_window=8.*backend='bridge'"):
        h.transformer_lens(backend="hooked")
    # the requirement is needed: forcing the map anyway gives a different function, caught by the check
    forced = build_hooked(h.model, h.tokenizer, h.family.transformer_lens.hooked, name="forced", processing={})
    with pytest.raises(ViewError, match="differs from the Hugging Face model"):
        check_faithful(h.model, forced, name="forced")


def test_unsupported_family_and_bad_options_raise_one_clear_error(pico_triples) -> None:
    llama = get_family("llama")
    no_tl = llama.model_copy(update={"transformer_lens": None, "name": "nolens"})
    with pytest.raises(ViewError, match="neither HookedTransformer nor TransformerBridge for the nolens family"):
        choose_backend(no_tl, {})
    with pytest.raises(ViewError, match="backend must be"):
        choose_backend(llama, {}, "tl")
    with pytest.raises(ViewError, match="Google's named checkpoints.*backend='bridge'"):
        choose_backend(get_family("gemma"), {}, "hooked")
    h = load_model(pico_triples["gemma"][Variant.BASE])
    with pytest.raises(ViewError, match="processing needs a HookedTransformer"):
        h.transformer_lens(fold_ln=True)
    with pytest.raises(ViewError, match="unknown TransformerLens processing flag"):
        h.transformer_lens(fold_layernorm=True)


def test_every_hooked_map_names_real_transformer_lens_parts() -> None:
    import dataclasses

    import transformer_lens.pretrained.weight_conversions as conversions
    from transformer_lens import HookedTransformerConfig

    fields = {f.name for f in dataclasses.fields(HookedTransformerConfig)}
    for fam in supported_families():
        tl = get_family(fam).transformer_lens
        assert tl is not None and (tl.hooked or tl.bridge), fam
        if tl.hooked:
            assert callable(getattr(conversions, tl.hooked.weights)), fam
            assert set(tl.hooked.config) | set(tl.hooked.constants) <= fields, fam


# ------------------------------------------------------------------------------------ memory, isolation, offline
def test_keep_hf_false_frees_the_hf_weights_and_the_handle_says_so(pico_triples) -> None:
    h = load_model(pico_triples["llama"][Variant.BASE])
    ids = _ids(h)
    with torch.no_grad():
        before = h.model(ids).logits
    view = h.transformer_lens(keep_hf=False)
    assert all(p.device.type == "meta" for p in h.model.parameters())
    with pytest.raises(ViewError, match="released for its TransformerLens view"):
        h.model(ids)
    with torch.no_grad():
        assert_close(view(ids), before, **LOGIT_TOL)


def test_releasing_a_graft_leaves_the_triple_cache_intact(llama_triple) -> None:
    triple = load_triple(**{v.value: p for v, p in llama_triple.items()})
    g = graft_model(triple, GraftSpec.build(mha="long", ffn="short"))
    g.transformer_lens(keep_hf=False)
    assert all(t.device.type == "cpu" for t in triple.tensors("long").values())
    short = lensft.variant_model(triple, "short")  # built from the same cached tensors
    assert_faithful(short, short.transformer_lens(), _ids(short))


def test_bridge_view_shares_weights_and_leaves_the_handle_untouched(pico_triples) -> None:
    h = load_model(pico_triples["gemma2"][Variant.BASE])
    h.nnsight()  # a handle already wrapped by nnsight still opens
    ids = _ids(h)
    attn_type, pad_side, impl = type(h.attention(0)), h.tokenizer.padding_side, h.model.config._attn_implementation
    with torch.no_grad():
        before = h.model(ids).logits
    view = h.transformer_lens(keep_hf=False)
    hf_storage = {p.untyped_storage().data_ptr() for p in h.model.parameters()}
    own = [p for p in view.parameters() if p.untyped_storage().data_ptr() not in hf_storage]
    assert sum(p.numel() for p in own) <= h.config.vocab_size  # only the bridge's zero lm_head bias is its own
    assert type(h.attention(0)) is attn_type and h.tokenizer.padding_side == pad_side
    assert h.model.config._attn_implementation == impl  # the bridge switched its copy to eager, not the handle
    with torch.no_grad():
        assert torch.equal(h.model(ids).logits, before)


def test_processing_keeps_log_probs_and_never_touches_the_hf_weights(pico_triples) -> None:
    h = load_model(pico_triples["gpt2"][Variant.BASE])
    ids = _ids(h)
    with torch.no_grad():
        before = h.model(ids).logits
        view = h.transformer_lens(fold_ln=True, center_writing_weights=True, center_unembed=True,
                                  fold_value_biases=True)
        assert_close(view(ids).log_softmax(-1), before.log_softmax(-1), **LOGIT_TOL)
        assert torch.equal(h.model(ids).logits, before)


def test_views_need_neither_the_checkpoint_files_nor_the_network(pico_triples, tmp_path, monkeypatch) -> None:
    for fam in ("qwen2", "gemma"):
        local = shutil.copytree(pico_triples[fam][Variant.BASE], tmp_path / fam)
        h = load_model(local)
        shutil.rmtree(local)  # nothing may be read again: config, tokenizer and weights are in memory

        def no_network(*a, **k):
            raise AssertionError("network access")

        monkeypatch.setattr(socket.socket, "connect", no_network)
        view = h.transformer_lens()
        assert view.to_tokens("The capital of Italy is")[0].tolist() == h.tokenizer("The capital of Italy is")["input_ids"]
        monkeypatch.undo()


def test_public_api_variant_view(llama_triple) -> None:
    triple = lensft.load_triple(**{v.value: p for v, p in llama_triple.items()})
    view = transformer_lens_view(lensft.variant_model(triple, "long"))
    assert view.lensft_provenance.label == "long" and view.lensft_provenance.graft is None
    assert view.cfg.model_name == "long"


def test_config_sources_resolve_in_order_with_arithmetic() -> None:
    from lensft.families.spec import HookedTransformerMap
    from lensft.views.tl_config import hooked_config_fields, read_hf, unmet_requirements

    cfg = {"n_embd": 48, "n_head": 4, "n_inner": None, "rope": {"frac": 0.25, "type": "yarn"}}
    assert read_hf(cfg, "rope.frac") == 0.25 and read_hf(cfg, "rope.missing") is None and read_hf(cfg, "n_inner") is None
    m = HookedTransformerMap.model_validate({
        "architecture": "X", "weights": "convert_x",
        "config": {"d_model": ["n_embd"], "n_heads": ["n_head"],
                   "d_head": ["head_dim", {"hf": "n_embd", "divide_by": "n_heads"}],
                   "d_mlp": ["n_inner", {"hf": "n_embd", "factor": 4}],
                   "rotary_dim": [{"hf": "rope.frac", "times": "d_head"}], "window": ["sliding_window"]},
        "constants": {"normalization_type": "LN"},
        "requires": {"rope.type": ["default", None], "n_head": [4]}})
    assert hooked_config_fields(cfg, m) == {"d_model": 48, "n_heads": 4, "d_head": 12, "d_mlp": 192,
                                                            "rotary_dim": 3, "normalization_type": "LN"}
    assert unmet_requirements(cfg, m) == ["rope.type='yarn'"]
    broken = HookedTransformerMap.model_validate({"architecture": "X", "weights": "convert_x",
                                                  "config": {"d_head": [{"hf": "n_embd", "divide_by": "n_heads"}]}})
    with pytest.raises(ViewError, match="uses 'n_heads' before it is resolved"):
        hooked_config_fields(cfg, broken)
