"""Language-model scoring shared by the behavioural probes: batching, log-likelihoods, greedy answers.

Conventions (used by ``short_tasks``, ``knowledge_preference`` and ``patching``):

- **Prompt text.** A user turn is chat-formatted with :meth:`ModelHandle.format_prompt` when
  ``chat`` is true (and the tokenizer has a chat template); chat-formatted text already holds its
  special tokens, so it is tokenized with ``add_special_tokens=False``. Plain text is tokenized
  with the tokenizer's defaults (a BOS where the tokenizer adds one).
- **Continuations.** An answer is scored as the tokens of :func:`continuation_text` appended to
  the prompt tokens (tokenized separately, so the prompt's tokens never depend on the answer).
  For plain-text prompts that end in a non-space character the answer gets one leading space
  (``"... capital of France is" + " Paris"``); after a chat generation prompt it does not.
- **Padding.** Scoring forward passes use right padding; generation uses left padding. Position
  ids are always passed explicitly (``cumsum(mask) - 1``), so a padded row gives the same logits
  as the row alone.
- **Answer matching.** :func:`normalize_answer` lowercases, drops punctuation and the articles
  a/an/the and collapses whitespace (SQuAD-style). ``exact`` match compares normalised strings;
  ``contains`` match looks for the normalised gold as a whole-word substring of the prediction.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import string
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence, TypeVar

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lensft.errors import LensftError
from lensft.handle import ModelHandle

log = logging.getLogger(__name__)

T = TypeVar("T")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


# ---------------------------------------------------------------------------------------- text
def normalize_answer(text: str) -> str:
    """Lowercase, punctuation -> space, drop articles, collapse whitespace."""
    s = text.lower().translate(_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, golds: Iterable[str]) -> bool:
    """True when the normalised prediction equals any normalised gold."""
    p = normalize_answer(prediction)
    return any(p == normalize_answer(g) for g in golds if normalize_answer(g))


def contains_match(prediction: str, golds: Iterable[str]) -> bool:
    """True when any normalised gold occurs in the normalised prediction as whole words."""
    p = f" {normalize_answer(prediction)} "
    return any(f" {g} " in p for g in (normalize_answer(x) for x in golds) if g)


@functools.lru_cache(maxsize=1)
def _rouge1_scorer() -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rouge1"], use_stemmer=True)


def rouge1_recall(reference: str, prediction: str) -> float:
    """ROUGE-1 recall: the share of ``reference``'s unigrams (with multiplicity) found in
    ``prediction``, in [0, 1]; 0.0 when the reference has no word.

    Computed by ``rouge-score`` (``RougeScorer(["rouge1"], use_stemmer=True)``: lowercased
    alphanumeric tokens, Porter-stemmed), the scorer Wu et al. 2024 use to decide that a needle
    was retrieved.
    """
    return float(_rouge1_scorer().score(reference, prediction)["rouge1"].recall)


def first_line(text: str) -> str:
    """The completion up to its first newline, leading whitespace dropped."""
    return text.lstrip().split("\n", 1)[0].strip()


def continuation_text(prompt_text: str, answer: str, *, chat: bool) -> str:
    """The answer as it continues ``prompt_text`` (one leading space for plain-text prompts)."""
    if chat or not prompt_text or prompt_text[-1].isspace() or answer[:1].isspace():
        return answer
    return " " + answer


def batched(xs: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive chunks of ``xs`` of at most ``size`` elements."""
    size = max(1, int(size))
    for i in range(0, len(xs), size):
        yield list(xs[i:i + size])


# ---------------------------------------------------------------------------------------- tokens
def prompt_text(handle: ModelHandle, user: str, *, chat: bool) -> str:
    """The text fed to the model for a user turn (chat-formatted when ``chat``)."""
    return handle.format_prompt(user, chat=chat)


def encode_prompt(handle: ModelHandle, text: str, *, chat: bool) -> list[int]:
    """Token ids of prompt text; chat-formatted text carries its own special tokens."""
    formatted = chat and bool(getattr(handle.tokenizer, "chat_template", None))
    return list(handle.tokenizer(text, add_special_tokens=not formatted)["input_ids"])


def encode_continuation(handle: ModelHandle, text: str) -> list[int]:
    """Token ids of a continuation (never with special tokens)."""
    return list(handle.tokenizer(text, add_special_tokens=False)["input_ids"])


def pad_id(handle: ModelHandle) -> int:
    tok = handle.tokenizer
    pid = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(pid if pid is not None else 0)


@dataclass
class Batch:
    """A padded batch: ``input_ids`` / ``attention_mask`` / ``position_ids`` are [batch, seq]."""

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    position_ids: Int[Tensor, "batch seq"]
    offsets: list[int]  # index of each row's first real token (non-zero only with left padding)
    lengths: list[int]

    def model_inputs(self) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}


def pad_batch(seqs: Sequence[Sequence[int]], pad: int, *, side: str = "right",
              device: torch.device | str = "cpu") -> Batch:
    """Pad token-id lists into a :class:`Batch` (``side`` = ``right`` or ``left``)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    offsets = []
    for r, s in enumerate(seqs):
        o = n - len(s) if side == "left" else 0
        ids[r, o:o + len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[r, o:o + len(s)] = 1
        offsets.append(o)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids.to(device), mask.to(device), pos.to(device), offsets, [len(s) for s in seqs])


def model_device(handle: ModelHandle) -> torch.device:
    """Where inputs go: the model's first device (:attr:`ModelHandle.input_device`)."""
    return handle.input_device


def check_positions(handle: ModelHandle, seqs: Sequence[Sequence[int]]) -> None:
    """Refuse a sequence longer than a learned position table (``handle.max_positions``): the model
    has no embedding for the positions past it."""
    limit = handle.max_positions
    longest = max((len(s) for s in seqs), default=0)
    if limit is not None and longest > limit:
        raise LensftError(f"a prompt of {longest} tokens does not fit the {limit} positions of {handle.label}; "
                          "use shorter prompts for this model")


# ---------------------------------------------------------------------------------------- math
def gather_logprobs(logits: Float[Tensor, "batch seq vocab"],
                    targets: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq"]:
    """log p(targets[:, t] | logits[:, t]) in float32 (logits at t predict the token at t+1 upstream)."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def masked_sum(values: Float[Tensor, "batch seq"], mask: Bool[Tensor, "batch seq"]) -> Float[Tensor, " batch"]:
    """Row sums of ``values`` where ``mask`` holds."""
    return torch.where(mask, values, torch.zeros_like(values)).sum(-1)


# ---------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def continuation_logprobs(handle: ModelHandle, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                          *, batch_size: int = 8) -> list[tuple[float, int]]:
    """Sum of log p(continuation tokens | prompt tokens) per pair, with the continuation length.

    Each pair is scored as one right-padded sequence ``prompt + continuation``; the logits at
    position t score the token at t+1. Returns ``[(sum_logprob_nats, n_tokens), ...]``; an empty
    continuation scores 0.0.
    """
    if len(prompts) != len(continuations):
        raise ValueError("prompts and continuations differ in length")
    out: list[tuple[float, int]] = []
    dev = model_device(handle)
    pairs = list(zip(prompts, continuations))
    check_positions(handle, [list(p) + list(c) for p, c in pairs])
    for chunk in batched(pairs, batch_size):
        seqs = [list(p) + list(c) for p, c in chunk]
        b = pad_batch(seqs, pad_id(handle), side="right", device=dev)
        logits = handle.model(**b.model_inputs()).logits
        lp = gather_logprobs(logits[:, :-1], b.input_ids[:, 1:])
        tgt = torch.zeros_like(lp, dtype=torch.bool)
        for r, (p, c) in enumerate(chunk):
            if len(c):
                tgt[r, len(p) - 1:len(p) - 1 + len(c)] = True
        sums = masked_sum(lp, tgt)
        out.extend((float(s), len(c)) for s, (_, c) in zip(sums.tolist(), chunk))
    return out


@torch.no_grad()
def next_token_logprobs(handle: ModelHandle, prompts: Sequence[Sequence[int]], *,
                        batch_size: int = 8) -> Float[Tensor, "n vocab"]:
    """log p(next token | prompt) at each prompt's last position, float32 on the CPU."""
    rows = []
    dev = model_device(handle)
    check_positions(handle, prompts)
    for chunk in batched(list(prompts), batch_size):
        b = pad_batch(chunk, pad_id(handle), side="right", device=dev)
        logits = handle.model(**b.model_inputs()).logits
        last = torch.tensor([n - 1 for n in b.lengths], device=logits.device)
        rows.append(torch.log_softmax(logits[torch.arange(len(chunk)), last].float(), -1).cpu())
    return torch.cat(rows, 0)


def stop_token_ids(handle: ModelHandle) -> list[int]:
    """EOS / end-of-turn ids: the tokenizer's EOS plus every id in the generation config's eos."""
    ids: set[int] = set()
    if handle.tokenizer.eos_token_id is not None:
        ids.add(int(handle.tokenizer.eos_token_id))
    gc = getattr(handle.model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    return sorted(ids)


@torch.no_grad()
def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword (and output attribute) a model's forward takes its KV cache under: ``cache`` from
    transformers 5.24 (which deprecates ``past_key_values`` and drops it in 5.40), ``past_key_values``
    before. Read once per model class from the forward signature."""
    return _cache_keyword(type(model))


@functools.cache
def _cache_keyword(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def forward_cached(model: torch.nn.Module, cache: Any = None, **inputs: Any) -> tuple[Tensor, Any]:
    """One forward pass with a KV cache: ``(logits [batch, seq, vocab], the updated cache)``.

    ``cache`` is the cache a previous call returned (``None`` for a fresh one); ``inputs`` are the
    model's other keyword arguments (``input_ids``, ``attention_mask``, ``position_ids`` ...).
    """
    kw = cache_keyword(model)
    out = model(**inputs, **({kw: cache} if cache is not None else {}), use_cache=True)
    return out.logits, getattr(out, kw)


def greedy_generate(handle: ModelHandle, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 24,
                    batch_size: int = 8, stop_at_newline: bool = True) -> list[str]:
    """Greedy completions of token-id prompts (left-padded batches, KV cache).

    Generation stops at EOS / end-of-turn tokens (:func:`stop_token_ids`) or, with
    ``stop_at_newline``, once every row has produced a newline after some non-space text.
    Returns the decoded completions (special tokens skipped), cut at the first newline when
    ``stop_at_newline``.
    """
    tok = handle.tokenizer
    stops = stop_token_ids(handle)
    dev = model_device(handle)
    pid = pad_id(handle)
    out: list[str] = []
    check_positions(handle, prompts)
    for chunk in batched(list(prompts), batch_size):
        b = pad_batch(chunk, pid, side="left", device=dev)
        budget = max_new_tokens if handle.max_positions is None else \
            max(0, min(max_new_tokens, handle.max_positions - max(b.lengths)))  # not past the position table
        n = len(chunk)
        ids, mask = b.input_ids, b.attention_mask
        new = torch.full((n, 0), pid, dtype=torch.long, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        past = None
        pos = b.position_ids
        step_ids = ids
        texts = [""] * n
        gen_len = [budget] * n
        for step in range(budget):
            logits, past = forward_cached(handle.model, past, input_ids=step_ids, attention_mask=mask,
                                          position_ids=pos)
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pid), nxt)
            new = torch.cat([new, nxt[:, None]], 1)
            for r in range(n):
                if done[r]:
                    continue
                if int(nxt[r]) in stops:
                    done[r], gen_len[r] = True, step  # drop the stop token itself
                elif stop_at_newline and "\n" in tok.decode(new[r].tolist(), skip_special_tokens=True).lstrip():
                    done[r], gen_len[r] = True, step + 1
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=dev)], 1)
            pos = pos[:, -1:] + 1
            step_ids = nxt[:, None]
        for r in range(n):
            row = new[r, :gen_len[r]].tolist()
            texts[r] = tok.decode(row, skip_special_tokens=True)
            if stop_at_newline:
                texts[r] = first_line(texts[r])
        out.extend(texts)
    return out
