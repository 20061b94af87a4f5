"""Reliability, properties (hypothesis): invariants of grafts and prompt files over random inputs.

Grafts: for random role -> source maps (``--mha``, ``--ffn``, ``--host``, ``--role`` overrides of
any role), layer bands, norm policies and alphas, every tensor of the graft -- in memory and as
written by ``lensft swap`` -- is the tensor of the checkpoint an independent oracle names (the
paper's swap rule written out for Llama tensor names, not lensft's family map or GraftSpec), or the
interpolation (1 - alpha) * host + alpha * source computed here in float64; alpha 0 is the host bit
for bit; the manifest names the oracle's source for every tensor.

Prompt files: random valid JSONL files round-trip through ``read_prompt_set``; a random corruption
of one line gives one ``PromptSetError`` line naming that line's number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from lensft.checkpoints.load import load_triple
from lensft.cli.app import main
from lensft.errors import PromptSetError
from lensft.graft import GraftSpec, apply_graft, plan_graft
from lensft.prompts import read_prompt_set, write_prompt_set
from lensft.variants import Role, Variant

VARIANTS = ["base", "short", "long"]
ROLES = [r.value for r in Role]
N_LAYERS = 2  # the llama pico model


def _oracle_role(name: str) -> tuple[str, int | None]:
    """Role and layer of a Llama tensor name, written out independently of the family map."""
    m = re.match(r"model\.layers\.(\d+)\.(.*)$", name)
    if m is None:
        return {"model.embed_tokens.weight": "embed", "model.norm.weight": "final_norm",
                "lm_head.weight": "lm_head"}[name], None
    rest = m.group(2)
    role = ("mha" if rest.startswith("self_attn.") else "ffn" if rest.startswith("mlp.") else
            "attn_norm" if rest.startswith("input_layernorm.") else
            "ffn_norm" if rest.startswith("post_attention_layernorm.") else None)
    assert role is not None, name
    return role, int(m.group(1))


def _oracle_source(name: str, spec: dict) -> str:
    """The checkpoint the swap rule names for ``name``: an override wins; outside the band every
    block stays with the host; MHA / FFN from their sources; norms with their block when moved."""
    role, layer = _oracle_role(name)
    if role in spec["overrides"]:
        return spec["overrides"][role]
    band = spec["band"]
    if layer is not None and band is not None and not band[0] <= layer < band[1]:
        return spec["host"]
    if role == "mha" or (role == "attn_norm" and spec["norms"] == "module"):
        return spec["mha"]
    if role == "ffn" or (role == "ffn_norm" and spec["norms"] == "module"):
        return spec["ffn"]
    return spec["host"]


def _check_tensor(name: str, got: torch.Tensor, spec: dict, src: dict[str, dict[str, torch.Tensor]]) -> None:
    source, host, alpha = _oracle_source(name, spec), spec["host"], spec["alpha"]
    h = src[host][name]
    if source == host or alpha == 0.0:
        assert torch.equal(got, h), f"{name}: not the host's tensor bit for bit"
    elif alpha == 1.0:
        assert torch.equal(got, src[source][name]), f"{name}: not {source}'s tensor bit for bit"
    else:
        want = (1.0 - alpha) * h.double() + alpha * src[source][name].double()
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6, msg=f"{name}: not the lerp")


specs = st.fixed_dictionaries({
    "host": st.sampled_from(VARIANTS),
    "mha": st.sampled_from(VARIANTS),
    "ffn": st.sampled_from(VARIANTS),
    "norms": st.sampled_from(["host", "module"]),
    "band": st.sampled_from([None, (0, 1), (1, 2), (0, 2)]),
    "alpha": st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0, allow_nan=False)),
    "overrides": st.dictionaries(st.sampled_from(ROLES), st.sampled_from(VARIANTS), max_size=3),
})

_LOADED: dict[str, dict[str, dict[str, torch.Tensor]]] = {}


def _sources(llama_triple) -> dict[str, dict[str, torch.Tensor]]:  # noqa: ANN001
    key = str(llama_triple[Variant.BASE])
    if key not in _LOADED:
        _LOADED[key] = {v.value: load_file(p / "model.safetensors") for v, p in llama_triple.items()}
    return _LOADED[key]


def _spec(d: dict) -> GraftSpec:
    band = None if d["band"] is None else f"{d['band'][0]}:{d['band'][1]}"
    return GraftSpec.build(mha=d["mha"], ffn=d["ffn"], host=d["host"], norms=d["norms"], layers=band,
                           alpha=d["alpha"], overrides=d["overrides"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=specs)
def test_in_memory_graft_follows_the_rule(llama_triple, d: dict) -> None:
    triple = load_triple(**{v.value: p for v, p in llama_triple.items()})
    plan = plan_graft(_spec(d), triple.family, triple.n_layers, triple.metadata())
    src = _sources(llama_triple)
    out = apply_graft(plan, {Variant(k): v for k, v in src.items()})
    assert set(out) == set(src[d["host"]])
    for name, t in out.items():
        _check_tensor(name, t, d, src)
    for name, entry in plan.sources_by_tensor().items():
        want = _oracle_source(name, d)
        if want == d["host"] or d["alpha"] == 0.0:
            assert entry["source"] in (d["host"], want), name
        else:
            assert entry["source"] == want, name


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=specs)
def test_swap_writes_what_the_rule_names(llama_triple, tmp_path_factory, d: dict) -> None:
    """The same through the real command line: the written checkpoint and its manifest."""
    out = tmp_path_factory.mktemp("swap") / "g"
    t = {v.value: str(p) for v, p in llama_triple.items()}
    argv = ["swap", "--base", t["base"], "--short", t["short"], "--long", t["long"], "--mha", d["mha"],
            "--ffn", d["ffn"], "--host", d["host"], "--norms", d["norms"], "--alpha", repr(d["alpha"]), "--out", str(out)]
    if d["band"] is not None:
        argv += ["--layers", f"{d['band'][0]}:{d['band'][1]}"]
    for role, v in d["overrides"].items():
        argv += ["--role", f"{role}={v}"]
    assert main(argv) == 0
    src = _sources(llama_triple)
    written = load_file(out / "model.safetensors")
    assert set(written) == set(src[d["host"]])
    for name, tensor in written.items():
        _check_tensor(name, tensor, d, src)
    manifest = json.loads((out / "lensft_manifest.json").read_text())
    for name, entry in manifest["tensors"].items():
        want = _oracle_source(name, d)
        if want != d["host"] and d["alpha"] > 0.0:
            assert entry["source"] == want, name


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=specs)
def test_alpha_zero_is_the_host_bit_for_bit(llama_triple, d: dict) -> None:
    d = {**d, "alpha": 0.0}
    triple = load_triple(**{v.value: p for v, p in llama_triple.items()})
    src = _sources(llama_triple)
    out = apply_graft(plan_graft(_spec(d), triple.family, triple.n_layers, triple.metadata()),
                      {Variant(k): v for k, v in src.items()})
    host = src[d["host"]]
    assert set(out) == set(host)
    assert all(torch.equal(out[n], host[n]) and out[n].dtype == host[n].dtype for n in host)


# --- prompt files -----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@st.composite
def text_items(draw) -> dict:  # noqa: ANN001
    text = draw(_text)
    spans = []
    for i in range(draw(st.integers(0, 2))):
        a = draw(st.integers(0, len(text)))
        b = draw(st.integers(a, len(text)))
        spans.append({"name": f"s{i}", "start": a, "end": b})
    return {"text": text, "spans": spans}


@st.composite
def task_items(draw) -> dict:  # noqa: ANN001
    return {"task": draw(st.sampled_from(["recall", "arithmetic"])), "prompt": draw(_text), "answer": draw(_text)}


@st.composite
def prompt_files(draw) -> tuple[str, list[dict]]:  # noqa: ANN001
    kind = draw(st.sampled_from(["text", "task"]))
    items = draw(st.lists(text_items() if kind == "text" else task_items(), min_size=1, max_size=6))
    return kind, [{"id": f"item-{i}", **it} for i, it in enumerate(items)]


def _write(path: Path, kind: str, items: list[dict]) -> list[str]:
    lines = [json.dumps({"lensft_prompt_set": 1, "name": "p", "version": "1", "kind": kind}),
             *(json.dumps(it) for it in items)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=prompt_files())
def test_valid_prompt_files_round_trip(tmp_path_factory, f: tuple[str, list[dict]]) -> None:
    kind, items = f
    d = tmp_path_factory.mktemp("prompts")
    _write(d / "p.jsonl", kind, items)
    ps = read_prompt_set(d / "p.jsonl")
    assert ps.kind == kind and len(ps.items) == len(items)
    for item, want in zip(ps.items, items):
        got = item.model_dump()
        assert {k: got[k] for k in want} == want
    write_prompt_set(ps, d / "again.jsonl")
    assert read_prompt_set(d / "again.jsonl") == ps


def _corrupt(line: str, how: str, kind: str) -> str:
    obj = json.loads(line)
    if how == "truncated JSON":
        return line[: max(1, len(line) // 2)]
    if how == "missing field":
        obj.pop("text" if kind == "text" else "prompt")
    elif how == "wrong type":
        obj["id"] = {"not": "a string"}
    elif how == "span outside the text":
        obj.setdefault("spans", []).append({"name": "far", "start": 0, "end": len(obj.get("text", "")) + 5})
        if kind == "task":
            obj.pop("answer")
    elif how == "not an object":
        return json.dumps([obj])
    return json.dumps(obj)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=prompt_files(), data=st.data())
def test_invalid_prompt_files_name_the_line(tmp_path_factory, f: tuple[str, list[dict]], data: st.DataObject) -> None:
    kind, items = f
    path = tmp_path_factory.mktemp("prompts") / "bad.jsonl"
    lines = _write(path, kind, items)
    i = data.draw(st.integers(0, len(lines) - 1), label="line index")
    how = data.draw(st.sampled_from(["truncated JSON", "missing field", "wrong type", "span outside the text",
                                     "not an object"] + (["unknown kind"] if i == 0 else [])), label="corruption")
    if i == 0:
        header = json.loads(lines[0])
        lines[0] = (json.dumps({**header, "kind": "poem"}) if how == "unknown kind" else
                    lines[0][: len(lines[0]) // 2] if how == "truncated JSON" else json.dumps({**header, "name": 5}))
    else:
        lines[i] = _corrupt(lines[i], how, kind)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(PromptSetError) as e:
        read_prompt_set(path)
    msg = str(e.value)
    assert "\n" not in msg and f"{path}:{i + 1}:" in msg, (how, msg)
    assert path.read_bytes() == before
