"""FFN activation statistics per layer: mean, variance and sparsity of the activation output.

Sites (from the family map, no per-family code):

- ``act``: the output of the family's ``mlp_activation`` module, i.e. act(gate) for gated
  (SwiGLU / GeGLU) MLPs and act(fc) for plain MLPs. This is the paper's a = g(H W_in).
- ``hidden`` (gated families only, ``mlp_kind == "gated"``): the input of ``mlp_down``, i.e.
  act(gate) * up, the vector the output projection actually reads.

Statistics pool every element (token x neuron) of a layer's activation over the chosen tokens:
``mean`` = E[a], ``var`` = E[a^2] - E[a]^2 (population variance), ``abs_mean`` = E[|a|] and
``sparsity[t]`` = fraction of elements with |a| < t for each threshold t (default 1e-2).
Accumulation streams over batches as float64 sums (count, sum a, sum a^2, sum |a|, count below
each threshold), so results do not depend on the batch size; padding is masked out.

Phases: every item contributes to phase ``all`` (every real token); in addition
``task`` items split into ``prompt`` (the chat-formatted user turn) and ``answer`` (the gold
answer appended as the assistant turn, with ``include_answer``); ``conflict`` items have
``prompt`` only; ``text`` items contribute one phase per named span (tokens whose character
range overlaps the span). ``phases`` in the settings restricts the reported phases.

Result arrays: ``mean``, ``var``, ``abs_mean`` with dims ``[site, phase, layer]``; ``sparsity``
with dims ``[site, phase, layer, threshold]``; ``n_tokens`` with dims ``[phase]``. Summary:
``{site}_mean``, ``{site}_var``, ``{site}_abs_mean``, ``{site}_sparsity`` (first threshold),
averaged over layers on phase ``all``; plain ``mean``/``var``/``sparsity`` repeat the ``act`` site.
Records: one per item with its token count, per-layer ``act`` mean and sparsity (phase all) and
``act_moments``: per layer ``[count, sum a, sum a^2, #(|a| < first threshold)]``, the sums from
which the report pools (and bootstraps) the statistics over any subset of items.

Special tokens (BOS, EOS, chat-template markers: the tokenizer's ``all_special_ids``) are left out
of every phase by default (``skip_special``): they carry large, content-free activations that
would swamp the statistics of the text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from jaxtyping import Bool, Float
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.nanstats import floats_or_none, mean_or_none
from lensft.probes.registry import register_probe
from lensft.probes.scoring import (batched, continuation_text, encode_continuation, encode_prompt, model_device,
                                   pad_batch, pad_id, prompt_text)
from lensft.prompts import ConflictItem, PromptSet, TaskItem, TextItem
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)

#: Columns of a moments tensor before the per-threshold counts.
N_FIXED = 4  # count, sum, sum of squares, sum of |a|


class FFNSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thresholds: list[float] = Field(default_factory=lambda: [1e-2],
                                    description="sparsity thresholds: fraction of |a| below each")
    phases: Optional[list[str]] = Field(None, description="report only these phases (plus 'all')")
    include_answer: bool = Field(True, description="task items: append the gold answer as an 'answer' phase")
    chat: Optional[bool] = Field(None, description="chat-format task/conflict prompts; None = the prompt set's header")
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(1024, ge=2, description="truncate items to this many tokens")
    skip_special: bool = Field(True, description="leave out special tokens (BOS, chat-template markers) from every phase")


# ---------------------------------------------------------------------------------------- math
def batch_moments(acts: Float[Tensor, "batch seq d"], masks: Bool[Tensor, "phase batch seq"],
                  thresholds: Float[Tensor, " thr"]) -> Float[Tensor, "phase batch stat"]:
    """Per-phase, per-row float64 moments of ``acts`` over the masked tokens.

    The stat axis is ``[count, sum a, sum a^2, sum |a|, #(|a| < t) for t in thresholds]``,
    where count is the number of elements (tokens x d).
    """
    a = acts.double()
    m = masks.to(a.dtype)  # [p, b, s]
    d = a.shape[-1]
    per_tok = torch.stack([a.sum(-1), (a * a).sum(-1), a.abs().sum(-1)], -1)  # [b, s, 3]
    below = (a.abs().unsqueeze(-1) < thresholds.to(a.dtype)).sum(-2).to(a.dtype)  # [b, s, thr]
    cols = torch.cat([per_tok, below], -1)  # [b, s, 3 + thr]
    sums = torch.einsum("pbs,bsk->pbk", m, cols)
    count = m.sum(-1, keepdim=True) * d
    return torch.cat([count, sums], -1)


@dataclass
class FFNStats:
    """Finalised statistics from accumulated moments (float64, NaN where no token was counted)."""

    mean: Tensor
    var: Tensor
    abs_mean: Tensor
    sparsity: Tensor  # [..., thr]


def finalize_moments(moments: Float[Tensor, "*lead stat"]) -> FFNStats:
    """Mean, population variance, mean |a| and below-threshold fractions from moment sums."""
    n = moments[..., 0]
    safe = torch.where(n > 0, n, torch.full_like(n, float("nan")))
    mean = moments[..., 1] / safe
    var = (moments[..., 2] / safe - mean * mean).clamp(min=0.0)
    abs_mean = moments[..., 3] / safe
    sparsity = moments[..., N_FIXED:] / safe.unsqueeze(-1)
    return FFNStats(mean, var, abs_mean, sparsity)


# ---------------------------------------------------------------------------------------- items
@dataclass
class _Encoded:
    id: str
    ids: list[int]
    phases: dict[str, list[bool]]


def _encode_items(handle: ModelHandle, prompts: PromptSet, s: FFNSettings) -> list[_Encoded]:
    chat = prompts.header.chat if s.chat is None else s.chat
    out: list[_Encoded] = []
    for it in prompts.items:
        if isinstance(it, TextItem):
            enc = handle.tokenizer(it.text, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            offs = enc["offset_mapping"]
            phases = {}
            for sp in it.spans:
                flags = [e > b and b < sp.end and e > sp.start for b, e in offs]
                prev = phases.get(sp.name, [False] * len(ids))
                phases[sp.name] = [x or y for x, y in zip(prev, flags)]
        elif isinstance(it, (TaskItem, ConflictItem)):
            text = prompt_text(handle, it.prompt, chat=chat)
            p = encode_prompt(handle, text, chat=chat)
            a = (encode_continuation(handle, continuation_text(text, it.answer, chat=chat))
                 if isinstance(it, TaskItem) and s.include_answer else [])
            ids = p + a
            phases = {"prompt": [True] * len(p) + [False] * len(a)}
            if a:
                phases["answer"] = [False] * len(p) + [True] * len(a)
        else:
            raise LensftError(f"ffn_activations takes text, task or conflict prompt sets, not {prompts.kind!r}")
        limit = min(s.max_length, handle.max_positions or s.max_length)  # never past a learned position table
        if len(ids) > limit:
            ids = ids[:limit]
            phases = {k: v[:limit] for k, v in phases.items()}
        out.append(_Encoded(it.id, ids, phases))
    return out


# ---------------------------------------------------------------------------------------- runner
def ffn_sites(handle: ModelHandle) -> dict[str, tuple[str, str]]:
    """Site name -> (module path, 'output' | 'input') from the family map."""
    m = handle.family.modules
    sites = {"act": (m.mlp_activation, "output")}
    if handle.family.mlp_kind == "gated":
        sites["hidden"] = (m.mlp_down, "input")
    return sites


@torch.no_grad()
def ffn_moments(handle: ModelHandle, encoded: list[_Encoded], phase_names: list[str], thresholds: list[float],
                batch_size: int = 8, skip_special: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Trace the model with nnsight and accumulate moments.

    Returns ``(total [site, phase, layer, stat], per_item [item, site, layer, stat], n_tokens [phase])``
    where the per-item moments are for phase ``all`` (the first phase).
    """
    sites = ffn_sites(handle)
    lm = handle.nnsight()
    thr = torch.tensor(thresholds, dtype=torch.float64)
    L = handle.n_layers
    total = torch.zeros(len(sites), len(phase_names), L, N_FIXED + len(thresholds), dtype=torch.float64)
    per_item: list[Tensor] = []
    n_tokens = torch.zeros(len(phase_names), dtype=torch.float64)
    dev = model_device(handle)
    for chunk in batched(encoded, batch_size):
        b = pad_batch([e.ids for e in chunk], pad_id(handle), side="right", device=dev)
        real = b.attention_mask.bool()
        S = b.input_ids.shape[1]
        masks = torch.zeros(len(phase_names), len(chunk), S, dtype=torch.bool, device=dev)
        masks[0] = real
        for r, e in enumerate(chunk):
            for name, flags in e.phases.items():
                if name in phase_names:
                    masks[phase_names.index(name), r, :len(flags)] = torch.tensor(flags, dtype=torch.bool)
        if skip_special:
            masks &= ~special_token_mask(handle, b.input_ids).unsqueeze(0)
        n_tokens += masks.sum((1, 2)).double().cpu()
        saved = []
        with lm.trace(b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids):
            for i in range(L):  # module access in execution order: act before down, layer by layer
                for path, where in sites.values():
                    env = lm.get(handle.layer_path(i, path))
                    acts = env.output if where == "output" else env.input
                    saved.append(batch_moments(acts, masks, thr.to(dev)).save())
        got = torch.stack([x.detach().cpu() for x in saved]).view(L, len(sites), len(phase_names), len(chunk), -1)
        total += got.sum(3).permute(1, 2, 0, 3)
        per_item.append(got[:, :, 0].permute(2, 1, 0, 3))  # [batch, site, layer, stat]
    return total, torch.cat(per_item, 0), n_tokens


def special_token_mask(handle: ModelHandle, input_ids: Tensor) -> Tensor:
    """True where a token is one of the tokenizer's special tokens (BOS, EOS, chat markers, padding)."""
    special = torch.tensor(sorted(set(handle.tokenizer.all_special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, special)


def _phase_names(encoded: list[_Encoded], keep: Optional[list[str]]) -> list[str]:
    names: list[str] = ["all"]
    for e in encoded:
        for n in e.phases:
            if n not in names and (keep is None or n in keep):
                names.append(n)
    return names


@register_probe
class FFNActivationsProbe:
    name: ClassVar[str] = "ffn_activations"
    description: ClassVar[str] = "per-layer mean, variance and sparsity of FFN activations (act and act*up)"
    kinds: ClassVar[tuple[str, ...]] = ("text", "task", "conflict")
    Settings: ClassVar[type[BaseModel]] = FFNSettings
    default_prompts: ClassVar[str] = "ffn_default.jsonl"

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: FFNSettings | None = None) -> ProbeResult:
        s = settings or FFNSettings()
        if prompts.kind not in self.kinds:
            raise LensftError(f"ffn_activations takes {', '.join(self.kinds)} prompt sets, not {prompts.kind!r}")
        if not prompts.items:
            raise LensftError(f"prompt set {prompts.name!r} has no items")
        if not s.thresholds:
            raise LensftError("ffn_activations needs at least one sparsity threshold")
        encoded = _encode_items(handle, prompts, s)
        phases = _phase_names(encoded, s.phases)
        total, per_item, n_tok = ffn_moments(handle, encoded, phases, s.thresholds, s.batch_size, s.skip_special)
        st = finalize_moments(total)
        site_names = list(ffn_sites(handle))
        res = ProbeResult(probe=self.name, model=handle.provenance, settings=s.model_dump(),
                          prompt_set=PromptSetRef(name=prompts.name, version=prompts.version, n_items=len(prompts)))
        res.set_array("mean", st.mean, ["site", "phase", "layer"])
        res.set_array("var", st.var, ["site", "phase", "layer"])
        res.set_array("abs_mean", st.abs_mean, ["site", "phase", "layer"])
        res.set_array("sparsity", st.sparsity, ["site", "phase", "layer", "threshold"])
        res.set_array("n_tokens", n_tok, ["phase"])
        res.coords.update(site=site_names, phase=phases, layer=list(range(handle.n_layers)),
                          threshold=list(s.thresholds))
        for k, site in enumerate(site_names):
            res.summary[f"{site}_mean"] = mean_or_none(st.mean[k, 0])
            res.summary[f"{site}_var"] = mean_or_none(st.var[k, 0])
            res.summary[f"{site}_abs_mean"] = mean_or_none(st.abs_mean[k, 0])
            res.summary[f"{site}_sparsity"] = mean_or_none(st.sparsity[k, 0, :, 0])
        for key in ("mean", "var", "sparsity"):
            res.summary[key] = res.summary[f"act_{key}"]
        res.summary["n_tokens"] = float(n_tok[0])
        item_st = finalize_moments(per_item)
        for e, m, sp, mom in zip(encoded, item_st.mean, item_st.sparsity, per_item):
            res.records.append({"id": e.id, "n_tokens": len(e.ids), "act_mean": floats_or_none(m[0]),
                                "act_sparsity": floats_or_none(sp[0, :, 0]),
                                "act_moments": [floats_or_none(row) for row in mom[0][:, [0, 1, 2, N_FIXED]]]})
        return res


