"""Probe ``retrieval_heads``: retrieval scores of every head (Wu et al. 2024, arXiv 2404.15574).

As the reference code (``retrieval_calculate``) and the paper (§3, eq. 6) use it, on
needle-in-a-haystack items (prompt-set kind ``needle``):

1. The prompt is chat-formatted (unless ``chat`` is off) and tokenized; the needle's character
   span (``NeedleItem.needle``, inside the user text) is mapped to token positions
   ``[needle_start, needle_end)`` with the tokenizer's offsets mapping.
2. All prompt tokens but the last are prefilled (KV cache); then the model decodes greedily,
   feeding the last prompt token first, for ``len(answer tokens) + extra_steps`` steps (or
   until an end token).
3. At each decode step, for each layer and head, the top-1 attended key of the (single) query
   is taken from the streamed ``lensft_stats`` kernel (no attention matrix). It is a *hit* when
   it lies in the needle span and the prompt token there equals the token generated at this
   step. An item's score is ``hits / needle length in tokens``.
4. Scores are averaged over items (haystack lengths x depths). Heads scoring above
   ``threshold`` (0.1) are retrieval heads.

Arrays: ``score`` ``[layer, head]``, ``score_per_item`` ``[item, layer, head]``. Summary:
``mean_score`` (over all heads), ``n_retrieval_heads``, ``mean_retrieval_head_score``,
``max_score`` and ``needle_copy_accuracy`` (fraction of items whose generation contains the
answer, SQuAD-normalised).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Optional

import torch
from jaxtyping import Bool, Int
from pydantic import BaseModel, Field
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.attention_kernel import AttentionCollector, collect_attention, use_kernel
from lensft.probes.attention_spread import char_span_to_tokens
from lensft.probes.registry import register_probe
from lensft.probes.scoring import contains_match, continuation_text, encode_continuation, prompt_text, stop_token_ids
from lensft.prompts import PromptSet
from lensft.prompts.schema import NeedleItem
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)


class RetrievalSettings(BaseModel):
    """Settings of the ``retrieval_heads`` probe."""

    extra_steps: int = Field(4, ge=0, description="decode steps beyond the answer's token count")
    threshold: float = Field(0.1, description="heads scoring above this are retrieval heads")
    chat: Optional[bool] = Field(None, description="chat-format prompts; None = the prompt set's header")
    max_length: int = Field(32768, ge=2, description="longest prompt in tokens (longer items are an error)")
    chunk_k: int = Field(2048, ge=1, description="key block size of the streamed top-1 search")
    stop_at_eos: bool = Field(True, description="stop decoding at an end token")


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


@torch.no_grad()
def retrieval_scores(handle: ModelHandle, prompts: PromptSet, settings: RetrievalSettings | None = None,
                     *, probe_name: str = "retrieval_heads") -> ProbeResult:
    """Run the probe (see the module docstring); one item at a time, batch 1."""
    s = settings or RetrievalSettings()
    if prompts.kind != "needle":
        raise LensftError(f"retrieval_heads takes a needle prompt set, not {prompts.kind!r}")
    chat = prompts.header.chat if s.chat is None else s.chat
    L, H = handle.n_layers, handle.n_heads
    device = next(handle.model.parameters()).device
    stops = set(stop_token_ids(handle)) if s.stop_at_eos else set()
    per_item = torch.zeros(len(prompts), L, H, dtype=torch.float64)
    records: list[dict[str, Any]] = []
    for n, it in enumerate(prompts.items):
        assert isinstance(it, NeedleItem)
        ids, ns, ne = needle_token_span(handle, it, chat=chat)
        if len(ids) > s.max_length:
            raise LensftError(f"needle item {it.id!r} has {len(ids)} tokens > max_length {s.max_length}; raise max_length")
        text = prompt_text(handle, it.prompt, chat=chat)
        n_answer = len(encode_continuation(handle, continuation_text(text, it.answer, chat=chat)))
        limit = handle.max_positions
        if limit is not None and len(ids) + n_answer > limit:
            raise LensftError(f"needle item {it.id!r} needs {len(ids) + n_answer} positions (prompt and answer) but "
                              f"{handle.label} has {limit}; use shorter needle prompts for this model")
        prompt_ids = torch.tensor(ids, device=device)
        past = None
        with use_kernel(handle):
            if len(ids) > 1:
                past = handle.model(input_ids=prompt_ids[None, :-1], use_cache=True).past_key_values
        col = AttentionCollector.for_handle(handle, chunk_q=1, chunk_k=s.chunk_k)
        hits = torch.zeros(L, H, dtype=torch.float64)
        generated: list[int] = []
        inp = ids[-1]
        pos = len(ids) - 1
        with collect_attention(handle, col):
            for _ in range(n_answer + s.extra_steps):
                col.query_start = pos
                out = handle.model(input_ids=torch.tensor([[inp]], device=device), past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = int(out.logits[0, -1].argmax())
                top = torch.stack([col.last_top1[layer][0] for layer in range(L)])  # [layer, head]
                hits += retrieval_hits(top, prompt_ids.cpu(), ns, ne, tok).to(torch.float64)
                generated.append(tok)
                inp, pos = tok, pos + 1
                if tok in stops:
                    break
        per_item[n] = hits / (ne - ns)
        gen_text = handle.tokenizer.decode(generated, skip_special_tokens=True)
        records.append({
            "id": it.id, "context_tokens": it.context_tokens, "depth": it.depth, "prompt_tokens": len(ids),
            "needle_tokens": [ns, ne], "n_steps": len(generated), "generated": gen_text,
            "copied": contains_match(gen_text, [it.answer]), "hits": int(hits.sum()),
        })
    score = per_item.mean(0) if len(prompts) else torch.zeros(L, H, dtype=torch.float64)
    result = ProbeResult(
        probe=probe_name, model=handle.provenance,
        prompt_set=PromptSetRef(name=prompts.name, version=prompts.version, n_items=len(prompts)),
        settings={**s.model_dump(), "chat": chat}, records=records,
    )
    result.coords.update({"layer": list(range(L)), "head": list(range(H)), "item": [r["id"] for r in records]})
    result.set_array("score", score, ["layer", "head"])
    result.set_array("score_per_item", per_item, ["item", "layer", "head"])
    is_ret = score > s.threshold
    result.summary.update({
        "mean_score": float(score.mean()),
        "max_score": float(score.max()) if score.numel() else None,
        "n_retrieval_heads": float(is_ret.sum()),
        "mean_retrieval_head_score": float(score[is_ret].mean()) if is_ret.any() else None,
        "needle_copy_accuracy": (sum(r["copied"] for r in records) / len(records)) if records else None,
    })
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
