"""Family maps: templates expand to exactly each pico model's tensors, one role per tensor."""

from __future__ import annotations

import pytest
import transformers

from lensft.checkpoints import open_checkpoint
from lensft.errors import UnknownFamily
from lensft.families import family_for_config, get_family, supported_families
from lensft.variants import Role


def test_every_family_file_loads() -> None:
    fams = supported_families()
    assert {"llama", "qwen2", "gemma", "gemma2", "gpt2", "gpt_neox"} <= set(fams)
    for name in fams:
        spec = get_family(name)
        assert spec.tensors, name
        roles = {t.role for t in spec.tensors}
        assert {Role.MHA, Role.FFN, Role.ATTN_NORM, Role.FFN_NORM, Role.EMBED, Role.FINAL_NORM} <= roles, name


def test_templates_match_stored_tensors_exactly(family_triple) -> None:
    fam_name, triple = family_triple
    reader = open_checkpoint(triple["short"])
    spec = reader.family
    stored = set(reader.tensors)
    # every stored tensor matches exactly one template
    for name in stored:
        matches = [t for t in spec.tensors if spec.classify(name) and name in t.expand(reader.n_layers)]
        assert len(matches) == 1, (name, [m.name for m in matches])
    # every required template is present; nothing outside the optional templates is extra
    required = set(spec.expected_names(reader.n_layers))
    assert required <= stored
    optional = set(spec.expected_names(reader.n_layers, include_optional=True)) - required
    assert stored - required <= optional


def test_templates_match_model_state_dict(family_triple) -> None:
    """The runtime state dict is the stored tensors under their runtime names (plus tied heads)."""
    fam_name, triple = family_triple
    reader = open_checkpoint(triple["short"])
    model = transformers.AutoModelForCausalLM.from_pretrained(triple["short"], local_files_only=True)
    runtime = set(model.state_dict())
    spec = reader.family
    expected = {spec.runtime_name(n) for n in reader.tensors}
    tied = {spec.runtime_name(t.name) for t in spec.tensors if t.tied_to}
    assert expected <= runtime
    assert runtime - expected <= tied


def test_roles_partition_a_checkpoint(family_triple) -> None:
    _, triple = family_triple
    reader = open_checkpoint(triple["long"])
    by_role: dict[Role, set[str]] = {}
    for n in reader.tensors:
        by_role.setdefault(reader.info(n).role, set()).add(n)
    assert sum(len(s) for s in by_role.values()) == len(reader.tensors)
    assert by_role[Role.MHA] and by_role[Role.FFN]
    for a in by_role:
        for b in by_role:
            if a != b:
                assert not by_role[a] & by_role[b]


def test_tricky_names_have_the_right_role() -> None:
    gpt2 = get_family("gpt2")
    assert gpt2.classify("transformer.h.3.attn.c_proj.weight").role is Role.MHA
    assert gpt2.classify("transformer.h.3.mlp.c_proj.weight").role is Role.FFN
    neox = get_family("gpt_neox")
    assert neox.classify("gpt_neox.layers.0.attention.dense.weight").role is Role.MHA
    assert neox.classify("gpt_neox.layers.0.post_attention_layernorm.weight").role is Role.FFN_NORM
    g2 = get_family("gemma2")
    assert g2.classify("model.layers.5.post_attention_layernorm.weight").role is Role.ATTN_NORM
    assert g2.classify("model.layers.5.pre_feedforward_layernorm.weight").role is Role.FFN_NORM
    llama = get_family("llama")
    assert llama.classify("model.layers.5.post_attention_layernorm.weight").role is Role.FFN_NORM
    info = llama.classify("model.layers.12.self_attn.q_proj.weight")
    assert info is not None and info.layer == 12
    assert llama.classify("model.layers.1.self_attn.q_proj.weightx") is None


def test_lookup_by_model_type_and_architecture() -> None:
    assert family_for_config({"model_type": "mistral"}).name == "llama"
    assert family_for_config({"architectures": ["Qwen2ForCausalLM"]}).name == "qwen2"
    with pytest.raises(UnknownFamily) as e:
        family_for_config({"model_type": "lama"})
    msg = str(e.value)
    assert "nearest: llama" in msg and "gpt_neox" in msg and "\n" not in msg


def test_every_family_and_model_type_has_a_pico_model() -> None:
    """A new family file is tested only through a pico model: adding the JSON without a pico config
    (lensft/pico.py PICO_CONFIGS) must fail here, naming what to add."""
    from lensft.pico import PICO_CONFIGS

    pico_types = {getattr(transformers, cls).model_type for cls, _ in PICO_CONFIGS.values()}
    for name in supported_families():
        missing = set(get_family(name).model_types) - pico_types
        assert not missing, (f"family {name!r} lists model types {sorted(missing)} with no pico model; add a config "
                             "to PICO_CONFIGS in lensft/pico.py (see CONTRIBUTING.md, 'Add a family')")
