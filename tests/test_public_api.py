"""The top-level public API resolves every name it advertises."""

from __future__ import annotations

import lensft


def test_every_public_name_resolves() -> None:
    for name in lensft.__all__:
        assert getattr(lensft, name) is not None, name


def test_public_api_round_trip(llama_triple, tmp_path) -> None:
    triple = lensft.load_triple(**{v.value: p for v, p in llama_triple.items()})
    graft = lensft.graft_model(triple, lensft.GraftSpec.build(mha="long", ffn="short"))
    assert graft.provenance.graft["mha"] == "long"
    from importlib import resources

    ps = lensft.read_prompt_set(resources.files("lensft.probes") / "data" / "tasks_default.jsonl")
    res = lensft.get_probe("short_tasks").run(graft, ps, None)
    back = lensft.load_result(lensft.save_result(res, tmp_path / "r.json"))
    assert back.summary == res.summary and back.model.label == graft.label
