"""Devices and dtypes on an accelerator: loaders, storage sharing, logits, the streamed kernel, batching,
the memory check and the command line, each against an independent oracle on the CPU.

Every test runs on ``ACCEL``: ``cuda`` where torch sees a GPU, else ``cpu``. On a machine without a
GPU they check their own logic (and the CPU paths); on a GPU machine they are the evidence that
issue 11's device and dtype work runs on CUDA (``benchmarks/gpu_check.sh`` runs them there).
Pico models only, so the whole file stays a few seconds on the CPU.

Tolerances (stated once, used below):

- float32 on the accelerator vs float32 on the CPU: the same arithmetic in another summation
  order, 1e-4 on logits and 1e-5 on attention statistics (nats, or tokens for the distance).
- bfloat16: one rounding of a value costs at most ``2**-9`` of it (``BF16_U``); a pico forward
  pass rounds each activation a few times in series over 2 layers, so logits stay within
  ``16 * BF16_U`` of the logit scale of the oracle (the float32 model with its weights rounded to
  bfloat16: the weight rounding is then common to both sides and only activation rounding
  differs; measured on the CPU: 0.004 to 0.015 of the scale). Batched vs one-at-a-time runs differ
  only in how kernels tile their sums: FFN statistics and log-probs within ``16 * BF16_U`` of their
  scale, attention entropies within 0.03 nats (scores of the sharp pico model are O(10), a relative
  ``2**-8`` error moves each by < 0.04 and an entropy moves by at most twice the largest score
  error, mostly cancelling). Attention entropies against the dense float64 oracle: see
  :func:`test_attention_spread_on_the_device_matches_a_dense_float64_oracle`.
"""

from __future__ import annotations

import gc
import math
import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from lensft.checkpoints.load import load_triple
from lensft.devices import LoadOptions, available_memory, resolve_placement
from lensft.errors import InsufficientMemory
from lensft.graft import GraftSpec, graft_model, variant_model
from lensft.handle import ModelHandle, load_model
from lensft.probes.attention_reference import dense_attention_stats, visibility_mask
from lensft.probes.attention_stats import streaming_attention_stats
from lensft.probes.registry import get_probe
from lensft.prompts.io import make_prompt_set
from lensft.prompts.schema import NeedleItem, Span, TaskItem, TextItem
from lensft.results import load_result
from lensft.variants import Role, Variant

ACCEL = "cuda" if torch.cuda.is_available() else "cpu"
DEV = torch.device("cuda", torch.cuda.current_device()) if ACCEL == "cuda" else torch.device("cpu")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BF16_U = 2.0**-9
ENTROPY_BF16_TOL = 0.03  # nats

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def sharp_triple(tmp_path_factory) -> dict[Variant, Path]:
    """A pico llama triple with weights 15x the usual scale (initializer_range 0.3): attention
    scores of O(10), so patterns are sharp (mean normalised entropy about 0.5, not the near-uniform
    1.0 of a standard pico model) and the short and long variants' entropies differ by about 0.2
    nats; agreement to 1e-5 then says something."""
    from lensft.pico import build_pico_triple

    return build_pico_triple(tmp_path_factory.mktemp("sharp"), "llama", seed=11, initializer_range=0.3)


def _triple(paths: dict[Variant, Path]):
    return load_triple(**{v.value: p for v, p in paths.items()})


def _tensors(h: ModelHandle) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the model by runtime name (tied ones under each name)."""
    return {**dict(h.model.named_parameters(remove_duplicate=False)), **dict(h.model.named_buffers(remove_duplicate=False))}


def _text_set(lengths=(3, 11, 6, 1, 9)):
    items = []
    for i, n in enumerate(lengths):
        text = " ".join(["Alice went to Lyon and then home."] * n)
        spans = [Span(name="first", start=0, end=12)] + ([Span(name="tail", start=len(text) - 10, end=len(text))] if i % 2 else [])
        items.append(TextItem(id=f"t{i}", text=text, spans=spans))
    return make_prompt_set("mixed", "1", "text", items)


def _task_set():
    return make_prompt_set("tasks", "1", "task", [
        TaskItem(id="a", task="arith", prompt="What is 3 plus 4?", answer="7"),
        TaskItem(id="b", task="fact", prompt="What is the capital of France?", answer="Paris"),
        TaskItem(id="c", task="fact", prompt="Where was Bob born?", answer="Turin"),
        TaskItem(id="d", task="cloze", prompt="The cat sleeps on the warm", answer="mat", choices=["mat", "fox", "sky"], label=0),
        TaskItem(id="e", task="cloze", prompt="Alice went to", answer="Lyon", choices=["Lyon", "the moon"], label=0),
    ])


# ---------------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_every_loader_puts_every_tensor_on_the_device_in_the_dtype(llama_triple, dtype: str) -> None:
    o = LoadOptions(device=ACCEL, dtype=dtype)
    triple = _triple(llama_triple)
    handles = {"load_model": load_model(llama_triple[Variant.SHORT], o),
               "variant_model": variant_model(triple, "short", o),
               "graft_model": graft_model(triple, GraftSpec.build(mha="long", ffn="short"), o)}
    ids = torch.randint(4, 300, (2, 12))
    logits = {}
    for how, h in handles.items():
        for name, p in h.model.named_parameters():
            assert p.device == DEV and p.dtype == DTYPES[dtype], (how, name, p.device, p.dtype)
        for name, b in h.model.named_buffers():
            assert b.device == DEV, (how, name, b.device)
        assert h.input_device == DEV and h.dtype == DTYPES[dtype], how
        assert h.provenance.device == str(DEV) and h.provenance.dtype == dtype, how
        with torch.no_grad():
            logits[how] = h.model(ids.to(h.input_device)).logits
        assert logits[how].device == DEV and bool(torch.isfinite(logits[how]).all()), how
    # the variant built in memory from the triple's tensors is the checkpoint transformers loads, bit for bit
    assert_close(logits["variant_model"], logits["load_model"], rtol=0, atol=0)
    assert not torch.equal(logits["graft_model"], logits["load_model"])  # the graft really took long's attention


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("family", ["llama", "gemma", "gpt2", "qwen3"])
def test_in_memory_graft_shares_storage_with_its_host_and_donor(pico_triples, family: str, dtype: str) -> None:
    """``short + long.mha``: every tensor the family map gives role ``mha`` is the long variant's
    tensor (same storage), every other one the short variant's; values are the checkpoint's, cast."""
    triple = _triple(pico_triples[family])
    o = LoadOptions(device=ACCEL, dtype=dtype)
    graft = _tensors(graft_model(triple, GraftSpec.build(mha="long", ffn="short"), o))
    host = _tensors(variant_model(triple, "short", o))
    donor = _tensors(variant_model(triple, "long", o))
    fam = triple.family
    n_mha = n_other = 0
    for name in triple["short"].tensors:
        info = fam.classify(name)
        assert info is not None, name
        rt = fam.runtime_name(name)
        g, h, d = graft[rt], host[rt], donor[rt]
        mha = info.role == Role.MHA
        same, other = (d, h) if mha else (h, d)
        assert g.data_ptr() == same.data_ptr() and g.data_ptr() != other.data_ptr(), (name, info.role)
        assert g.device == DEV and (g.dtype == DTYPES[dtype] or not g.is_floating_point()), name
        want = triple["long" if mha else "short"].get(name)
        want = want.to(DTYPES[dtype]) if want.is_floating_point() else want
        assert torch.equal(g.detach().cpu(), want), name
        n_mha += mha
        n_other += not mha
    assert n_mha >= 4 * triple.n_layers // 2 and n_other > 0  # q/k/v/o at least (fused in gpt2: 2 per layer)


# ---------------------------------------------------------------------------------- logits
@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "qwen3"])
def test_logits_on_the_device_match_the_cpu(pico_triples, family: str) -> None:
    path = pico_triples[family][Variant.SHORT]
    ids = torch.randint(4, 300, (2, 40))  # longer than gemma2's pico sliding window (16)
    cpu32 = load_model(path, LoadOptions(device="cpu", dtype="float32"))
    acc32 = load_model(path, LoadOptions(device=ACCEL, dtype="float32"))
    acc16 = load_model(path, LoadOptions(device=ACCEL, dtype="bfloat16"))
    with torch.no_grad():
        ref32 = cpu32.model(ids).logits
        assert_close(acc32.model(ids.to(acc32.input_device)).logits.cpu(), ref32, atol=1e-4, rtol=0)
        for p in cpu32.model.parameters():  # oracle: float32 arithmetic on the bf16-rounded weights
            p.copy_(p.to(torch.bfloat16).float())
        ref16 = cpu32.model(ids).logits
        got = acc16.model(ids.to(acc16.input_device)).logits.float().cpu()
    scale = float(ref16.abs().max())
    err = float((got - ref16).abs().max())
    assert err <= 16 * BF16_U * scale, (err, scale)
    assert float((got - ref32).abs().max()) > 0  # bf16 really ran


# ---------------------------------------------------------------------------------- streamed kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_streamed_statistics_on_the_device_accumulate_in_float32(dtype: torch.dtype) -> None:
    """q/k/v on the accelerator in ``dtype`` give float32 statistics on the same device, equal to a
    float64 dense oracle on the CPU of those exact input values."""
    b, h, hkv, n, d = 2, 4, 2, 700, 16
    q = (torch.randn(b, h, n, d) * 2).to(dtype)
    k = (torch.randn(b, hkv, n, d) * 2).to(dtype)
    v = torch.randn(b, hkv, n, d).to(dtype)
    st = streaming_attention_stats(q.to(DEV), k.to(DEV), v.to(DEV), key_spans={"a": (5, 40)}, chunk_q=128, chunk_k=256,
                                   sliding_window=500)
    for name in ("entropy", "distance", "sink", "n_visible", "output"):
        t = getattr(st, name)
        assert t.device == DEV and t.dtype == torch.float32, name
    vis = visibility_mask(n, n, sliding_window=500)
    kk, vv = k.double().repeat_interleave(2, 1), v.double().repeat_interleave(2, 1)
    s = ((q.double() @ kk.transpose(-1, -2)) * d**-0.5).masked_fill(~vis, -math.inf)
    w = s.softmax(-1)
    ref = dense_attention_stats(w, key_spans={"a": (5, 40)}, visible=vis.expand(b, h, n, n))
    # Float32 accumulation on an H200 (2026-11-26): max |error| 3.2e-5 nats, in 3 of 5,600 rows, the
    # sharpest ones (entropy near 0, where the log-sum-exp cancels); on the CPU 2e-7. The bound is 1e-4.
    assert_close(st.entropy.cpu(), ref.entropy, atol=1e-4, rtol=2e-5)
    assert_close(st.distance.cpu(), ref.distance, atol=5e-3, rtol=2e-5)  # positions up to 700: float32 rounding
    assert_close(st.sink.cpu(), ref.sink, atol=1e-4, rtol=2e-5)
    assert_close(st.span_mass.cpu(), ref.span_mass, atol=1e-4, rtol=2e-5)
    assert_close(st.output.cpu(), (w @ vv).float(), atol=1e-4, rtol=2e-5)


@pytest.fixture
def kernel_calls(monkeypatch) -> list[dict]:
    """Record the device and dtype of every call of the streamed statistics inside the kernel."""
    import lensft.probes.attention_kernel as ak

    calls: list[dict] = []
    real = ak.streaming_attention_stats

    def spy(query, key, value=None, **kw):
        st = real(query, key, value, **kw)
        calls.append({"q_device": query.device, "q_dtype": query.dtype, "device": st.entropy.device,
                      "dtypes": {st.entropy.dtype, st.distance.dtype, st.sink.dtype, st.span_mass.dtype}})
        return st

    monkeypatch.setattr(ak, "streaming_attention_stats", spy)
    return calls


def test_attention_spread_on_the_device_equals_the_cpu_in_float32(sharp_triple, kernel_calls) -> None:
    path = sharp_triple[Variant.LONG]
    probe = get_probe("attention_spread")
    cpu = probe.run(load_model(path, LoadOptions(device="cpu", dtype="float32")), _text_set(), {"batch_size": 2})
    kernel_calls.clear()
    h = load_model(path, LoadOptions(device=ACCEL, dtype="float32"))
    acc = probe.run(h, _text_set(), {"batch_size": 2})
    assert acc.model.device == str(DEV) and acc.coords == cpu.coords and acc.records == cpu.records
    assert len(kernel_calls) == h.n_layers * 3  # 5 prompts in batches of 2
    assert all(c["q_device"] == DEV and c["device"] == DEV and c["dtypes"] == {torch.float32} for c in kernel_calls)
    for name in ("entropy_per_prompt", "norm_entropy_per_prompt", "distance_per_prompt", "sink_per_prompt",
                 "span_mass_per_prompt"):
        a, b = torch.tensor(cpu.array(name)), torch.tensor(acc.array(name))
        assert torch.equal(torch.isnan(a), torch.isnan(b)), name
        assert_close(b[~torch.isnan(b)], a[~torch.isnan(a)], atol=1e-5, rtol=1e-5, msg=name)


_ORACLE = "lensft_test_dense_oracle"
_ORACLE_ENTROPY: list[torch.Tensor] = []


def _dense_oracle_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention-interface oracle for one causal unpadded prompt: the dense float64 softmax of the
    q/k the model hands over (bf16 ones as they are), its entropy per head (nats, mean over queries)
    recorded in ``_ORACLE_ENTROPY``, and the output ``p @ v`` cast to the model dtype (as the
    lensft kernel returns it, so later layers see the same inputs on both sides)."""
    g = query.shape[1] // key.shape[1]
    k, v = key.double().repeat_interleave(g, 1), value.double().repeat_interleave(g, 1)
    s = (query.double() @ k.transpose(-1, -2)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    s = s.masked_fill(~visibility_mask(s.shape[-2], s.shape[-1]).to(s.device), -math.inf)
    p = s.softmax(-1)
    _ORACLE_ENTROPY.append(torch.special.entr(p).sum(-1).mean(-1)[0].cpu())
    return (p @ v).to(query.dtype).transpose(1, 2).contiguous(), None


@torch.no_grad()
def _oracle_entropy(path: Path, options: LoadOptions, texts: list[str]) -> torch.Tensor:
    """``[prompt, layer, head]`` entropies from :func:`_dense_oracle_attention`, one prompt at a time."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_ORACLE, _dense_oracle_attention)
    AttentionMaskInterface.register(_ORACLE, sdpa_mask)
    h = load_model(path, options, attn_implementation=_ORACLE)
    out = []
    for text in texts:
        _ORACLE_ENTROPY.clear()
        ids = torch.tensor([h.tokenizer(text)["input_ids"]], device=h.input_device)
        h.model(input_ids=ids, use_cache=False)
        assert len(_ORACLE_ENTROPY) == h.n_layers
        out.append(torch.stack(_ORACLE_ENTROPY))
    return torch.stack(out)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_spread_on_the_device_matches_a_dense_float64_oracle(sharp_triple, kernel_calls, dtype: str) -> None:
    """The probe's entropies on the accelerator equal the dense float64 softmax entropies of the same
    model's q/k: to 1e-5 nats in float32; in bfloat16 to 2e-3 nats (the kernel and the oracle both
    hand bf16-rounded outputs to the next layer; a float32-vs-float64 difference can flip a rare
    rounding there, 2**-8 of one activation). The kernel gets q/k in the model dtype on the device
    and returns float32 statistics there."""
    path = sharp_triple[Variant.SHORT]
    ps = _text_set((2, 9, 5))
    o = LoadOptions(device=ACCEL, dtype=dtype)
    res = get_probe("attention_spread").run(load_model(path, o), ps, {"batch_size": 2})
    assert res.model.dtype == dtype and res.model.device == str(DEV)
    assert kernel_calls and all(c["q_device"] == DEV and c["q_dtype"] == DTYPES[dtype] and c["device"] == DEV
                                and c["dtypes"] == {torch.float32} for c in kernel_calls)
    got = torch.tensor(res.array("entropy_per_prompt"))[:, res.coords["phase"].index("all")]
    want = _oracle_entropy(path, o, [it.text for it in ps.items])
    assert_close(got, want, atol=1e-5 if dtype == "float32" else 2e-3, rtol=0)
    norm = torch.tensor(res.array("norm_entropy"))
    assert float(norm[norm == norm].mean()) < 0.8  # the planted sharp attention is far from uniform


# ---------------------------------------------------------------------------------- device auto
@pytest.mark.parametrize("family", ["llama", "gemma"])  # gemma: a head tied to the embedding
def test_device_auto_puts_the_whole_model_on_the_accelerator(pico_triples, family: str) -> None:
    """With one GPU (or none) ``auto`` is that GPU (or the CPU) for every tensor, and probes run."""
    paths = pico_triples[family]
    o = LoadOptions(device="auto", dtype="float32")
    assert resolve_placement(o).device == DEV
    h = load_model(paths[Variant.BASE], o)
    g = graft_model(_triple(paths), GraftSpec.build(mha="long", ffn="short"), o)
    for m in (h, g):
        assert all(t.device == DEV for t in _tensors(m).values()), [n for n, t in _tensors(m).items() if t.device != DEV]
        assert m.input_device == DEV
    probe = get_probe("attention_spread")
    auto = probe.run(h, _text_set((2, 5)), {"batch_size": 2})
    ref = probe.run(load_model(paths[Variant.BASE], LoadOptions(device=ACCEL, dtype="float32")), _text_set((2, 5)),
                    {"batch_size": 2})
    assert_close(torch.tensor(auto.array("entropy")), torch.tensor(ref.array("entropy")), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------- batching
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_probes_equal_one_at_a_time_on_the_device(sharp_triple, dtype: str) -> None:
    h = load_model(sharp_triple[Variant.SHORT], LoadOptions(device=ACCEL, dtype=dtype))
    bf16 = dtype == "bfloat16"
    ent_tol = dict(atol=ENTROPY_BF16_TOL if bf16 else 1e-5, rtol=0 if bf16 else 1e-5)
    spread = get_probe("attention_spread")
    one, four = (spread.run(h, _text_set(), {"batch_size": bs, "chunk_q": 8, "chunk_k": 16}) for bs in (1, 4))
    assert four.records == one.records
    for name in ("entropy_per_prompt", "sink_per_prompt", "span_mass_per_prompt"):
        a, b = torch.tensor(one.array(name)), torch.tensor(four.array(name))
        assert torch.equal(torch.isnan(a), torch.isnan(b)), name
        assert_close(b[~torch.isnan(b)], a[~torch.isnan(a)], **ent_tol, msg=name)

    ffn = get_probe("ffn_activations")
    f1, f4 = (ffn.run(h, _task_set(), ffn.Settings(batch_size=bs)) for bs in (1, 4))
    assert f1.array("n_tokens").tolist() == f4.array("n_tokens").tolist()
    for name in ("mean", "abs_mean", "var"):
        a, b = torch.tensor(f1.array(name)), torch.tensor(f4.array(name))
        scale = float(a.abs().max())
        assert_close(b, a, atol=(16 * BF16_U if bf16 else 1e-5) * scale, rtol=0, msg=name)
    if not bf16:  # a threshold count can move by one token under bf16 rounding
        assert_close(torch.tensor(f4.array("sparsity")), torch.tensor(f1.array("sparsity")), atol=1e-9, rtol=0)

    tasks = get_probe("short_tasks")
    t1, t4 = (tasks.run(h, _task_set(), tasks.Settings(batch_size=bs, max_new_tokens=4)) for bs in (1, 4))
    lp1 = torch.tensor([x for r in t1.records if r["mode"] == "loglik" for x in r["choice_logprobs"]])
    lp4 = torch.tensor([x for r in t4.records if r["mode"] == "loglik" for x in r["choice_logprobs"]])
    assert len(lp1) == 5
    assert_close(lp4, lp1, atol=16 * BF16_U * float(lp1.abs().max()) if bf16 else 1e-4, rtol=0)
    if not bf16:  # greedy decoding may break a bf16 near-tie differently
        assert [r["prediction"] for r in t4.records] == [r["prediction"] for r in t1.records]


# ---------------------------------------------------------------------------------- memory check
def test_memory_check_refuses_on_the_device_before_loading(llama_triple, monkeypatch) -> None:
    """An estimate far above the device's real free memory is refused with the real free amount,
    before any tensor is read or allocated."""
    o = LoadOptions(device=ACCEL, dtype="bfloat16", tokens_per_batch=10**13)  # ~30 PB of activations
    free = available_memory(resolve_placement(o))
    assert list(free) == [str(DEV)] and free[str(DEV)] > 0
    loaded: list[int] = []
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: loaded.append(1))
    gc.collect()  # earlier tests' garbage must not be freed mid-test
    before = torch.cuda.memory_allocated(DEV) if ACCEL == "cuda" else 0
    with pytest.raises(InsufficientMemory) as e:
        load_model(llama_triple[Variant.BASE], o)
    triple = _triple(llama_triple)
    for build in (lambda: graft_model(triple, GraftSpec.build(mha="long", ffn="short"), o),
                  lambda: variant_model(triple, "long", o)):
        with pytest.raises(InsufficientMemory, match=f"but {DEV} has"):
            build()
    assert not loaded and not any(triple._loaded.values())
    if ACCEL == "cuda":
        assert torch.cuda.memory_allocated(DEV) <= before  # nothing new on the GPU
    msg = str(e.value)
    m = re.search(rf"but {re.escape(str(DEV))} has ([\d.]+) GB free", msg)
    assert m and "\n" not in msg, msg
    assert float(m.group(1)) == pytest.approx(free[str(DEV)] / 1e9, abs=max(0.5, 0.05 * free[str(DEV)] / 1e9))


# ---------------------------------------------------------------------------------- command line
def test_probe_and_patch_command_lines_on_the_device(pico_triples, tmp_path, capsys) -> None:
    from lensft.cli.app import main

    short, long = (str(pico_triples["qwen2"][v]) for v in (Variant.SHORT, Variant.LONG))
    out = tmp_path / "spread.json"
    assert main(["probe", "attention_spread", "--model", short, "--device", ACCEL, "--dtype", "bfloat16",
                 "--batch-size", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    res = load_result(out)
    assert res.model.device == str(DEV) and res.model.dtype == "bfloat16" and res.settings["batch_size"] == 2
    assert all(math.isfinite(x) for x in res.array("entropy").ravel())
    patch = tmp_path / "patch.json"
    conflicts = str(Path(str(resources.files("lensft.probes") / "data" / "conflict_example.jsonl")))
    assert main(["patch", "--host", short, "--donor", long, "--component", "mha", "--prompts", conflicts, "--device", ACCEL,
                 "--dtype", "bfloat16", "--batch-size", "4", "--out", str(patch)]) == 0, capsys.readouterr().err
    res = load_result(patch)
    assert res.probe == "patching" and res.model.device == str(DEV) and res.model.dtype == "bfloat16"
    assert all(math.isfinite(x) for x in res.array("delta").ravel())


# ---------------------------------------------------------------------------------- retrieval
def _needles():
    hay = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat. " * 3
    items = []
    for i, (needle, depth) in enumerate([("12 13 14", 0.3), ("yes no true", 0.7)]):
        cut = int(len(hay) * depth)
        prompt = hay[:cut] + f"The secret code is {needle}. " + hay[cut:] + "What is the secret code?"
        start = prompt.index(needle)
        items.append(NeedleItem(id=f"n{i}", prompt=prompt, needle=Span(name="needle", start=start, end=start + len(needle)),
                                answer=needle, context_tokens=len(hay) // 4, depth=depth))
    return make_prompt_set("needles", "1", "needle", items)


def test_retrieval_heads_on_the_device_equals_the_cpu_in_float32(sharp_triple) -> None:
    path = sharp_triple[Variant.LONG]
    probe, s = get_probe("retrieval_heads"), {"extra_steps": 4}
    cpu = probe.run(load_model(path, LoadOptions(device="cpu", dtype="float32")), _needles(), s)
    acc = probe.run(load_model(path, LoadOptions(device=ACCEL, dtype="float32")), _needles(), s)
    assert [r["generated"] for r in acc.records] == [r["generated"] for r in cpu.records]
    assert_close(torch.tensor(acc.array("score_per_item")), torch.tensor(cpu.array("score_per_item")), atol=1e-5, rtol=0)
    assert acc.model.device == str(DEV)
