"""Devices and dtypes end to end: LoadOptions, placement, the memory check, storage sharing, bf16 paths.

No GPU is needed: CUDA paths are plain torch and are exercised here on ``cpu`` and ``meta``;
what only a GPU can show lives in benchmarks/bench_gpu.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from lensft.checkpoints.load import load_triple
from lensft.devices import LoadOptions, MemoryEstimate, Placement, check_memory, estimate_activation_bytes, resolve_dtype
from lensft.devices.memory import weight_bytes
from lensft.devices.options import DeviceUnavailable, resolve_placement
from lensft.devices.placement import auto_budgets, device_of, model_units, plan_device_map, tied_units
from lensft.errors import InsufficientMemory, LensftError
from lensft.graft import GraftSpec, graft_model, variant_model
from lensft.handle import load_model
from lensft.probes.attention_reference import dense_attention_stats, visibility_mask
from lensft.probes.attention_stats import streaming_attention_stats
from lensft.variants import Variant

NO_GPU = not torch.cuda.is_available()


# ---------------------------------------------------------------------------------- options
def test_load_options_parse_and_refuse() -> None:
    o = LoadOptions(device=" CUDA:1 ", dtype=torch.bfloat16)
    assert o.device == "cuda:1" and o.dtype == "bfloat16" and o.torch_dtype is torch.bfloat16
    assert LoadOptions().device == "cpu" and LoadOptions().torch_dtype is None
    for bad in ({"device": "gpu"}, {"device": "cuda:x"}, {"dtype": "int8"}, {"tokens_per_batch": -1}):
        with pytest.raises(LensftError) as e:
            LoadOptions.parse(**bad)
        assert "\n" not in str(e.value)
    with pytest.raises(Exception):
        LoadOptions(dtype=torch.int8)


def test_dtype_resolution_follows_options_then_config_then_tensors() -> None:
    assert resolve_dtype(LoadOptions(dtype="float16"), {"torch_dtype": "bfloat16"}) is torch.float16
    assert resolve_dtype(LoadOptions(), {"torch_dtype": "bfloat16"}) is torch.bfloat16
    assert resolve_dtype(LoadOptions(), {"dtype": "float32"}) is torch.float32
    stored = [torch.bfloat16] * 3 + [torch.float32, torch.int64]
    assert resolve_dtype(LoadOptions(), {}, stored) is torch.bfloat16
    assert resolve_dtype(LoadOptions(), {}, []) is torch.float32


@pytest.mark.skipif(not NO_GPU, reason="checks the refusal on a machine without a GPU")
def test_gpu_devices_are_refused_without_a_gpu_and_auto_falls_back_to_cpu() -> None:
    for dev in ("cuda", "cuda:0"):
        with pytest.raises(DeviceUnavailable, match="no GPU"):
            resolve_placement(LoadOptions(device=dev))
    p = resolve_placement(LoadOptions(device="auto"))
    assert p.kind == "single" and p.device.type == "cpu"
    assert resolve_placement(LoadOptions(device="meta")).is_meta


# ---------------------------------------------------------------------------------- memory
def test_memory_check_refuses_in_one_line_with_remedies() -> None:
    est = MemoryEstimate(weights=16_000_000_000, activations=2_000_000_000, dtype=torch.float32, tokens=8192)
    cpu = Placement("single", torch.device("cpu"))
    check_memory(est, cpu, what="checkpoint x", free={"cpu": 20_000_000_000})  # fits: no error
    with pytest.raises(InsufficientMemory) as e:
        check_memory(est, cpu, what="checkpoint x", free={"cpu": 10_000_000_000})
    msg = str(e.value)
    assert "\n" not in msg and "18.00 GB" in msg and "10.00 GB free" in msg
    assert "bfloat16" in msg and "fewer or shorter prompts" in msg and "--" not in msg  # library words, no flags
    assert e.value.remedies == ("dtype", "tokens")
    gpu = Placement("single", torch.device("cuda", 0))
    with pytest.raises(InsufficientMemory) as e:
        check_memory(MemoryEstimate(10, 0, torch.bfloat16), gpu, what="m", free={"cuda:0": 5})
    assert e.value.remedies == ("auto",)
    check_memory(est, Placement("single", torch.device("meta")), what="m")  # meta needs nothing


def test_weight_and_activation_estimates_by_hand() -> None:
    metas = [((10, 4), torch.float32), ((3,), torch.float32), ((5,), torch.int64)]
    assert weight_bytes(metas, torch.bfloat16) == 40 * 2 + 3 * 2 + 5 * 8
    cfg = {"hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16,
           "vocab_size": 10}
    per_token = 2 * (4 * 8 + 2 * 4 + 2 * 1 * 4 + 3 * 16) + 4 * (2 * 4 + 2 * 1 * 4 + 8) + 10 * (2 + 4)
    assert estimate_activation_bytes(cfg, torch.bfloat16, 100) == 100 * per_token + 2 * 3 * 256 * 2048 * 4
    assert estimate_activation_bytes(cfg, torch.bfloat16, 0) == 0


def test_load_model_refuses_before_loading_when_memory_is_short(llama_triple, monkeypatch) -> None:
    import lensft.devices.memory as memory

    monkeypatch.setattr(memory, "host_available", lambda: 1000)
    loaded = []
    with monkeypatch.context() as m:
        m.setattr("transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: loaded.append(1))
        with pytest.raises(InsufficientMemory, match="checkpoint .* needs about"):
            load_model(llama_triple[Variant.BASE], LoadOptions(tokens_per_batch=512))
    assert not loaded
    triple = load_triple(short=llama_triple[Variant.SHORT], long=llama_triple[Variant.LONG])
    with pytest.raises(InsufficientMemory, match="graft short \\+ long.mha needs"):
        graft_model(triple, GraftSpec.build(mha="long", ffn="short"))
    assert not triple._loaded or not any(triple._loaded.values())  # nothing was read
    h = load_model(llama_triple[Variant.BASE], LoadOptions(check_memory=False))
    assert h.model is not None


# ---------------------------------------------------------------------------------- placement
def test_auto_device_map_fills_gpus_in_order_then_the_cpu() -> None:
    units = [("embed", 40), ("layers.0", 30), ("layers.1", 30), ("layers.2", 30), ("norm", 1), ("lm_head", 40)]
    dm = plan_device_map(units, [("cuda:0", 75), ("cuda:1", 61), ("cpu", 1000)])
    assert dm == {"embed": "cuda:0", "layers.0": "cuda:0", "layers.1": "cuda:1", "layers.2": "cuda:1",
                  "norm": "cuda:1", "lm_head": "cpu"}
    tied = plan_device_map(units[:-1] + [("lm_head", 0)], [("cuda:0", 75), ("cpu", 1000)], tied={"lm_head": "embed"})
    assert tied["lm_head"] == "cuda:0" and tied["layers.1"] == "cpu"
    with pytest.raises(InsufficientMemory, match="do not fit|does not fit"):
        plan_device_map(units, [("cuda:0", 50), ("cpu", 100)])
    assert device_of("layers.1.mlp.up.weight", dm) == "cuda:1" and device_of("lm_head.weight", dm) == "cpu"
    b = auto_budgets({"cuda:1": 2 << 30, "cuda:0": 4 << 30, "cpu": 10 << 30}, reserve_first_gpu=1 << 30)
    assert [d for d, _ in b] == ["cuda:0", "cuda:1", "cpu"] and b[0][1] < b[1][1] + (1 << 30)


def test_model_units_follow_execution_order_and_ties(pico_triples) -> None:
    h = load_model(pico_triples["gemma"][Variant.BASE], LoadOptions(device="meta"))  # tied embeddings
    units = model_units(h.model, h.family.modules.layers)
    names = [u for u, _ in units]
    layer_units = [u for u in names if u.startswith(h.family.modules.layers + ".")]
    assert layer_units == [f"{h.family.modules.layers}.{i}" for i in range(h.n_layers)]
    assert names.index(layer_units[0]) > 0  # the embedding comes first
    assert sum(s for _, s in units) == sum(p.numel() * p.element_size() for p in h.model.parameters()) + \
        sum(b.numel() * b.element_size() for b in h.model.buffers())
    tied = tied_units(h.model, units, h.family.modules.layers)
    assert tied and all(names.index(k) > names.index(v) for k, v in tied.items())


# ---------------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("dtype", [None, "float32", "bfloat16", "float16"])
def test_in_memory_grafts_share_storage_in_every_dtype(llama_triple, dtype) -> None:
    triple = load_triple(**{v.value: p for v, p in llama_triple.items()})
    o = LoadOptions(dtype=dtype)
    graft = graft_model(triple, GraftSpec.build(mha="long", ffn="short"), o)
    short, long = variant_model(triple, "short", o), variant_model(triple, "long", o)
    band = graft_model(triple, GraftSpec.build(mha="long", ffn="short", layers="0:1"), o)
    want = o.torch_dtype or torch.float32
    assert graft.dtype == short.dtype == want and graft.provenance.dtype == str(want).replace("torch.", "")
    gp, sp, lp, bp = (dict(m.model.named_parameters()) for m in (graft, short, long, band))
    for name, p in gp.items():
        donor = lp if ".self_attn." in name else sp  # the pico llama's attention tensors (test oracle)
        assert p.data_ptr() == donor[name].data_ptr(), name
        assert p.dtype == want
    assert bp["model.layers.1.self_attn.q_proj.weight"].data_ptr() == sp["model.layers.1.self_attn.q_proj.weight"].data_ptr()
    ids = torch.randint(0, 200, (2, 9))
    with torch.no_grad():  # a variant built in memory is the checkpoint loaded by transformers, bit for bit
        assert_close(short.model(ids).logits, load_model(llama_triple[Variant.SHORT], o).model(ids).logits,
                     rtol=0, atol=0)


def test_blends_are_computed_from_stored_values_then_cast(llama_triple) -> None:
    triple = load_triple(short=llama_triple[Variant.SHORT], long=llama_triple[Variant.LONG])
    g = graft_model(triple, GraftSpec.build(mha="long", ffn="short", alpha=0.25), LoadOptions(dtype="bfloat16"))
    name = "model.layers.0.self_attn.q_proj.weight"
    want = torch.lerp(triple["short"].get(name), triple["long"].get(name), 0.25).to(torch.bfloat16)
    assert torch.equal(dict(g.model.named_parameters())[name], want)


def test_meta_device_builds_structure_without_data(llama_triple) -> None:
    h = load_model(llama_triple[Variant.BASE], LoadOptions(device="meta", dtype="bfloat16"))
    assert all(p.is_meta for p in h.model.parameters()) and h.input_device.type == "meta"
    assert h.dtype == torch.bfloat16 and h.provenance.device == "meta"
    triple = load_triple(short=llama_triple[Variant.SHORT], long=llama_triple[Variant.LONG])
    g = graft_model(triple, GraftSpec.build(mha="long", ffn="short", alpha=0.5), LoadOptions(device="meta"))
    assert all(p.is_meta for p in g.model.parameters()) and g.input_device.type == "meta"
    assert not any(triple.is_cached(v, "model.norm.weight") for v in ("short", "long"))  # nothing read


def test_auto_on_a_machine_without_gpu_is_the_cpu(llama_triple) -> None:
    if not NO_GPU:
        pytest.skip("a GPU is visible")
    h = load_model(llama_triple[Variant.BASE], LoadOptions(device="auto"))
    assert h.input_device.type == "cpu" and h.provenance.device == "cpu"
    triple = load_triple(short=llama_triple[Variant.SHORT], long=llama_triple[Variant.LONG])
    assert graft_model(triple, GraftSpec.build(mha="long", ffn="short"), LoadOptions(device="auto")).input_device.type == "cpu"


# ---------------------------------------------------------------------------------- kernel dtype
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_streamed_statistics_accumulate_in_float32_for_half_inputs(dtype) -> None:
    """Half-precision q/k/v (as a bf16 model hands them over) give the statistics of those exact
    values to float32 accuracy: the kernel accumulates in float32, it does not round to the
    input dtype on the way."""
    b, h, hkv, n, d = 2, 4, 2, 300, 16
    q = (torch.randn(b, h, n, d) * 2).to(dtype)
    k = (torch.randn(b, hkv, n, d) * 2).to(dtype)
    v = torch.randn(b, hkv, n, d).to(dtype)
    st = streaming_attention_stats(q, k, v, key_spans={"a": (5, 40)}, chunk_q=64, chunk_k=96)
    assert st.entropy.dtype == torch.float32 and st.output.dtype == torch.float32
    kk, vv = k.double().repeat_interleave(2, 1), v.double().repeat_interleave(2, 1)
    s = (q.double() @ kk.transpose(-1, -2)) * d**-0.5
    s = s.masked_fill(~visibility_mask(n, n), -math.inf)
    w = s.softmax(-1)
    ref = dense_attention_stats(w, key_spans={"a": (5, 40)}, visible=visibility_mask(n, n).expand(b, h, n, n))
    tol = dict(atol=2e-5, rtol=2e-5)
    assert_close(st.entropy, ref.entropy, **tol)
    assert_close(st.distance, ref.distance, atol=2e-3, rtol=2e-5)  # positions up to 300: float32 rounding
    assert_close(st.sink, ref.sink, **tol)
    assert_close(st.span_mass, ref.span_mass, **tol)
    assert_close(st.output, (w @ vv).float(), **tol)


def test_attention_spread_on_a_bfloat16_model_is_close_to_float32(llama_triple) -> None:
    """The probe runs end to end on a bf16 model; its entropies differ from the fp32 model's only
    by what bf16 weights and activations change (stated tolerance: 0.05 nats)."""
    from lensft.probes.registry import get_probe
    from lensft.prompts.io import make_prompt_set
    from lensft.prompts.schema import TextItem

    ps = make_prompt_set("t", "1", "text", [TextItem(id=str(i), text="Alice went to Lyon and then home. " * (i + 2))
                                             for i in range(3)])
    probe = get_probe("attention_spread")
    r32 = probe.run(load_model(llama_triple[Variant.BASE]), ps, {"batch_size": 2})
    r16 = probe.run(load_model(llama_triple[Variant.BASE], LoadOptions(dtype="bfloat16")), ps, {"batch_size": 2})
    assert r16.model.dtype == "bfloat16"
    a, b = torch.tensor(r32.array("entropy")), torch.tensor(r16.array("entropy"))
    assert_close(b, a, atol=0.05, rtol=0)
    assert not torch.equal(a, b)  # bf16 really ran
