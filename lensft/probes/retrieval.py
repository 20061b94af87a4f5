"""Probe ``retrieval_heads``: retrieval scores of every head (Wu et al. 2024, arXiv 2404.15574).

As Wu et al.'s reference code (``retrieval_head_detection.py``: ``decode``,
``retrieval_calculate``, ``evaluate_and_log``) and the paper (§3, eq. 6) define it, on
needle-in-a-haystack items (prompt-set kind ``needle``; :func:`lensft.prompts.build_needle_set`
builds Wu-style sets):

1. The prompt is chat-formatted (unless ``chat`` is off) and tokenized; the needle's character
   span (``NeedleItem.needle``: Wu et al.'s ``real_needle``) is mapped to token positions
   ``[needle_start, needle_end)`` with the tokenizer's offsets mapping.
2. All prompt tokens but the last are prefilled (KV cache, plain sdpa); then the model decodes
   greedily, feeding the last prompt token first, for at most ``len(needle tokens) +
   extra_steps`` steps (32 extra by default; fewer where a learned position table ends),
   stopping after an end-of-sequence / end-of-turn token or a newline that follows generated
   text.
3. At each decode step, for each layer and head, the top-1 attended key of the step's single
   query is taken from the streamed ``lensft_stats`` kernel (no attention matrix). It is a
   *hit* when it lies in the needle span and the prompt token there equals the token generated
   at this step. An item's score per head is ``hits / needle length in tokens``.
4. The generation (special tokens dropped, stripped) is *copied* when the ROUGE-1 recall of the
   needle in it (:func:`~lensft.probes.scoring.rouge1_recall`, rouge-score with Porter
   stemming) is **above** ``copy_recall`` (0.5), as Wu et al.'s ``score > 50``.
5. A head's score is the mean of its item scores over the **copied items only** (Wu et al.
   add an item's scores only when the needle was retrieved). Heads scoring above ``threshold``
   (0.1) are retrieval heads. With no copied item every score is NaN: nothing was measured.

Differences from Wu et al.'s code: decoding stops at an end-of-turn token too and at most
``needle tokens + extra_steps`` steps (Wu et al.: 50 steps, stop at the first newline token
even before any text); Wu et al. locate the needle by token-set overlap, lensft by character
offsets; Wu et al. accumulate head scores across runs of their script, lensft per result.

Arrays: ``score`` ``[layer, head]`` (mean over copied items; NaN when none), ``score_per_item``
``[item, layer, head]`` (every item, copied or not; ``hits = score x needle_tokens``). Records
(one per item, for bootstrapping over items): ``id``, ``copied``, ``recall``, ``generated``,
``n_steps``, ``max_steps``, ``needle_tokens`` ``[start, end)``, ``prompt_tokens``, ``context_tokens``,
``depth``, ``hits``. Summary: ``n_items``, ``n_copied``, ``needle_copy_accuracy``
(``n_copied / n_items``), ``mean_recall``, ``mean_score`` (over all heads), ``max_score``,
``n_retrieval_heads``, ``mean_retrieval_head_score``. A study should not judge retrieval with
fewer than about 10 copied items.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from jaxtyping import Bool, Float, Int
from pydantic import BaseModel, Field
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.attention_kernel import AttentionCollector, collect_attention, use_kernel
from lensft.probes.registry import register_probe
from lensft.probes.scoring import (continuation_text, encode_continuation, forward_cached, model_device, prompt_text,
                                   rouge1_recall, stop_token_ids)
from lensft.prompts import PromptSet
from lensft.prompts.schema import NeedleItem
from lensft.prompts.spans import char_span_to_tokens
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)

#: Fewer copied needles than this make retrieval scores too noisy to compare (logged).
MIN_COPIED = 10


class RetrievalSettings(BaseModel):
    """Settings of the ``retrieval_heads`` probe."""

    extra_steps: int = Field(32, ge=0, description="decode steps allowed beyond the needle's token count")
    threshold: float = Field(0.1, description="heads scoring above this are retrieval heads")
    copy_recall: float = Field(0.5, ge=0.0, le=1.0,
                               description="an item is copied when the needle's ROUGE-1 recall in the generation exceeds this")
    chat: Optional[bool] = Field(None, description="chat-format prompts; None = the prompt set's header")
    max_length: int = Field(32768, ge=2, description="longest prompt in tokens (longer items are an error)")
    chunk_k: int = Field(2048, ge=1, description="key block size of the streamed top-1 search")
    stop_at_eos: bool = Field(True, description="stop decoding after an end-of-sequence / end-of-turn token")
    stop_at_newline: bool = Field(True, description="stop decoding after a newline that follows generated text")


@dataclass
class NeedleDecode:
    """One item's greedy decode: generated token ids and per-head hit counts ``[layer, head]``."""

    generated: list[int]
    hits: Float[Tensor, "layer head"]


def needle_token_span(handle: ModelHandle, item: NeedleItem, *, chat: bool) -> tuple[list[int], int, int]:
    """Token ids of the formatted prompt and the needle's token span ``[start, end)``."""
    text = prompt_text(handle, item.prompt, chat=chat)
    off = text.find(item.prompt)
    if off < 0:
        raise LensftError(f"needle item {item.id!r}: the chat template altered the prompt text; run with chat off")
    formatted = chat and bool(getattr(handle.tokenizer, "chat_template", None))
    enc = handle.tokenizer(text, add_special_tokens=not formatted, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    flags = char_span_to_tokens([tuple(o) for o in enc["offset_mapping"]], off + item.needle.start, off + item.needle.end)
    pos = [i for i, f in enumerate(flags) if f]
    if not pos:
        raise LensftError(f"needle item {item.id!r}: the needle span {item.needle.start}..{item.needle.end} covers no token")
    return ids, pos[0], pos[-1] + 1


def retrieval_hits(top1: Int[Tensor, "layer head"], prompt_ids: Int[Tensor, " prompt"], needle_start: int,
                   needle_end: int, token: int) -> Bool[Tensor, "layer head"]:
    """Wu et al.'s copy test for one decode step: the head's top-1 key lies in the needle span
    ``[needle_start, needle_end)`` and the prompt token there is ``token`` (the one just generated)."""
    inside = (top1 >= needle_start) & (top1 < needle_end)
    same = prompt_ids[top1.clamp(0, prompt_ids.shape[0] - 1)] == token
    return inside & same


def _finished(handle: ModelHandle, generated: list[int], stops: set[int], at_newline: bool) -> bool:
    if generated[-1] in stops:
        return True
    return at_newline and "\n" in handle.tokenizer.decode(generated, skip_special_tokens=True).lstrip()


@torch.no_grad()
def decode_needle(handle: ModelHandle, ids: list[int], needle: tuple[int, int], max_steps: int,
                  s: RetrievalSettings) -> NeedleDecode:
    """Prefill ``ids[:-1]`` (sdpa), then decode greedily from ``ids[-1]``, scoring every step's top-1 keys."""
    device = model_device(handle)
    stops = set(stop_token_ids(handle)) if s.stop_at_eos else set()
    prompt_ids = torch.tensor(ids)
    past = None
    with use_kernel(handle):
        if len(ids) > 1:
            past = forward_cached(handle.model, input_ids=prompt_ids[None, :-1].to(device))[1]
    col = AttentionCollector.for_handle(handle, chunk_q=1, chunk_k=s.chunk_k)
    hits = torch.zeros(handle.n_layers, handle.n_heads, dtype=torch.float64)
    generated: list[int] = []
    inp, pos = ids[-1], len(ids) - 1
    with collect_attention(handle, col):
        for _ in range(max_steps):
            col.query_start = pos
            logits, past = forward_cached(handle.model, past, input_ids=torch.tensor([[inp]], device=device))
            tok = int(logits[0, -1].argmax())
            top = torch.stack([col.last_top1[layer][0] for layer in range(handle.n_layers)])  # [layer, head]
            hits += retrieval_hits(top, prompt_ids, needle[0], needle[1], tok).to(torch.float64)
            generated.append(tok)
            inp, pos = tok, pos + 1
            if _finished(handle, generated, stops, s.stop_at_newline):
                break
    return NeedleDecode(generated, hits)


def score_item(handle: ModelHandle, it: NeedleItem, s: RetrievalSettings, *,
               chat: bool) -> tuple[Float[Tensor, "layer head"], dict[str, Any]]:
    """One item's per-head scores (``hits / needle tokens``) and its record."""
    ids, ns, ne = needle_token_span(handle, it, chat=chat)
    if len(ids) > s.max_length:
        raise LensftError(f"needle item {it.id!r} has {len(ids)} tokens > max_length {s.max_length}; raise max_length")
    text = prompt_text(handle, it.prompt, chat=chat)
    n_needle = len(encode_continuation(handle, continuation_text(text, it.answer, chat=chat)))
    steps = n_needle + s.extra_steps
    limit = handle.max_positions
    if limit is not None and len(ids) + n_needle > limit:
        raise LensftError(f"needle item {it.id!r} needs {len(ids) + n_needle} positions (prompt and needle) but "
                          f"{handle.label} has {limit}; use shorter needle prompts for this model")
    if limit is not None:
        steps = min(steps, limit - len(ids))  # a learned position table caps the decoding
    dec = decode_needle(handle, ids, (ns, ne), steps, s)
    gen_text = handle.tokenizer.decode(dec.generated, skip_special_tokens=True).strip()
    recall = rouge1_recall(it.answer, gen_text)
    record = {
        "id": it.id, "copied": recall > s.copy_recall, "recall": recall, "generated": gen_text,
        "n_steps": len(dec.generated), "max_steps": steps, "needle_tokens": [ns, ne], "prompt_tokens": len(ids),
        "context_tokens": it.context_tokens, "depth": it.depth, "hits": int(dec.hits.sum()),
    }
    return dec.hits / (ne - ns), record


def summarise(score: Float[Tensor, "layer head"], records: list[dict[str, Any]],
              threshold: float) -> dict[str, Optional[float]]:
    """Headline scalars of a retrieval result (see the module docstring)."""
    n, k = len(records), sum(bool(r["copied"]) for r in records)
    measured = k > 0
    is_ret = score > threshold
    return {
        "n_items": float(n), "n_copied": float(k),
        "needle_copy_accuracy": k / n if n else None,
        "mean_recall": sum(r["recall"] for r in records) / n if n else None,
        "mean_score": float(score.mean()) if measured else None,
        "max_score": float(score.max()) if measured and score.numel() else None,
        "n_retrieval_heads": float(is_ret.sum()) if measured else None,
        "mean_retrieval_head_score": float(score[is_ret].mean()) if measured and is_ret.any() else None,
    }


@torch.no_grad()
def retrieval_scores(handle: ModelHandle, prompts: PromptSet, settings: RetrievalSettings | None = None,
                     *, probe_name: str = "retrieval_heads") -> ProbeResult:
    """Run the probe (see the module docstring); one item at a time, batch 1."""
    s = settings or RetrievalSettings()
    if prompts.kind != "needle":
        raise LensftError(f"retrieval_heads takes a needle prompt set, not {prompts.kind!r}")
    chat = prompts.header.chat if s.chat is None else s.chat
    L, H = handle.n_layers, handle.n_heads
    per_item = torch.zeros(len(prompts), L, H, dtype=torch.float64)
    records: list[dict[str, Any]] = []
    for n, it in enumerate(prompts.items):
        assert isinstance(it, NeedleItem)
        per_item[n], rec = score_item(handle, it, s, chat=chat)
        records.append(rec)
        log.info("needle %s: copied=%s recall=%.2f %r", it.id, rec["copied"], rec["recall"], rec["generated"][:80])
    copied = torch.tensor([bool(r["copied"]) for r in records], dtype=torch.bool)
    score = per_item[copied].mean(0) if bool(copied.any()) else torch.full((L, H), math.nan, dtype=torch.float64)
    if int(copied.sum()) < MIN_COPIED:
        log.warning("%s copied %d of %d needles; retrieval scores need at least %d copied needles to compare models",
                    handle.label, int(copied.sum()), len(records), MIN_COPIED)
    result = ProbeResult(
        probe=probe_name, model=handle.provenance,
        prompt_set=PromptSetRef(name=prompts.name, version=prompts.version, n_items=len(prompts)),
        settings={**s.model_dump(), "chat": chat}, records=records,
    )
    result.coords.update({"layer": list(range(L)), "head": list(range(H)), "item": [r["id"] for r in records]})
    result.set_array("score", score, ["layer", "head"])
    result.set_array("score_per_item", per_item, ["item", "layer", "head"])
    result.summary.update(summarise(score, records, s.threshold))
    return result


@register_probe
class RetrievalHeadsProbe:
    """Retrieval score per layer x head on needle items (Wu et al. 2024), from streamed top-1 attention."""

    name: ClassVar[str] = "retrieval_heads"
    description: ClassVar[str] = "retrieval-head scores per layer x head on needle-in-a-haystack items (Wu et al. 2024)"
    kinds: ClassVar[tuple[str, ...]] = ("needle",)
    Settings: ClassVar[type[BaseModel]] = RetrievalSettings

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: Any = None) -> ProbeResult:
        s = settings if isinstance(settings, RetrievalSettings) else RetrievalSettings.model_validate(settings or {})
        return retrieval_scores(handle, prompts, s, probe_name=self.name)
