"""The top-level public API resolves every name it advertises."""

from __future__ import annotations

import lensft


def test_every_public_name_resolves_to_its_defining_object() -> None:
    """Oracle: the object of that name in the module the API table names, imported directly."""
    from importlib import import_module

    import pytest

    assert set(lensft.__all__) == set(lensft._API) | {"__version__"} and set(dir(lensft)) == set(lensft.__all__)
    for name, module in lensft._API.items():
        got = getattr(lensft, name)
        assert got is getattr(import_module(module), name), name
        assert callable(got), f"{name} is neither a class nor a function"
        assert getattr(got, "__module__", module).startswith("lensft."), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lensft.nope  # noqa: B018


def test_public_api_round_trip(llama_triple, tmp_path) -> None:
    triple = lensft.load_triple(**{v.value: p for v, p in llama_triple.items()})
    graft = lensft.graft_model(triple, lensft.GraftSpec.build(mha="long", ffn="short"))
    assert graft.provenance.graft["mha"] == "long"
    from importlib import resources

    ps = lensft.read_prompt_set(resources.files("lensft.probes") / "data" / "tasks_default.jsonl")
    res = lensft.get_probe("short_tasks").run(graft, ps, None)
    back = lensft.load_result(lensft.save_result(res, tmp_path / "r.json"))
    assert back.summary == res.summary and back.model.label == graft.label
