"""Activation patching across checkpoints: put a donor's MHA / FFN outputs into a host.

Two aligned checkpoints (same family, layer count, widths and tokenizer vocabulary) run on the
same token sequences. With nnsight the donor is traced once and the outputs of the family's
``attention`` module (``output[0]``, the attention block's contribution before the residual add
for sequential families) and ``mlp`` module are saved at the chosen layers; the host is then
traced again for each patch configuration with those outputs written in. The change of a metric
(patched host minus clean host) is reported.

Patch configurations (``mode``):

- ``each``: one layer at a time, per component: ``delta[component, layer]``;
- ``all``: every chosen layer at once, per component (and both components together when
  ``component="both"``): ``delta_all[component]``;
- ``both`` (default): both of the above.

Metrics (per item, in nats; ``metric="auto"`` picks by prompt-set kind):

- ``margin`` (conflict sets): the knowledge-preference margin
  log p(context_answer | prompt) - log p(memory_answer | prompt), full-sequence answer sums
  (as :mod:`lensft.probes.knowledge` (c)). Positive change = the donor's block moves the
  host towards the context.
- ``answer_logprob`` (task sets): log p(gold answer | prompt), summed over the answer tokens.

Result (probe name ``patching``, a registered pair probe; model = the host's provenance, ``settings["donor"]`` =
the donor's provenance): summary ``host_metric``, ``donor_metric``, ``gap`` (donor -
host), ``delta_all_<component>`` and ``recovered_all_<component>`` (delta / gap, None when
the gap is 0); arrays ``delta`` ``[component, layer]`` and ``delta_all`` ``[component]``, item
means; records per item with ``host``, ``donor``, ``delta`` (component -> per-layer list) and
``delta_all``. If the donor equals the host every delta is 0; if every layer's MHA and FFN
outputs are patched and the two models differ only inside those modules, the patched host's
logits are the donor's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import torch
from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from lensft.errors import IncompatibleCheckpoints, LensftError
from lensft.handle import ModelHandle
from lensft.probes.conflict_encoding import encode_conflict
from lensft.probes.scoring import (batched, continuation_text, encode_continuation, encode_prompt, gather_logprobs,
                                   model_device, pad_batch, pad_id, prompt_text)
from lensft.probes.registry import register_probe
from lensft.prompts import ConflictItem, PromptSet, TaskItem, read_prompt_set
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


def check_aligned(host: ModelHandle, donor: ModelHandle) -> None:
    """Raise :class:`IncompatibleCheckpoints` unless the two models can exchange block outputs."""
    problems = []
    if host.family.name != donor.family.name:
        problems.append(f"family {host.family.name} vs {donor.family.name}")
    if host.n_layers != donor.n_layers:
        problems.append(f"{host.n_layers} vs {donor.n_layers} layers")
    for f in ("hidden_size", "vocab_size"):
        a, b = getattr(host.config, f, None), getattr(donor.config, f, None)
        if a != b:
            problems.append(f"{f} {a} vs {b}")
    if host.tokenizer.get_vocab() != donor.tokenizer.get_vocab():
        problems.append("tokenizer vocabularies differ")
    if problems:
        raise IncompatibleCheckpoints(f"cannot patch {donor.label} into {host.label}: {'; '.join(problems)}")


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


class PatchSettings(BaseModel):
    """Settings of the ``patching`` pair probe (see :func:`patch_across`)."""

    model_config = ConfigDict(extra="forbid")

    component: Component = "both"
    layers: Optional[list[int]] = Field(None, description="layers to patch (default: all)")
    metric: Metric = "auto"
    mode: Literal["each", "all", "both"] = "both"
    batch_size: int = Field(8, ge=1)
    chat: Optional[bool] = None


@register_probe
class Patching:
    """Activation patching across checkpoints as a registered pair probe."""

    name = "patching"
    description = "pair probe: patch a donor's MHA/FFN outputs into the host, layer by layer; change of the margin"
    kinds = ("conflict", "task")
    Settings = PatchSettings
    default_prompts = "conflict_default.jsonl"

    @staticmethod
    def load_prompts(path: str | Path) -> PromptSet:
        """A lensft prompt set (conflict or task) or a conflict file in any supported format."""
        from lensft.probes.conflict_formats import load_conflicts

        p = Path(path)
        if p.is_file() and p.read_text(encoding="utf-8").lstrip().startswith('{"lensft_prompt_set"'):
            return read_prompt_set(p)
        return load_conflicts(p)

    def run_pair(self, host: ModelHandle, donor: ModelHandle, prompts: PromptSet, settings: PatchSettings) -> ProbeResult:
        return patch_across(host, donor, prompts, settings.component, settings.layers, settings.metric,
                            mode=settings.mode, batch_size=settings.batch_size, chat=settings.chat)


@dataclass
class _Scores:
    """Per-item metric sums (nats): host clean, donor clean, host patched per layer and all at once."""

    host: Tensor
    donor: Tensor
    each: dict[str, Tensor]
    at_once: dict[str, Tensor]


def _check_args(host: ModelHandle, prompts: PromptSet, component: str, mode: str, metric: str,
                layers: Optional[Sequence[int]]) -> tuple[list[int], str]:
    if component not in ("mha", "ffn", "both"):
        raise LensftError(f"component must be mha, ffn or both, not {component!r}", field="component")
    if mode not in ("each", "all", "both"):
        raise LensftError(f"mode must be each, all or both, not {mode!r}", field="mode")
    L = host.n_layers
    idx = list(range(L)) if layers is None else sorted(set(int(x) for x in layers))
    if not idx or any(not 0 <= x < L for x in idx):
        raise LensftError(f"layers must be indices in 0..{L - 1}, got {idx}", field="layers")
    if not prompts.items:
        raise LensftError(f"prompt set {prompts.name!r} has no items")
    if metric == "auto":
        metric = {"conflict": "margin", "task": "answer_logprob"}.get(prompts.kind, "auto")
        if metric == "auto":
            raise LensftError(f"no default patching metric for a {prompts.kind!r} prompt set; use conflict or task")
    return idx, metric


def _score(host: ModelHandle, donor: ModelHandle, seqs: list[ScoredSequence], n: int, comps: list[str],
           all_keys: list[str], layers: list[int], mode: str, batch_size: int) -> _Scores:
    L = host.n_layers
    sc = _Scores(torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                 {c: torch.zeros(n, L, dtype=torch.float64) for c in comps},
                 {c: torch.zeros(n, dtype=torch.float64) for c in all_keys})
    for chunk in batched(seqs, batch_size):
        b = pad_batch([s.ids for s in chunk], pad_id(host), side="right", device=model_device(host))
        owner = torch.tensor([s.item for s in chunk])
        d_logits, d_out = _trace(donor, b, save={c: layers for c in comps})
        h_logits, _ = _trace(host, b)
        clean = sequence_scores(h_logits, b.input_ids, chunk)
        sc.host.index_add_(0, owner, clean)
        sc.donor.index_add_(0, owner, sequence_scores(d_logits, b.input_ids, chunk))
        for c in comps if mode in ("each", "both") else []:
            for i in layers:
                p_logits, _ = _trace(host, b, patch={(c, i): d_out[(c, i)]})
                sc.each[c][:, i].index_add_(0, owner, sequence_scores(p_logits, b.input_ids, chunk) - clean)
        for key in all_keys if mode in ("all", "both") else []:
            cs = comps if key == "both" else [key]
            p_logits, _ = _trace(host, b, patch={(c, i): d_out[(c, i)] for c in cs for i in layers})
            sc.at_once[key].index_add_(0, owner, sequence_scores(p_logits, b.input_ids, chunk) - clean)
    return sc


def patch_across(host: ModelHandle, donor: ModelHandle, prompts: PromptSet, component: str = "both",
                 layers: Optional[Sequence[int]] = None, metric: str = "auto", *, mode: str = "both",
                 batch_size: int = 8, chat: Optional[bool] = None) -> ProbeResult:
    """Patch the donor's MHA / FFN outputs into the host and report the metric change (module docstring).

    ``component`` is ``mha``, ``ffn`` or ``both``; ``metric`` ``auto``, ``margin`` or ``answer_logprob``
    (checked here, with a one-line :class:`LensftError` for anything else).
    """
    check_aligned(host, donor)
    idx, metric = _check_args(host, prompts, component, mode, metric, layers)
    use_chat = prompts.header.chat if chat is None else chat
    comps = ["mha", "ffn"] if component == "both" else [component]
    all_keys = comps + (["both"] if component == "both" else [])
    seqs = build_sequences(host, prompts, metric, use_chat)
    sc = _score(host, donor, seqs, len(prompts.items), comps, all_keys, idx, mode, batch_size)
    res = ProbeResult(probe="patching", model=host.provenance,
                      prompt_set=PromptSetRef(name=prompts.name, version=prompts.version, n_items=len(prompts.items)),
                      settings={"donor": donor.provenance.model_dump(), "component": component, "layers": idx,
                                "metric": metric, "mode": mode, "batch_size": batch_size, "chat": use_chat})
    _fill_result(res, sc, prompts, comps, all_keys, idx, mode, host.n_layers)
    return res


def _fill_result(res: ProbeResult, sc: _Scores, prompts: PromptSet, comps: list[str], all_keys: list[str],
                 layers: list[int], mode: str, L: int) -> None:
    gap = float((sc.donor - sc.host).mean())
    res.summary.update(host_metric=float(sc.host.mean()), donor_metric=float(sc.donor.mean()), gap=gap)
    if mode in ("each", "both"):
        patched = torch.isin(torch.arange(L), torch.tensor(layers))
        rows = [torch.where(patched, sc.each[c].mean(0), torch.tensor(float("nan"), dtype=torch.float64)) for c in comps]
        res.set_array("delta", torch.stack(rows), ["component", "layer"])
    if mode in ("all", "both"):
        res.set_array("delta_all", torch.stack([sc.at_once[k].mean() for k in all_keys]), ["component_all"])
        for k in all_keys:
            d = float(sc.at_once[k].mean())
            res.summary[f"delta_all_{k}"] = d
            res.summary[f"recovered_all_{k}"] = d / gap if gap != 0 else None
    res.coords.update(component=comps, component_all=all_keys, layer=list(range(L)))
    for k, it in enumerate(prompts.items):
        rec: dict[str, Any] = {"id": it.id, "host": float(sc.host[k]), "donor": float(sc.donor[k])}
        if mode in ("each", "both"):
            rec["delta"] = {c: [float(sc.each[c][k, i]) if i in layers else None for i in range(L)] for c in comps}
        if mode in ("all", "both"):
            rec["delta_all"] = {key: float(sc.at_once[key][k]) for key in all_keys}
        res.records.append(rec)


def patched_logits(host: ModelHandle, donor: ModelHandle, sequences: Sequence[Sequence[int]],
                   components: Sequence[str] = ("mha", "ffn"),
                   layers: Optional[Sequence[int]] = None) -> Float[Tensor, "batch seq vocab"]:
    """Host logits on right-padded ``sequences`` with the donor's outputs of ``components``
    (``"mha"``, ``"ffn"``) written in at ``layers`` (default: all)."""
    check_aligned(host, donor)
    layers = list(range(host.n_layers)) if layers is None else list(layers)
    b = pad_batch(sequences, pad_id(host), side="right", device=model_device(host))
    _, d_out = _trace(donor, b, save={c: layers for c in components})
    logits, _ = _trace(host, b, patch=d_out)
    return logits
