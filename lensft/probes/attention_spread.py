"""Probe ``attention_spread``: attention entropy, distance, sink and span masses per phase, layer and head.

Zhang et al. 2024 ("Attention Entropy Is a Key Factor", arXiv 2412.16545) as the paper uses it
(§3, eq. 7): for each head, the entropy ``S = -sum_j alpha_j log alpha_j`` (nats) of one query's
attention weights, averaged over the queries of a *phase* (e.g. the reasoning tokens vs the
answer tokens of a GSM8K solution). Statistics come from the ``lensft_stats`` kernel
(:mod:`lensft.probes.attention_kernel`), streamed over keys, so no n x n matrix is built.

Inputs:

- ``text`` items: the text is tokenized as it is (no chat formatting). Phases are the item's
  named spans (a token belongs to a span when its character range overlaps it) plus ``all``.
  The same spans are the key spans whose attention mass is measured.
- ``task`` items: the prompt is chat-formatted (unless ``chat`` is off) and the gold answer is
  appended as the assistant's continuation. Phases: ``prompt`` and ``answer``; if the item has
  ``reasoning`` the text is prompt + reasoning + newline + answer and the phases are ``prompt``,
  ``reasoning`` and ``answer``. Key span: ``prompt``.

  Which queries make a phase (``phase_queries``): ``generating`` (default) takes the positions
  that *generate* the phase's tokens, i.e. the query at position t-1 for token t, as during
  decoding (the paper's reasoning and answering periods are periods of generation); the last
  prompt position generates the first answer (or reasoning) token, so it belongs to that phase.
  ``at_tokens`` takes the queries at the phase's own token positions (each predicts the token
  after it); lensft used it before version 0.2.

Output arrays (``dims`` in brackets): ``entropy``, ``norm_entropy`` (entropy / log of the number
of visible keys), ``distance`` (mean attention distance in tokens), ``sink`` (mass on position 0)
``[phase, layer, head]``, each the mean over prompts of the per-prompt mean over the phase's
queries; ``span_mass`` ``[phase, key_span, layer, head]``; and the per-prompt values
``<name>_per_prompt`` with a leading ``prompt`` axis (NaN where a prompt lacks a phase) for
error bars. ``records`` hold each prompt's token counts per phase.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional

import torch
from jaxtyping import Float
from pydantic import BaseModel, Field
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.attention_kernel import STAT_FIELDS, AttentionCollector, collect_attention
from lensft.probes.nanstats import mean_or_none, nanmean
from lensft.probes.registry import register_probe
from lensft.probes.scoring import (batched, continuation_text, encode_continuation, encode_prompt, pad_batch, pad_id,
                                   prompt_text)
from lensft.prompts import PromptSet
from lensft.prompts.spans import char_span_to_tokens
from lensft.prompts.schema import TaskItem, TextItem
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)


class AttentionSpreadSettings(BaseModel):
    """Settings of the ``attention_spread`` probe."""

    chunk_q: int = Field(256, ge=1, description="query block size of the streamed statistics")
    chunk_k: int = Field(2048, ge=1, description="key block size of the streamed statistics")
    normalise: bool = Field(False, description="headline summary uses entropy / log(visible keys)")
    max_length: int = Field(4096, ge=2, description="prompts are cut to this many tokens")
    chat: Optional[bool] = Field(None, description="chat-format task prompts; None = the prompt set's header")
    output: Literal["streamed", "sdpa"] = Field("streamed", description="attention output from the streamed pass or torch sdpa")
    phase_queries: Literal["generating", "at_tokens"] = Field(
        "generating", description="task items: a phase's queries are the positions that generate its tokens, or its tokens")
    batch_size: int = Field(4, ge=1, description="prompts per forward pass (right-padded; results equal batch size 1)")


@dataclass
class EncodedPrompt:
    """A tokenized prompt with phases (query ranges) and key spans, in token positions ``[start, end)``."""

    id: str
    ids: list[int]
    phases: dict[str, list[tuple[int, int]]]
    key_spans: dict[str, tuple[int, int]]
    truncated: bool = False


def _ranges(flags: list[bool]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = None
    for i, f in enumerate(flags + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def generating_queries(phases: dict[str, list[tuple[int, int]]]) -> dict[str, list[tuple[int, int]]]:
    """Shift every phase one position left: the query at t-1 generates token t (empty ranges dropped)."""
    shifted = {k: [(max(a - 1, 0), b - 1) for a, b in v] for k, v in phases.items()}
    return {k: [(a, b) for a, b in v if b > a] for k, v in shifted.items()}


def encode_for_spread(handle: ModelHandle, prompts: PromptSet, *, chat: bool, max_length: int,
                      phase_queries: str = "generating") -> list[EncodedPrompt]:
    """Tokenize ``text`` or ``task`` items into ids, phases and key spans."""
    out: list[EncodedPrompt] = []
    for it in prompts.items:
        if isinstance(it, TextItem):
            enc = handle.tokenizer(it.text, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            offs = [tuple(o) for o in enc["offset_mapping"]]
            flags: dict[str, list[bool]] = {}
            for sp in it.spans:
                f = char_span_to_tokens(offs, sp.start, sp.end)  # type: ignore[arg-type]
                prev = flags.get(sp.name, [False] * len(ids))
                flags[sp.name] = [x or y for x, y in zip(prev, f)]
            phases = {"all": [(0, len(ids))], **{k: _ranges(v) for k, v in flags.items()}}
            key_spans = {}
            for k, r in phases.items():
                if k != "all" and r:
                    key_spans[k] = (r[0][0], r[-1][1])  # a key span is contiguous: first..last token
        elif isinstance(it, TaskItem):
            text = prompt_text(handle, it.prompt, chat=chat)
            p = encode_prompt(handle, text, chat=chat)
            phases = {"prompt": [(0, len(p))]}
            ids = list(p)
            so_far = text
            if it.reasoning:
                r = encode_continuation(handle, continuation_text(text, it.reasoning, chat=chat) + "\n")
                phases["reasoning"] = [(len(ids), len(ids) + len(r))]
                ids += r
                so_far = text + it.reasoning + "\n"
            a = encode_continuation(handle, continuation_text(so_far, it.answer, chat=chat))
            phases["answer"] = [(len(ids), len(ids) + len(a))]
            ids += a
            key_spans = {"prompt": (0, len(p))}
            if phase_queries == "generating":
                phases = generating_queries({"prompt": [(1, len(p))], **{k: v for k, v in phases.items() if k != "prompt"}})
        else:
            raise LensftError(f"attention_spread takes text or task prompt sets, not {prompts.kind!r}")
        truncated = len(ids) > max_length
        if truncated:
            ids = ids[:max_length]
            phases = {k: [(a, min(e, max_length)) for a, e in v if a < max_length] for k, v in phases.items()}
            key_spans = {k: (a, min(e, max_length)) for k, (a, e) in key_spans.items() if a < max_length}
        out.append(EncodedPrompt(it.id, ids, phases, key_spans, truncated))
    return out


def attention_spread(handle: ModelHandle, prompts: PromptSet, settings: AttentionSpreadSettings | None = None,
                     *, probe_name: str = "attention_spread") -> ProbeResult:
    """Run the probe (see the module docstring); ``batch_size`` prompts per forward pass."""
    s = settings or AttentionSpreadSettings()
    if prompts.kind not in AttentionSpreadProbe.kinds:
        raise LensftError(f"attention_spread takes text or task prompt sets, not {prompts.kind!r}")
    chat = prompts.header.chat if s.chat is None else s.chat
    max_length = min(s.max_length, handle.max_positions or s.max_length)  # never past a learned position table
    encoded = encode_for_spread(handle, prompts, chat=chat, max_length=max_length, phase_queries=s.phase_queries)
    phase_names: list[str] = []
    span_names: list[str] = []
    for e in encoded:
        phase_names += [p for p in e.phases if p not in phase_names]
        span_names += [k for k in e.key_spans if k not in span_names]
    per_prompt, span_pp = spread_per_prompt(handle, encoded, phase_names, span_names, s)
    records = [{
        "id": e.id, "n_tokens": len(e.ids), "truncated": e.truncated,
        "phase_tokens": {k: sum(b - a for a, b in v) for k, v in e.phases.items()},
        "key_spans": {k: list(v) for k, v in e.key_spans.items()},
    } for e in encoded]
    result = ProbeResult(
        probe=probe_name, model=handle.provenance,
        prompt_set=PromptSetRef(name=prompts.name, version=prompts.version, n_items=len(prompts)),
        settings={**s.model_dump(), "chat": chat}, records=records,
    )
    L, H = handle.n_layers, handle.n_heads
    result.coords.update({"phase": phase_names, "layer": list(range(L)), "head": list(range(H)),
                          "prompt": [e.id for e in encoded], "key_span": span_names})
    for fi, name in enumerate(STAT_FIELDS):
        result.set_array(name, nanmean(per_prompt[..., fi], 0), ["phase", "layer", "head"])
        result.set_array(f"{name}_per_prompt", per_prompt[..., fi], ["prompt", "phase", "layer", "head"])
    result.set_array("span_mass", nanmean(span_pp, 0), ["phase", "key_span", "layer", "head"])
    result.set_array("span_mass_per_prompt", span_pp, ["prompt", "phase", "key_span", "layer", "head"])
    head = "norm_entropy" if s.normalise else "entropy"
    for pi, name in enumerate(phase_names):
        for fi, f in enumerate(STAT_FIELDS):
            result.summary[f"mean_{f}_{name}"] = mean_or_none(per_prompt[:, pi, :, :, fi])
        result.summary[f"headline_entropy_{name}"] = result.summary[f"mean_{head}_{name}"]
    result.summary["n_prompts"] = float(len(encoded))
    return result


@torch.no_grad()
def spread_per_prompt(handle: ModelHandle, encoded: list[EncodedPrompt], phase_names: list[str],
                      span_names: list[str], s: AttentionSpreadSettings
                      ) -> tuple[Float[Tensor, "prompt phase layer head field"], Float[Tensor, "prompt phase span layer head"]]:
    """Per-prompt phase means of the statistics (``STAT_FIELDS``) and of the span masses (float64,
    NaN where a prompt lacks a phase or span).

    Prompts run ``batch_size`` at a time, right-padded, longest first (so a batch holds prompts of
    similar length); in a causal model a real token never attends to the padding after it, and
    padded positions belong to no phase, so every prompt gets the values it gets alone (up to
    float rounding).
    """
    L, H, n_f = handle.n_layers, handle.n_heads, len(STAT_FIELDS)
    per_prompt = torch.full((len(encoded), len(phase_names), L, H, n_f), math.nan, dtype=torch.float64)
    span_pp = torch.full((len(encoded), len(phase_names), len(span_names), L, H), math.nan, dtype=torch.float64)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids))
    for chunk in batched(order, s.batch_size):
        rows = [encoded[i] for i in chunk]
        spans = {n: [e.key_spans.get(n) for e in rows] for n in span_names if any(n in e.key_spans for e in rows)}
        col = AttentionCollector.for_handle(handle, phases=[e.phases for e in rows], key_spans=spans,
                                            chunk_q=s.chunk_q, chunk_k=s.chunk_k, output=s.output, top1=False)
        batch = pad_batch([e.ids for e in rows], pad_id(handle), side="right", device=handle.input_device)
        with collect_attention(handle, col):  # right padding in a causal model: real tokens never see the
            # padding after them, so no padding mask is needed (and the kernel keeps its unmasked fast path)
            handle.model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False)
        means = col.means()  # [row, phase, layer, head, field]
        for r, (i, e) in enumerate(zip(chunk, rows)):
            for name in e.phases:
                pi, gi = col.phase_names.index(name), phase_names.index(name)
                per_prompt[i, gi] = means[r, pi, :, :, :n_f]
                for sname in e.key_spans:
                    span_pp[i, gi, span_names.index(sname)] = means[r, pi, :, :, n_f + list(spans).index(sname)]
    return per_prompt, span_pp


@register_probe
class AttentionSpreadProbe:
    """Attention entropy / distance / sink / span mass per phase, layer and head (streamed, exact)."""

    name: ClassVar[str] = "attention_spread"
    description: ClassVar[str] = "attention entropy, distance, sink and span mass per phase x layer x head (streamed)"
    kinds: ClassVar[tuple[str, ...]] = ("text", "task")
    Settings: ClassVar[type[BaseModel]] = AttentionSpreadSettings

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: Any = None) -> ProbeResult:
        s = settings if isinstance(settings, AttentionSpreadSettings) else AttentionSpreadSettings.model_validate(settings or {})
        return attention_spread(handle, prompts, s, probe_name=self.name)
