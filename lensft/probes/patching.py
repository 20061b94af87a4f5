"""Activation patching across checkpoints: put a donor's MHA / FFN outputs into a receiver.

Two aligned checkpoints (same family, layer count, widths and tokenizer vocabulary) run on the
same token sequences. With nnsight the donor is traced once and the outputs of the family's
``attention`` module (``output[0]``, the attention block's contribution before the residual add
for sequential families) and ``mlp`` module are saved at the chosen layers; the receiver is then
traced again for each patch configuration with those outputs written in. The change of a metric
(patched receiver minus clean receiver) is reported.

Patch configurations (``mode``):

- ``each``: one layer at a time, per component: ``delta[component, layer]``;
- ``all``: every chosen layer at once, per component (and both components together when
  ``component="both"``): ``delta_all[component]``;
- ``both`` (default): both of the above.

Metrics (per item, in nats; ``metric="auto"`` picks by prompt-set kind):

- ``margin`` (conflict sets): the knowledge-preference margin
  log p(context_answer | prompt) - log p(memory_answer | prompt), full-sequence answer sums
  (as :mod:`lensft.probes.knowledge` (c)). Positive change = the donor's block moves the
  receiver towards the context.
- ``answer_logprob`` (task sets): log p(gold answer | prompt), summed over the answer tokens.

Result (probe name ``patch_across``, model = the receiver's provenance, ``settings["donor"]`` =
the donor's provenance): summary ``receiver_metric``, ``donor_metric``, ``gap`` (donor -
receiver), ``delta_all_<component>`` and ``recovered_all_<component>`` (delta / gap, None when
the gap is 0); arrays ``delta`` ``[component, layer]`` and ``delta_all`` ``[component]``, item
means; records per item with ``receiver``, ``donor``, ``delta`` (component -> per-layer list) and
``delta_all``. If the donor equals the receiver every delta is 0; if every layer's MHA and FFN
outputs are patched and the two models differ only inside those modules, the patched receiver's
logits are the donor's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from lensft.errors import IncompatibleCheckpoints, LensftError
from lensft.handle import ModelHandle
from lensft.probes.knowledge import encode_conflict
from lensft.probes.scoring import (batched, continuation_text, encode_continuation, encode_prompt, gather_logprobs,
                                   model_device, pad_batch, pad_id, prompt_text)
from lensft.prompts import ConflictItem, PromptSet, TaskItem
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)

Component = Literal["mha", "ffn", "both"]
Metric = Literal["auto", "margin", "answer_logprob"]


@dataclass(frozen=True)
class ScoredSequence:
    """One sequence to run: the metric adds ``weight * sum log p(ids[start:start+length])``."""

    item: int
    ids: list[int]
    start: int
    length: int
    weight: float


def build_sequences(handle: ModelHandle, prompts: PromptSet, metric: str, chat: bool) -> list[ScoredSequence]:
    """The token sequences a metric needs (two per conflict item for ``margin``, one per task item)."""
    out: list[ScoredSequence] = []
    for k, it in enumerate(prompts.items):
        if metric == "margin":
            if not isinstance(it, ConflictItem):
                raise LensftError("metric 'margin' needs a conflict prompt set")
            p, c, m = encode_conflict(handle, it, chat=chat)
            out.append(ScoredSequence(k, p + c, len(p), len(c), 1.0))
            out.append(ScoredSequence(k, p + m, len(p), len(m), -1.0))
        elif metric == "answer_logprob":
            if not isinstance(it, TaskItem):
                raise LensftError("metric 'answer_logprob' needs a task prompt set")
            text = prompt_text(handle, it.prompt, chat=chat)
            p = encode_prompt(handle, text, chat=chat)
            a = encode_continuation(handle, continuation_text(text, it.answer, chat=chat))
            out.append(ScoredSequence(k, p + a, len(p), len(a), 1.0))
        else:
            raise LensftError(f"unknown patching metric {metric!r}; use margin or answer_logprob")
    return out


def sequence_scores(logits: Float[Tensor, "batch seq vocab"], input_ids: Tensor,
                    seqs: Sequence[ScoredSequence]) -> Float[Tensor, " batch"]:
    """``weight * sum log p(target tokens)`` per row (right-padded rows)."""
    lp = gather_logprobs(logits[:, :-1], input_ids[:, 1:]).double()
    out = torch.zeros(len(seqs), dtype=torch.float64)
    for r, s in enumerate(seqs):
        out[r] = s.weight * lp[r, s.start - 1:s.start - 1 + s.length].sum().cpu()
    return out


def check_aligned(receiver: ModelHandle, donor: ModelHandle) -> None:
    """Raise :class:`IncompatibleCheckpoints` unless the two models can exchange block outputs."""
    problems = []
    if receiver.family.name != donor.family.name:
        problems.append(f"family {receiver.family.name} vs {donor.family.name}")
    if receiver.n_layers != donor.n_layers:
        problems.append(f"{receiver.n_layers} vs {donor.n_layers} layers")
    for f in ("hidden_size", "vocab_size"):
        a, b = getattr(receiver.config, f, None), getattr(donor.config, f, None)
        if a != b:
            problems.append(f"{f} {a} vs {b}")
    if receiver.tokenizer.get_vocab() != donor.tokenizer.get_vocab():
        problems.append("tokenizer vocabularies differ")
    if problems:
        raise IncompatibleCheckpoints(f"cannot patch {donor.label} into {receiver.label}: {'; '.join(problems)}")


def _paths(h: ModelHandle, comp: str, layer: int) -> str:
    return h.layer_path(layer, h.family.modules.attention if comp == "mha" else h.family.modules.mlp)


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def _trace(handle: ModelHandle, batch: Any, *, save: dict[str, list[int]] | None = None,
           patch: dict[tuple[str, int], Tensor] | None = None) -> tuple[Tensor, dict[tuple[str, int], Tensor]]:
    """One nnsight trace: optionally save block outputs and/or write patched block outputs."""
    lm = handle.nnsight()
    saved: dict[tuple[str, int], Any] = {}
    patch = patch or {}
    save = save or {}
    with lm.trace(batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids):
        for i in range(handle.n_layers):  # execution order: attention, then MLP, layer by layer
            for comp in ("mha", "ffn"):
                if (comp, i) not in patch and i not in save.get(comp, []):
                    continue
                env = lm.get(_paths(handle, comp, i))
                if (comp, i) in patch:
                    out = env.output
                    env.output = (patch[(comp, i)], *out[1:]) if isinstance(out, tuple) else patch[(comp, i)]
                if i in save.get(comp, []):
                    saved[(comp, i)] = _first(env.output).save()
        logits = lm.output.logits.save()
    return logits.detach(), {k: v.detach() for k, v in saved.items()}


def patch_across(receiver: ModelHandle, donor: ModelHandle, prompts: PromptSet, component: Component = "both",
                 layers: Optional[Sequence[int]] = None, metric: Metric = "auto", *, mode: str = "both",
                 batch_size: int = 8, chat: Optional[bool] = None) -> ProbeResult:
    """Patch donor MHA / FFN outputs into the receiver and report the metric change (module docstring)."""
    check_aligned(receiver, donor)
    if component not in ("mha", "ffn", "both"):
        raise LensftError(f"component must be mha, ffn or both, not {component!r}")
    if mode not in ("each", "all", "both"):
        raise LensftError(f"mode must be each, all or both, not {mode!r}")
    L = receiver.n_layers
    layers = list(range(L)) if layers is None else sorted(set(int(x) for x in layers))
    if not layers or any(not 0 <= x < L for x in layers):
        raise LensftError(f"layers must be indices in 0..{L - 1}, got {layers}")
    if not prompts.items:
        raise LensftError(f"prompt set {prompts.name!r} has no items")
    if metric == "auto":
        metric = "margin" if prompts.kind == "conflict" else "answer_logprob" if prompts.kind == "task" else metric
        if metric == "auto":
            raise LensftError(f"no default patching metric for a {prompts.kind!r} prompt set; use conflict or task")
    use_chat = prompts.header.chat if chat is None else chat
    comps = ["mha", "ffn"] if component == "both" else [component]
    all_keys = comps + (["both"] if component == "both" else [])
    seqs = build_sequences(receiver, prompts, metric, use_chat)
    n = len(prompts.items)
    base = torch.zeros(n, dtype=torch.float64)
    don = torch.zeros(n, dtype=torch.float64)
    each = {c: torch.zeros(n, L, dtype=torch.float64) for c in comps}
    at_once = {c: torch.zeros(n, dtype=torch.float64) for c in all_keys}
    dev = model_device(receiver)
    for chunk in batched(seqs, batch_size):
        b = pad_batch([s.ids for s in chunk], pad_id(receiver), side="right", device=dev)
        owner = torch.tensor([s.item for s in chunk])
        d_logits, d_out = _trace(donor, b, save={c: layers for c in comps})
        r_logits, _ = _trace(receiver, b)
        r_sc = sequence_scores(r_logits, b.input_ids, chunk)
        base.index_add_(0, owner, r_sc)
        don.index_add_(0, owner, sequence_scores(d_logits, b.input_ids, chunk))
        if mode in ("each", "both"):
            for c in comps:
                for i in layers:
                    p_logits, _ = _trace(receiver, b, patch={(c, i): d_out[(c, i)]})
                    each[c][:, i].index_add_(0, owner, sequence_scores(p_logits, b.input_ids, chunk) - r_sc)
        if mode in ("all", "both"):
            for key in all_keys:
                cs = comps if key == "both" else [key]
                p_logits, _ = _trace(receiver, b, patch={(c, i): d_out[(c, i)] for c in cs for i in layers})
                at_once[key].index_add_(0, owner, sequence_scores(p_logits, b.input_ids, chunk) - r_sc)

    res = ProbeResult(probe="patch_across", model=receiver.provenance,
                      prompt_set=PromptSetRef(name=prompts.name, version=prompts.version, n_items=n),
                      settings={"donor": donor.provenance.model_dump(), "component": component, "layers": layers,
                                "metric": metric, "mode": mode, "batch_size": batch_size, "chat": use_chat})
    gap = float((don - base).mean())
    res.summary.update(receiver_metric=float(base.mean()), donor_metric=float(don.mean()), gap=gap)
    if mode in ("each", "both"):
        nan = torch.full((L,), float("nan"), dtype=torch.float64)
        rows = []
        for c in comps:
            row = each[c].mean(0)
            rows.append(torch.where(torch.isin(torch.arange(L), torch.tensor(layers)), row, nan))
        res.set_array("delta", torch.stack(rows), ["component", "layer"])
    if mode in ("all", "both"):
        res.set_array("delta_all", torch.stack([at_once[k].mean() for k in all_keys]), ["component_all"])
        for k in all_keys:
            d = float(at_once[k].mean())
            res.summary[f"delta_all_{k}"] = d
            res.summary[f"recovered_all_{k}"] = d / gap if gap != 0 else None
    res.coords.update(component=comps, component_all=all_keys, layer=list(range(L)))
    for k, it in enumerate(prompts.items):
        rec: dict[str, Any] = {"id": it.id, "receiver": float(base[k]), "donor": float(don[k])}
        if mode in ("each", "both"):
            rec["delta"] = {c: [float(each[c][k, i]) if i in layers else None for i in range(L)] for c in comps}
        if mode in ("all", "both"):
            rec["delta_all"] = {key: float(at_once[key][k]) for key in all_keys}
        res.records.append(rec)
    return res


def patched_logits(receiver: ModelHandle, donor: ModelHandle, sequences: Sequence[Sequence[int]],
                   components: Sequence[str] = ("mha", "ffn"),
                   layers: Optional[Sequence[int]] = None) -> Float[Tensor, "batch seq vocab"]:
    """Receiver logits on right-padded ``sequences`` with the donor's outputs of ``components``
    (``"mha"``, ``"ffn"``) written in at ``layers`` (default: all)."""
    check_aligned(receiver, donor)
    layers = list(range(receiver.n_layers)) if layers is None else list(layers)
    b = pad_batch(sequences, pad_id(receiver), side="right", device=model_device(receiver))
    _, d_out = _trace(donor, b, save={c: layers for c in components})
    logits, _ = _trace(receiver, b, patch=d_out)
    return logits
