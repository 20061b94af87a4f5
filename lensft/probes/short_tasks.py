"""Short-task scoring: exact-match accuracy of greedy answers and log-likelihood multiple choice.

Inputs are lensft prompt sets of kind ``task`` or, for convenience, a **simple task file**: a
JSONL file without a header line, one JSON object per line, in either form::

    {"prompt": "What is the capital of France?", "answer": "Paris"}
    {"prompt": "The sky is", "choices": ["blue", "green"], "label": 0}

Optional keys on every line: ``id`` (default: the line number), ``task`` (default: the file
name's stem), ``aliases`` (list of other accepted answers), ``meta`` (dict). A multiple-choice
line's answer is ``choices[label]``. The first line may instead be a lensft prompt-set header
(``{"lensft_prompt_set": 1, ...}``), in which case the file is read as a prompt set. A simple
file is chat-formatted (when the tokenizer has a chat template) unless the probe setting
``chat`` is false; its version is the first 12 hex digits of the file's sha256.

Scoring (see :mod:`lensft.probes.scoring` for tokenization, padding and normalisation):

- **generate** (items without ``choices``): greedy decoding, left-padded batches, stopping at
  EOS / end-of-turn tokens or the first newline, at most ``max_new_tokens``. Correct when the
  normalised first line equals the normalised answer or an alias (``match="exact"``, default) or
  contains one of them as whole words (``match="contains"``).
- **loglik** (items with ``choices``): each choice is scored as the summed log-probability of
  its tokens after the prompt; the prediction is the argmax (``length_normalize`` divides by the
  number of tokens first). Correct when it equals ``label``.

Result: summary ``accuracy`` (all items), ``accuracy_<task>`` per task, ``em_accuracy`` and
``mc_accuracy`` (None when the set has no such item), ``n_items``; array ``task_accuracy`` with
dims ``[task]``; records ``{id, task, mode, prompt, prediction, gold, correct}`` plus
``choice_logprobs`` and ``pred_index`` for multiple-choice items.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lensft.errors import LensftError, PromptSetError
from lensft.handle import ModelHandle
from lensft.hashing import sha256_bytes
from lensft.probes.registry import register_probe
from lensft.probes.scoring import (contains_match, continuation_logprobs, continuation_text, encode_continuation,
                                   encode_prompt, exact_match, greedy_generate, prompt_text)
from lensft.prompts import PromptSet, TaskItem, make_prompt_set, read_prompt_set
from lensft.results import ProbeResult, PromptSetRef

log = logging.getLogger(__name__)


class ShortTaskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "generate", "loglik"] = Field(
        "auto", description="auto: log-likelihood for items with choices, greedy exact match otherwise")
    match: Literal["exact", "contains"] = "exact"
    max_new_tokens: int = Field(24, ge=1)
    batch_size: int = Field(8, ge=1)
    chat: Optional[bool] = Field(None, description="chat-format prompts; None = the prompt set's header")
    length_normalize: bool = Field(False, description="multiple choice: compare mean instead of summed log-probs")
    stop_at_newline: bool = True


# ---------------------------------------------------------------------------------------- loading
def load_tasks(path: str | Path) -> PromptSet:
    """Read a task prompt set or a simple task JSONL file (format in the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise PromptSetError(f"task file {p} does not exist")
    raw = p.read_text(encoding="utf-8")
    lines = [(i, ln) for i, ln in enumerate(raw.split("\n"), start=1) if ln.strip()]
    if not lines:
        raise PromptSetError(f"task file {p} is empty")
    try:
        first = json.loads(lines[0][1])
    except json.JSONDecodeError as e:
        raise PromptSetError(f"{p}:{lines[0][0]}: not JSON ({e.msg}); write one JSON object per line") from None
    if isinstance(first, dict) and "lensft_prompt_set" in first:
        ps = read_prompt_set(p)
        if ps.kind != "task":
            raise PromptSetError(f"{p} is a {ps.kind!r} prompt set; short_tasks needs kind 'task'")
        return ps
    items = []
    for lineno, line in lines:
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptSetError(f"{p}:{lineno}: not JSON ({e.msg})") from None
        items.append(_simple_item(d, p, lineno))
    version = sha256_bytes(raw.encode("utf-8"))[:12]
    return make_prompt_set(p.stem, version, "task", items, description=f"simple task file {p.name}")


def _simple_item(d: object, p: Path, lineno: int) -> TaskItem:
    if not isinstance(d, dict) or "prompt" not in d:
        raise PromptSetError(f'{p}:{lineno}: expected {{"prompt", "answer"}} or {{"prompt", "choices", "label"}}')
    d = dict(d)
    d.setdefault("id", str(lineno))
    d.setdefault("task", p.stem)
    if d.get("choices") is not None:
        ch, lab = d["choices"], d.get("label")
        if not isinstance(ch, list) or len(ch) < 2 or not isinstance(lab, int) or not 0 <= lab < len(ch):
            raise PromptSetError(f"{p}:{lineno}: 'choices' must be a list of >= 2 strings and 'label' an index into it")
        d.setdefault("answer", str(ch[lab]))
    elif "answer" not in d:
        raise PromptSetError(f"{p}:{lineno}: missing 'answer' (or 'choices' + 'label')")
    d["id"] = str(d["id"])
    try:
        return TaskItem.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        raise PromptSetError(f"{p}:{lineno}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


# ---------------------------------------------------------------------------------------- scoring
def score_tasks(handle: ModelHandle, prompt_set: PromptSet, settings: ShortTaskSettings | None = None) -> ProbeResult:
    """Score a ``task`` prompt set: greedy exact match and/or log-likelihood multiple choice."""
    s = settings or ShortTaskSettings()
    if prompt_set.kind != "task":
        raise LensftError(f"short_tasks needs a 'task' prompt set, not {prompt_set.kind!r}")
    items: list[TaskItem] = list(prompt_set.items)  # type: ignore[arg-type]
    if not items:
        raise LensftError(f"prompt set {prompt_set.name!r} has no items")
    chat = prompt_set.header.chat if s.chat is None else s.chat
    texts = [prompt_text(handle, it.prompt, chat=chat) for it in items]
    ids = [encode_prompt(handle, t, chat=chat) for t in texts]

    def is_mc(it: TaskItem) -> bool:
        if s.mode == "loglik" and not it.choices:
            raise LensftError(f"item {it.id!r} has no choices; mode=loglik needs 'choices' and 'label' on every item")
        return bool(it.choices) and s.mode != "generate"

    mc = [i for i, it in enumerate(items) if is_mc(it)]
    gen = [i for i, it in enumerate(items) if i not in set(mc)]
    records: list[dict] = [{} for _ in items]

    if gen:
        preds = greedy_generate(handle, [ids[i] for i in gen], max_new_tokens=s.max_new_tokens,
                                batch_size=s.batch_size, stop_at_newline=s.stop_at_newline)
        matcher = exact_match if s.match == "exact" else contains_match
        for i, pred in zip(gen, preds):
            it = items[i]
            records[i] = {"id": it.id, "task": it.task, "mode": "generate", "prompt": it.prompt,
                          "prediction": pred, "gold": it.answer, "correct": bool(matcher(pred, [it.answer, *it.aliases]))}
    if mc:
        pairs_p, pairs_c, owner = [], [], []
        for i in mc:
            it = items[i]
            if it.label is None or not 0 <= it.label < len(it.choices or []):
                raise LensftError(f"item {it.id!r} has choices but no valid 'label'")
            for c in it.choices or []:
                pairs_p.append(ids[i])
                pairs_c.append(encode_continuation(handle, continuation_text(texts[i], c, chat=chat)))
                owner.append(i)
        scores = continuation_logprobs(handle, pairs_p, pairs_c, batch_size=s.batch_size)
        by_item: dict[int, list[tuple[float, int]]] = {}
        for i, sc in zip(owner, scores):
            by_item.setdefault(i, []).append(sc)
        for i in mc:
            it = items[i]
            lps = [lp / max(n, 1) if s.length_normalize else lp for lp, n in by_item[i]]
            pred = max(range(len(lps)), key=lambda k: lps[k])
            records[i] = {"id": it.id, "task": it.task, "mode": "loglik", "prompt": it.prompt,
                          "prediction": (it.choices or [])[pred], "gold": it.answer, "correct": pred == it.label,
                          "pred_index": pred, "label": it.label, "choice_logprobs": lps}

    res = ProbeResult(probe=ShortTasksProbe.name, model=handle.provenance, settings=s.model_dump(),
                      prompt_set=PromptSetRef(name=prompt_set.name, version=prompt_set.version, n_items=len(items)))
    res.records = records
    res.summary["accuracy"] = _acc(records)
    res.summary["em_accuracy"] = _acc([r for r in records if r["mode"] == "generate"])
    res.summary["mc_accuracy"] = _acc([r for r in records if r["mode"] == "loglik"])
    res.summary["n_items"] = float(len(items))
    tasks = sorted({r["task"] for r in records})
    per_task = [_acc([r for r in records if r["task"] == t]) for t in tasks]
    for t, a in zip(tasks, per_task):
        res.summary[f"accuracy_{t}"] = a
    res.set_array("task_accuracy", [math.nan if a is None else a for a in per_task], ["task"])
    res.coords["task"] = tasks
    return res


def _acc(records: list[dict]) -> float | None:
    return sum(bool(r["correct"]) for r in records) / len(records) if records else None


@register_probe
class ShortTasksProbe:
    name: ClassVar[str] = "short_tasks"
    description: ClassVar[str] = "greedy exact-match and log-likelihood multiple-choice accuracy on short tasks"
    kinds: ClassVar[tuple[str, ...]] = ("task",)
    Settings: ClassVar[type[BaseModel]] = ShortTaskSettings
    default_prompts: ClassVar[str] = "tasks_default.jsonl"

    @staticmethod
    def load_prompts(path: str | Path) -> PromptSet:
        """Read ``--prompts``: a task prompt set or a simple task JSONL file."""
        return load_tasks(path)

    def run(self, handle: ModelHandle, prompts: PromptSet, settings: ShortTaskSettings | None = None) -> ProbeResult:
        return score_tasks(handle, prompts, settings)
