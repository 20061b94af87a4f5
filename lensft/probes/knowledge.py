"""Knowledge preference on conflict items: does the model follow the context or its memory?

On each :class:`~lensft.prompts.ConflictItem` (context contradicting a memorised fact):

(a) **Yes/no conflict accuracy** (the paper's metric, after Jin et al. 2025): on ``yn_prompt``
    the model answers "Yes" when log p(Yes-like) > log p(No-like) for the *next token* after the
    (chat-formatted) prompt, where log p(Yes-like) is the log-sum-exp over the distinct first
    tokens of ``yes_words`` and their space-prefixed forms (likewise for No; first tokens shared
    by both sides, such as a bare space, are dropped). No generation or
    keyword parsing is involved, so every item gets an answer. Accuracy is measured against
    ``yn_label``, the answer under *memorised* knowledge: higher = follows memory; 0.5 on a
    balanced set is chance.
(b) **Open-answer rates** (ConflictQA style): the greedy answer to ``prompt`` (first line, at most
    ``max_new_tokens``) is classed ``context`` / ``memory`` / ``both`` / ``neither`` by whether the
    normalised context answer and memory answer occur in it as whole words.
(c) **Generation-free margin**: ``margin = log p(context_answer | prompt) - log p(memory_answer |
    prompt)`` with full-sequence answer log-probabilities (sum over answer tokens, nats), and the
    memorisation ratio ``mr = p_mem / (p_mem + p_ctx) = sigmoid(-margin)`` (Longpre et al. 2021).
(d) **Logit lens**: the same margin read at every layer through the unembedding: the residual
    stream output of layer i at the last prompt position, through the family's ``final_norm`` and
    ``lm_head`` (no final-logit soft-capping), using the *first token* of each answer only. Items
    whose two answers share their first token get NaN and are left out of the means. The last
    layer's lens margin is the model's own first-token margin.

**Known items.** Before scoring, the closed-book prompt checks whether the model knows the
memory answer. ``known_rule="either"`` (default): the greedy closed-book answer contains the
memory answer, or log p(memory_answer | closed book) > log p(context_answer | closed book);
``"greedy"`` / ``"rank"`` use one test only (``"rank"`` when ``generate`` is off). Scores are
reported on all items and on known items (suffix ``_known``).

Summary keys: ``yn_accuracy``, ``ctx_follow_rate``, ``mem_follow_rate``, ``both_rate``,
``neither_rate``, ``margin_mean``, ``ctx_pref_rate`` (fraction with margin > 0), ``mr_mean``,
``lens_margin_last`` — each also with ``_known`` — plus ``known_rate``, ``n_items``, ``n_known``
and ``yn_accuracy_<domain>``. Array ``lens_margin`` has dims ``[subset, layer]`` with subsets
``all`` and ``known``. Records hold every per-item quantity.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import ClassVar, Literal, Optional, Sequence

import torch
from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.conflict_formats import load_conflicts
from lensft.probes.registry import register_probe
from lensft.probes.scoring import (batched, contains_match, continuation_logprobs, continuation_text,
                                   encode_continuation, encode_prompt, greedy_generate, model_device,
                                   next_token_logprobs, pad_batch, pad_id, prompt_text)
from lensft.prompts import ConflictItem, PromptSet
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)


class KnowledgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(8, ge=1)
    generate: bool = Field(True, description="greedy open answers and closed-book answers (b); off = generation-free")
    max_new_tokens: int = Field(16, ge=1)
    lens: bool = Field(True, description="per-layer logit-lens margin (d)")
    known_rule: Literal["either", "greedy", "rank"] = "either"
    chat: Optional[bool] = Field(None, description="chat-format prompts; None = the prompt set's header")
    yes_words: list[str] = Field(default_factory=lambda: ["Yes", "yes"])
    no_words: list[str] = Field(default_factory=lambda: ["No", "no"])


# ---------------------------------------------------------------------------------------- math
def memorisation_ratio(margin: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """p_mem / (p_mem + p_ctx) from margin = log p_ctx - log p_mem."""
    return torch.sigmoid(-margin)


def yes_no_logprobs(next_lp: Float[Tensor, "n vocab"], yes_ids: Sequence[int],
                    no_ids: Sequence[int]) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """log p(Yes-like), log p(No-like): log-sum-exp of next-token log-probs over each id set."""
    return (torch.logsumexp(next_lp[:, list(yes_ids)], -1), torch.logsumexp(next_lp[:, list(no_ids)], -1))


def lens_margin(resid: Float[Tensor, "n layer d"], final_norm: torch.nn.Module, lm_head: torch.nn.Module,
                ctx_ids: Sequence[int], mem_ids: Sequence[int]) -> Float[Tensor, "n layer"]:
    """Logit-lens first-token margin log p(ctx) - log p(mem) at every layer."""
    lp = torch.log_softmax(lm_head(final_norm(resid)).float(), -1)
    c = torch.tensor(list(ctx_ids)).view(-1, 1, 1).expand(-1, lp.shape[1], 1)
    m = torch.tensor(list(mem_ids)).view(-1, 1, 1).expand(-1, lp.shape[1], 1)
    return (lp.gather(-1, c) - lp.gather(-1, m)).squeeze(-1)


def first_token_ids(handle: ModelHandle, words: Sequence[str]) -> list[int]:
    """Distinct first tokens of each word and of its space-prefixed form."""
    ids: list[int] = []
    for w in words:
        for v in (w, " " + w):
            t = encode_continuation(handle, v)
            if t and t[0] not in ids:
                ids.append(t[0])
    return ids


# ---------------------------------------------------------------------------------------- encoding
def encode_conflict(handle: ModelHandle, item: ConflictItem, *, chat: bool,
                    closed_book: bool = False) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, context-answer ids, memory-answer ids) for the open (or closed-book) prompt."""
    text = prompt_text(handle, item.closed_book_prompt if closed_book else item.prompt, chat=chat)
    p = encode_prompt(handle, text, chat=chat)
    c = encode_continuation(handle, continuation_text(text, item.context_answer, chat=chat))
    m = encode_continuation(handle, continuation_text(text, item.memory_answer, chat=chat))
    return p, c, m


def answer_margins(handle: ModelHandle, encoded: Sequence[tuple[list[int], list[int], list[int]]],
                   batch_size: int = 8) -> tuple[list[float], list[float]]:
    """(log p(ctx answer | prompt), log p(mem answer | prompt)) per item, full-sequence sums."""
    prompts = [e[0] for e in encoded for _ in (0, 1)]
    conts = [x for e in encoded for x in (e[1], e[2])]
    sc = continuation_logprobs(handle, prompts, conts, batch_size=batch_size)
    return [sc[2 * k][0] for k in range(len(encoded))], [sc[2 * k + 1][0] for k in range(len(encoded))]


@torch.no_grad()
def residual_at_last(handle: ModelHandle, prompts: Sequence[Sequence[int]],
                     batch_size: int = 8) -> Float[Tensor, "n layer d"]:
    """Each layer's output (residual stream) at each prompt's last token, traced with nnsight."""
    lm = handle.nnsight()
    dev = model_device(handle)
    out = []
    for chunk in batched(list(prompts), batch_size):
        b = pad_batch(chunk, pad_id(handle), side="right", device=dev)
        rows = torch.arange(len(chunk), device=dev)
        last = torch.tensor([n - 1 for n in b.lengths], device=dev)
        saved = []
        with lm.trace(b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids):
            for i in range(handle.n_layers):
                o = lm.get(handle.layer_path(i)).output
                h = o[0] if isinstance(o, tuple) else o
                saved.append(h[rows, last].save())
        out.append(torch.stack([s.detach() for s in saved], 1).cpu())
    return torch.cat(out, 0)


# ---------------------------------------------------------------------------------------- probe
def score_knowledge(handle: ModelHandle, prompt_set: PromptSet, settings: KnowledgeSettings | None = None) -> ProbeResult:
    """Run (a)-(d) and the closed-book check on a ``conflict`` prompt set."""
    s = settings or KnowledgeSettings()
    if prompt_set.kind != "conflict":
        raise LensftError(f"knowledge_preference needs a 'conflict' prompt set, not {prompt_set.kind!r}")
    items: list[ConflictItem] = list(prompt_set.items)  # type: ignore[arg-type]
    if not items:
        raise LensftError(f"prompt set {prompt_set.name!r} has no items")
    chat = prompt_set.header.chat if s.chat is None else s.chat
    n = len(items)
    recs: list[dict] = [{"id": it.id, "domain": it.domain, "context_answer": it.context_answer,
                         "memory_answer": it.memory_answer} for it in items]

    # closed book: does the model know the memory answer?
    cb = [encode_conflict(handle, it, chat=chat, closed_book=True) for it in items]
    cb_ctx, cb_mem = answer_margins(handle, cb, s.batch_size)
    rank_known = [m > c for c, m in zip(cb_ctx, cb_mem)]
    rule = s.known_rule if s.generate else "rank"
    if rule != "rank":
        cb_pred = greedy_generate(handle, [e[0] for e in cb], max_new_tokens=s.max_new_tokens, batch_size=s.batch_size)
        greedy_known = [contains_match(p, [it.memory_answer]) for p, it in zip(cb_pred, items)]
    else:
        cb_pred, greedy_known = [None] * n, [False] * n
    known = [g if rule == "greedy" else r if rule == "rank" else (g or r) for g, r in zip(greedy_known, rank_known)]
    for r, p, k, c, m in zip(recs, cb_pred, known, cb_ctx, cb_mem):
        r.update(closed_book_prediction=p, known=k, closed_book_logp_ctx=c, closed_book_logp_mem=m)

    # (c) margin and memorisation ratio
    enc = [encode_conflict(handle, it, chat=chat) for it in items]
    lp_ctx, lp_mem = answer_margins(handle, enc, s.batch_size)
    margin = torch.tensor(lp_ctx, dtype=torch.float64) - torch.tensor(lp_mem, dtype=torch.float64)
    mr = memorisation_ratio(margin)
    for r, c, m, g, q in zip(recs, lp_ctx, lp_mem, margin.tolist(), mr.tolist()):
        r.update(logp_ctx=c, logp_mem=m, margin=g, mr=q)

    # (b) open answers
    if s.generate:
        preds = greedy_generate(handle, [e[0] for e in enc], max_new_tokens=s.max_new_tokens, batch_size=s.batch_size)
        for r, p, it in zip(recs, preds, items):
            hc, hm = contains_match(p, [it.context_answer]), contains_match(p, [it.memory_answer])
            r.update(prediction=p, outcome="both" if hc and hm else "context" if hc else "memory" if hm else "neither")

    # (a) yes/no
    yn_idx = [k for k, it in enumerate(items) if it.yn_prompt is not None and it.yn_label is not None]
    if yn_idx:
        yes_ids, no_ids = first_token_ids(handle, s.yes_words), first_token_ids(handle, s.no_words)
        shared = set(yes_ids) & set(no_ids)  # e.g. a bare-space token of a byte-level BPE
        yes_ids, no_ids = [t for t in yes_ids if t not in shared], [t for t in no_ids if t not in shared]
        if not yes_ids or not no_ids:
            raise LensftError(f"yes words {s.yes_words} and no words {s.no_words} must have distinct first tokens")
        yn_ids = [encode_prompt(handle, prompt_text(handle, items[k].yn_prompt or "", chat=chat), chat=chat)
                  for k in yn_idx]
        ly, ln = yes_no_logprobs(next_token_logprobs(handle, yn_ids, batch_size=s.batch_size), yes_ids, no_ids)
        for k, a, b in zip(yn_idx, ly.tolist(), ln.tolist()):
            pred = a > b
            recs[k].update(yn_logp_yes=a, yn_logp_no=b, yn_pred=pred, yn_label=items[k].yn_label,
                           yn_correct=pred == items[k].yn_label)

    # (d) logit lens
    lens = torch.full((n, handle.n_layers), math.nan, dtype=torch.float64)
    if s.lens:
        resid = residual_at_last(handle, [e[0] for e in enc], s.batch_size)
        with torch.no_grad():
            lm = lens_margin(resid.to(model_device(handle)), handle.final_norm, handle.lm_head,
                             [e[1][0] if e[1] else 0 for e in enc], [e[2][0] if e[2] else 0 for e in enc]).double().cpu()
        same = torch.tensor([not e[1] or not e[2] or e[1][0] == e[2][0] for e in enc])
        lens = torch.where(same[:, None], torch.full_like(lm, math.nan), lm)
        for r, row in zip(recs, lens.tolist()):
            r["lens_margin"] = [None if math.isnan(v) else v for v in row]

    res = ProbeResult(probe=KnowledgePreferenceProbe.name, model=handle.provenance, settings=s.model_dump(),
                      prompt_set=PromptSetRef(name=prompt_set.name, version=prompt_set.version, n_items=n))
    res.records = recs
    kn = torch.tensor(known)
    for suffix, sel in (("", torch.ones(n, dtype=torch.bool)), ("_known", kn)):
        rs = [r for r, keep in zip(recs, sel.tolist()) if keep]
        res.summary[f"yn_accuracy{suffix}"] = _mean([float(r["yn_correct"]) for r in rs if "yn_correct" in r])
        if s.generate:
            for oc in ("context", "memory", "both", "neither"):
                key = {"context": "ctx_follow_rate", "memory": "mem_follow_rate"}.get(oc, f"{oc}_rate")
                res.summary[f"{key}{suffix}"] = _mean([float(r["outcome"] == oc) for r in rs])
        res.summary[f"margin_mean{suffix}"] = _mean([r["margin"] for r in rs])
        res.summary[f"ctx_pref_rate{suffix}"] = _mean([float(r["margin"] > 0) for r in rs])
        res.summary[f"mr_mean{suffix}"] = _mean([r["mr"] for r in rs])
        last = lens[sel][:, -1] if sel.any() else torch.tensor([])
        res.summary[f"lens_margin_last{suffix}"] = _nanmean(last)
    res.summary["known_rate"] = float(kn.double().mean())
    res.summary["n_items"] = float(n)
    res.summary["n_known"] = float(kn.sum())
    for dom in sorted({it.domain for it in items}):
        res.summary[f"yn_accuracy_{dom}"] = _mean([float(r["yn_correct"]) for r in recs
                                                   if r["domain"] == dom and "yn_correct" in r])
    lens_rows = [torch.nanmean(lens, 0) if n else lens.new_full((handle.n_layers,), math.nan),
                 torch.nanmean(lens[kn], 0) if bool(kn.any()) else lens.new_full((handle.n_layers,), math.nan)]
    res.set_array("lens_margin", torch.stack(lens_rows), ["subset", "layer"])
    res.coords.update(subset=["all", "known"], layer=list(range(handle.n_layers)))
    return res


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _nanmean(x: Tensor) -> float | None:
    x = x[~torch.isnan(x)] if x.numel() else x
    return float(x.mean()) if x.numel() else None


@register_probe
class KnowledgePreferenceProbe:
    name: ClassVar[str] = "knowledge_preference"
    description: ClassVar[str] = "context vs memory on conflict items: yes/no accuracy, answer rates, margins, logit lens"
    kinds: ClassVar[tuple[str, ...]] = ("conflict",)
    Settings: ClassVar[type[BaseModel]] = KnowledgeSettings
    default_prompts: ClassVar[str] = "conflict_default.jsonl"

    @staticmethod
    def load_prompts(path: str | Path) -> PromptSet:
        """Read ``--prompts``: a conflict prompt set or any format of :mod:`lensft.probes.conflict_formats`."""
        return load_conflicts(path)

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: KnowledgeSettings | None = None) -> ProbeResult:
        return score_knowledge(handle, prompts, settings)
