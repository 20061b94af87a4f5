"""TransformerLens views on a real pretrained model: SmolLM2-135M-Instruct and grafts made from it.

The triple pairs SmolLM2 (``short``) with a copy whose every tensor moved by 2% relative noise
(``long``), so a graft mixes real weights with nearby ones and differs from both checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from lensft.checkpoints.load import load_triple
from lensft.graft import GraftSpec, graft_model
from lensft.handle import ModelHandle, load_model
from lensft.pico import perturb_checkpoint
from lensft.probes.attention_kernel import collect_attention

pytestmark = pytest.mark.real

TEXT = ("The capital of France is Paris. The capital of Italy is Rome. "
        "The capital of Spain is Madrid, and the capital of Germany is")


@pytest.fixture(scope="module")
def plain_logits(smollm2: Path) -> torch.Tensor:
    h = load_model(smollm2)
    with torch.no_grad():
        return h.model(_ids(h)).logits


@pytest.fixture(scope="module")
def smol_triple(smollm2: Path, tmp_path_factory: pytest.TempPathFactory):
    long = perturb_checkpoint(smollm2, tmp_path_factory.mktemp("smol") / "long", seed=5, scale=0.02)
    return load_triple(short=smollm2, long=long)


def _ids(h: ModelHandle) -> torch.Tensor:
    return torch.tensor([h.tokenizer(TEXT)["input_ids"]])


@torch.no_grad()
def assert_view_faithful(h: ModelHandle, view) -> torch.Tensor:
    """Logits within 1e-4 of the HF model, per-query attention entropy within 1e-5 of lensft's
    streamed statistics (one forward of each); returns the view's logits."""
    ids = _ids(h)
    logits, cache = view.run_with_cache(ids, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    with collect_attention(h, keep_per_query=True) as col:
        hf_logits = h.model(ids).logits
    assert_close(logits, hf_logits, atol=1e-4, rtol=0)
    for i in range(h.n_layers):
        tl = torch.special.entr(cache[f"blocks.{i}.attn.hook_pattern"][0].double()).sum(-1)
        assert_close(tl, col.per_query[i][0].entropy[0].double(), atol=1e-5, rtol=0)
    return logits


def test_smollm2_views_equal_hf(smollm2: Path) -> None:
    h = load_model(smollm2)
    hooked = h.transformer_lens()
    assert hooked.lensft_backend == "hooked" and hooked.cfg.n_key_value_heads == 3
    logits = assert_view_faithful(h, hooked)
    rome_or_berlin = h.tokenizer(" Berlin", add_special_tokens=False)["input_ids"][0]
    assert int(logits[0, -1].argmax()) == rome_or_berlin
    del hooked
    assert_view_faithful(h, h.transformer_lens(backend="bridge", check=False))


@pytest.mark.parametrize("spec", [dict(mha="long", ffn="short"),
                                  dict(mha="long", ffn="short", layers="10:20", alpha=0.5, norms="module")],
                         ids=["all_layers", "band_alpha"])
def test_smollm2_graft_views_equal_hf(smol_triple, plain_logits: torch.Tensor, spec: dict) -> None:
    g = graft_model(smol_triple, GraftSpec.build(**spec))
    view = g.transformer_lens(check=False)  # the check itself is covered by test_smollm2_views_equal_hf
    assert view.lensft_provenance.graft["mha"] == "long"
    logits = assert_view_faithful(g, view)
    short = smol_triple.tensors("short")["model.layers.12.self_attn.q_proj.weight"]
    assert not torch.equal(g.layers[12].self_attn.q_proj.weight, short)  # layer 12 is grafted in both specs
    assert (logits - plain_logits).abs().max() > 1e-2  # the view shows the graft, not its host (SmolLM2 itself)
