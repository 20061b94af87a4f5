"""Knowledge preference on conflict items: does the model follow the context or its memory?

On each :class:`~lensft.prompts.ConflictItem` (a context contradicting a memorised fact):

(a) **Yes/no** (the paper's probe, after Jin et al. 2025): on ``yn_prompt`` the model answers
    "Yes" when log p(Yes-like) > log p(No-like) for the *next token* after the (chat-formatted)
    prompt, where log p(Yes-like) is the log-sum-exp over the distinct first tokens of
    ``yes_words`` and their space-prefixed forms (likewise for No; first tokens shared by both
    sides, such as a bare space, are dropped). P(yes) = sigmoid(log p(Yes-like) - log p(No-like)),
    the probability of Yes among the two answers. No generation or keyword parsing, so every item
    gets an answer. ``yn_label`` is the answer under *memorised* knowledge. Reported: the paper's
    accuracy and, because a model that always answers the same scores the label balance on
    accuracy whatever it knows, the answer bias ``yn_yes_rate`` and two bias-free measures,
    balanced accuracy and the AUC of P(yes) against the label (see
    :mod:`lensft.probes.knowledge_metrics`).
(b) **Open answers** (ConflictQA style): the greedy answer to ``prompt`` (first line, at most
    ``max_new_tokens``) is classed ``context`` / ``memory`` / ``both`` / ``neither`` by whether
    the context answer and the memory answer (or an alias in ``meta.context_aliases`` /
    ``meta.memory_aliases``) occur in it as whole words after SQuAD normalisation. Longpre et al.
    2021's count-based memorisation ratio is computed from these classes.
(c) **Generation-free margin**: ``margin = log p(context_answer | prompt) - log p(memory_answer |
    prompt)``, full-sequence answer log-probabilities (sum over answer tokens, nats), and its
    probability analogue of the memorisation ratio ``mr_prob = p_mem / (p_mem + p_ctx) =
    sigmoid(-margin)``.
(d) **Logit lens**: the margin read at every layer through the unembedding: the residual stream
    output of layer i at the last prompt position, through the family's ``final_norm`` and
    ``lm_head`` (no final-logit soft-capping), using the *first token* of each answer only. Items
    whose two answers share their first token get None. The last layer's lens margin is the
    model's own first-token margin.

**Context answers only where the context addresses the question.** An item whose
``context_answer`` is None (Jin et al.'s fixed new-knowledge sentence about another city) has no
context answer: its open answer can only be ``memory`` or ``neither`` and it has no margin, lens
margin or memorisation ratio; (b)-(d) average over the items whose context addresses the question.

**Own memory (``known``).** Before scoring, the closed-book prompt checks whether the model knows
the memory answer. ``known_rule="greedy"`` (default): the greedy closed-book answer contains the
memory answer (or an alias). ``"rank"``: log p(memory answer | closed book) > log p(context answer
| closed book), a weaker test that a model knowing nothing passes about half the time (the only
one possible with ``generate`` off, where it is used with a warning); ``"either"``: greedy or rank.
Summaries are given on all items and on the model's known items (suffix ``_known``); to compare
models, compute metrics on the items every model knows (:func:`~lensft.probes.knowledge_metrics.
shared_known_ids`, :func:`~lensft.probes.knowledge_metrics.knowledge_metrics`).

**Records** (one per item, every key always present, None where not measured): ``id``,
``domain``, ``memory_answer``, ``context_answer``, ``context_addressed``; ``known``,
``known_greedy``, ``known_rank``, ``closed_book_prediction``, ``closed_book_logp_mem``,
``closed_book_logp_ctx``; ``prediction``, ``outcome``; ``logp_ctx``, ``logp_mem``, ``margin``,
``mr_prob``; ``yn_label``, ``yn_logp_yes``, ``yn_logp_no``, ``yn_p_yes``, ``yn_pred`` (True =
answered Yes), ``yn_correct``; ``lens_margin`` (per layer). **Summary**: the metrics of
:func:`~lensft.probes.knowledge_metrics.knowledge_metrics` on all items and with suffix
``_known``, plus ``yn_accuracy_<domain>``, ``yn_balanced_accuracy_<domain>`` and
``known_rate_<domain>``. **Array** ``lens_margin`` ``[subset, layer]``, subsets ``all`` and
``known``. ``settings["known_rule_used"]`` names the own-memory rule applied.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Sequence

import torch
from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle
from lensft.probes.conflict_encoding import encode_answers, yes_no_prompt
from lensft.probes.conflict_formats import load_conflicts
from lensft.probes.knowledge_metrics import knowledge_summary
from lensft.probes.nanstats import floats_or_none, nanmean
from lensft.probes.registry import register_probe
from lensft.probes.scoring import (batched, contains_match, continuation_logprobs, encode_continuation, greedy_generate,
                                   model_device, next_token_logprobs, pad_batch, pad_id)
from lensft.prompts import ConflictItem, PromptSet
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)

Encoded = tuple[list[int], Optional[list[int]], list[int]]


class KnowledgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(8, ge=1)
    generate: bool = Field(True, description="greedy open answers and closed-book answers (b); off = generation-free")
    max_new_tokens: int = Field(16, ge=1)
    lens: bool = Field(True, description="per-layer logit-lens margin (d)")
    known_rule: Literal["greedy", "rank", "either"] = "greedy"
    chat: Optional[bool] = Field(None, description="chat-format prompts; None = the prompt set's header")
    yes_words: list[str] = Field(default_factory=lambda: ["Yes", "yes"])
    no_words: list[str] = Field(default_factory=lambda: ["No", "no"])


# ---------------------------------------------------------------------------------------- math
def memorisation_ratio(margin: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """p_mem / (p_mem + p_ctx) from margin = log p_ctx - log p_mem (the probability analogue)."""
    return torch.sigmoid(-margin)


def yes_no_logprobs(next_lp: Float[Tensor, "n vocab"], yes_ids: Sequence[int],
                    no_ids: Sequence[int]) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """log p(Yes-like), log p(No-like): log-sum-exp of next-token log-probs over each id set."""
    return (torch.logsumexp(next_lp[:, list(yes_ids)], -1), torch.logsumexp(next_lp[:, list(no_ids)], -1))


def lens_margin(resid: Float[Tensor, "n layer d"], final_norm: torch.nn.Module, lm_head: torch.nn.Module,
                ctx_ids: Sequence[int], mem_ids: Sequence[int]) -> Float[Tensor, "n layer"]:
    """Logit-lens first-token margin log p(ctx) - log p(mem) at every layer."""
    lp = torch.log_softmax(lm_head(final_norm(resid)).float(), -1)
    c = torch.tensor(list(ctx_ids), device=lp.device).view(-1, 1, 1).expand(-1, lp.shape[1], 1)
    m = torch.tensor(list(mem_ids), device=lp.device).view(-1, 1, 1).expand(-1, lp.shape[1], 1)
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


def answer_golds(item: ConflictItem, side: str) -> list[str]:
    """Accepted spellings of the memory (``side="memory"``) or context answer: the answer and its meta aliases."""
    answer = item.memory_answer if side == "memory" else item.context_answer
    return [] if answer is None else [answer, *(str(a) for a in item.meta.get(f"{side}_aliases", []))]


def classify(prediction: str, item: ConflictItem) -> str:
    """``context`` / ``memory`` / ``both`` / ``neither``: which answers occur in a generated answer."""
    hc = contains_match(prediction, answer_golds(item, "context"))
    hm = contains_match(prediction, answer_golds(item, "memory"))
    return "both" if hc and hm else "context" if hc else "memory" if hm else "neither"


# ---------------------------------------------------------------------------------------- scoring
def answer_logprobs(handle: ModelHandle, encoded: Sequence[Encoded],
                    batch_size: int = 8) -> tuple[list[Optional[float]], list[float]]:
    """(log p(ctx answer | prompt) or None without a context answer, log p(mem answer | prompt)) per item."""
    pairs = [(k, e[0], cont) for k, e in enumerate(encoded) for cont in (e[1], e[2]) if cont is not None]
    sc = continuation_logprobs(handle, [p for _, p, _ in pairs], [c for _, _, c in pairs], batch_size=batch_size)
    ctx: list[Optional[float]] = [None] * len(encoded)
    mem: list[float] = [0.0] * len(encoded)
    j = 0
    for k, e in enumerate(encoded):
        if e[1] is not None:
            ctx[k], j = sc[j][0], j + 1
        mem[k], j = sc[j][0], j + 1
    return ctx, mem


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


def empty_record(item: ConflictItem) -> dict[str, Any]:
    """An item's record with every key (module docstring), unmeasured values None."""
    keys = ("known", "known_greedy", "known_rank", "closed_book_prediction", "closed_book_logp_mem",
            "closed_book_logp_ctx", "prediction", "outcome", "logp_ctx", "logp_mem", "margin", "mr_prob",
            "yn_logp_yes", "yn_logp_no", "yn_p_yes", "yn_pred", "yn_correct", "lens_margin")
    rec: dict[str, Any] = {"id": item.id, "domain": item.domain, "memory_answer": item.memory_answer,
                           "context_answer": item.context_answer, "context_addressed": item.context_answer is not None,
                           "yn_label": item.yn_label if item.yn_prompt is not None else None}
    rec.update({k: None for k in keys})
    return rec


def closed_book(handle: ModelHandle, items: Sequence[ConflictItem], recs: list[dict[str, Any]],
                s: KnowledgeSettings, chat: bool) -> str:
    """Fill the own-memory fields of ``recs``; returns the rule applied."""
    rule = s.known_rule
    if not s.generate and rule != "rank":
        log.warning("generation is off: own memory is judged by the rank rule, not %r", rule)
        rule = "rank"
    cb = [encode_answers(handle, it, chat=chat, closed_book=True) for it in items]
    lp_ctx, lp_mem = answer_logprobs(handle, cb, s.batch_size)
    preds: list[Optional[str]] = [None] * len(items)
    if s.generate:
        preds = list(greedy_generate(handle, [e[0] for e in cb], max_new_tokens=s.max_new_tokens,
                                     batch_size=s.batch_size))
    for r, it, p, c, m in zip(recs, items, preds, lp_ctx, lp_mem):
        greedy = None if p is None else contains_match(p, answer_golds(it, "memory"))
        rank = None if c is None else m > c
        known = {"greedy": greedy, "rank": rank, "either": bool(greedy) or bool(rank)}[rule]
        r.update(closed_book_prediction=p, closed_book_logp_mem=m, closed_book_logp_ctx=c, known_greedy=greedy,
                 known_rank=rank, known=bool(known))
    return rule


def context_scores(handle: ModelHandle, items: Sequence[ConflictItem], enc: Sequence[Encoded],
                   recs: list[dict[str, Any]], s: KnowledgeSettings) -> None:
    """(b) open answers and (c) margins into ``recs``."""
    lp_ctx, lp_mem = answer_logprobs(handle, enc, s.batch_size)
    margins = [None if c is None else c - m for c, m in zip(lp_ctx, lp_mem)]
    have = [k for k, g in enumerate(margins) if g is not None]
    mr: list[Optional[float]] = [None] * len(margins)
    if have:
        ratios = memorisation_ratio(torch.tensor([margins[k] for k in have], dtype=torch.float64)).tolist()
        for k, q in zip(have, ratios):
            mr[k] = q
    for r, c, m, g, q in zip(recs, lp_ctx, lp_mem, margins, mr):
        r.update(logp_ctx=c, logp_mem=m, margin=g, mr_prob=q)
    if s.generate:
        preds = greedy_generate(handle, [e[0] for e in enc], max_new_tokens=s.max_new_tokens, batch_size=s.batch_size)
        for r, p, it in zip(recs, preds, items):
            r.update(prediction=p, outcome=classify(p, it))


def yes_no(handle: ModelHandle, items: Sequence[ConflictItem], recs: list[dict[str, Any]],
           s: KnowledgeSettings, chat: bool) -> None:
    """(a) the yes/no answers and P(yes) into ``recs``."""
    idx = [k for k, it in enumerate(items) if it.yn_prompt is not None and it.yn_label is not None]
    if not idx:
        return
    yes_ids, no_ids = first_token_ids(handle, s.yes_words), first_token_ids(handle, s.no_words)
    shared = set(yes_ids) & set(no_ids)  # e.g. a bare-space token of a byte-level BPE
    yes_ids, no_ids = [t for t in yes_ids if t not in shared], [t for t in no_ids if t not in shared]
    if not yes_ids or not no_ids:
        raise LensftError(f"yes words {s.yes_words} and no words {s.no_words} must have distinct first tokens")
    ids = [yes_no_prompt(handle, items[k], chat=chat) for k in idx]
    ly, ln = yes_no_logprobs(next_token_logprobs(handle, ids, batch_size=s.batch_size), yes_ids, no_ids)
    p_yes = torch.sigmoid((ly - ln).double())
    for k, a, b, p in zip(idx, ly.tolist(), ln.tolist(), p_yes.tolist()):
        pred = a > b
        recs[k].update(yn_logp_yes=a, yn_logp_no=b, yn_p_yes=p, yn_pred=pred, yn_correct=pred == items[k].yn_label)


def logit_lens(handle: ModelHandle, enc: Sequence[Encoded], recs: list[dict[str, Any]],
               s: KnowledgeSettings) -> Float[Tensor, "n layer"]:
    """(d) per-layer first-token margins (NaN where undefined) into ``recs``; returns them."""
    lens = torch.full((len(enc), handle.n_layers), math.nan, dtype=torch.float64)
    idx = [k for k, e in enumerate(enc) if e[1] and e[2] and e[1][0] != e[2][0]]
    if idx:
        resid = residual_at_last(handle, [enc[k][0] for k in idx], s.batch_size)
        with torch.no_grad():
            lm = lens_margin(resid.to(model_device(handle)), handle.final_norm, handle.lm_head,
                             [enc[k][1][0] for k in idx], [enc[k][2][0] for k in idx])  # type: ignore[index]
        lens[idx] = lm.double().cpu()
    measured = set(idx)
    for k, r in enumerate(recs):
        r["lens_margin"] = floats_or_none(lens[k]) if k in measured else None
    return lens


# ---------------------------------------------------------------------------------------- probe
def score_knowledge(handle: ModelHandle, prompt_set: PromptSet, settings: KnowledgeSettings | None = None) -> ProbeResult:
    """Run the closed-book check and (a)-(d) on a ``conflict`` prompt set (module docstring)."""
    s = settings or KnowledgeSettings()
    if prompt_set.kind != "conflict":
        raise LensftError(f"knowledge_preference needs a 'conflict' prompt set, not {prompt_set.kind!r}")
    items: list[ConflictItem] = list(prompt_set.items)  # type: ignore[arg-type]
    if not items:
        raise LensftError(f"prompt set {prompt_set.name!r} has no items")
    chat = prompt_set.header.chat if s.chat is None else s.chat
    if len({it.id for it in items}) < len(items):
        log.warning("prompt set %r repeats item ids: per-item records cannot be paired across models", prompt_set.name)
    recs = [empty_record(it) for it in items]
    rule = closed_book(handle, items, recs, s, chat)
    enc = [encode_answers(handle, it, chat=chat) for it in items]
    context_scores(handle, items, enc, recs, s)
    yes_no(handle, items, recs, s, chat)
    lens = logit_lens(handle, enc, recs, s) if s.lens else torch.full((len(items), handle.n_layers), math.nan,
                                                                      dtype=torch.float64)
    res = ProbeResult(probe=KnowledgePreferenceProbe.name, model=handle.provenance,
                      settings={**s.model_dump(), "known_rule_used": rule},
                      prompt_set=PromptSetRef(name=prompt_set.name, version=prompt_set.version, n_items=len(items)))
    res.records = recs
    res.summary = knowledge_summary(recs)
    kn = torch.tensor([r["known"] for r in recs])
    nan_row = lens.new_full((handle.n_layers,), math.nan)
    rows = [nanmean(lens, 0) if len(items) else nan_row, nanmean(lens[kn], 0) if bool(kn.any()) else nan_row]
    res.set_array("lens_margin", torch.stack(rows), ["subset", "layer"])
    res.coords.update(subset=["all", "known"], layer=list(range(handle.n_layers)))
    return res


@register_probe
class KnowledgePreferenceProbe:
    name: ClassVar[str] = "knowledge_preference"
    description: ClassVar[str] = ("context vs memory on conflict items: yes/no accuracy and answer bias, answer "
                                  "rates, margins, memorisation ratios, logit lens")
    kinds: ClassVar[tuple[str, ...]] = ("conflict",)
    Settings: ClassVar[type[BaseModel]] = KnowledgeSettings
    default_prompts: ClassVar[str] = "conflict_default.jsonl"

    @staticmethod
    def load_prompts(path: str | Path) -> PromptSet:
        """Read ``--prompts``: a conflict prompt set or any format of :mod:`lensft.probes.conflict_formats`."""
        return load_conflicts(path)

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: KnowledgeSettings | None = None) -> ProbeResult:
        return score_knowledge(handle, prompts, settings)
