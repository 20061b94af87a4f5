"""Prompt sets of kind ``task`` as an lm-eval task directory (YAML + JSONL), so lensft's own task
sets (the organism's, the built-in ones, a user's) and a real triple's standard benchmarks are
scored by the same harness.

Layout of ``export_task_dir([ps...], out, group="organism")``::

    out/_organism.yaml              group: organism, task: [organism_arithmetic, ...]
    out/organism_arithmetic.yaml    one lm-eval task per (prompt set, item task, mode)
    out/organism_arithmetic.jsonl   its documents: id, task, prompt, answer, aliases (+ choices, label)
    out/lensft_hooks.py             process_results hooks (lensft's answer matching)

Scoring matches the ``short_tasks`` probe item for item:

- items without choices are ``generate_until`` tasks: greedy, at most ``max_new_tokens`` tokens,
  stopped by the end-of-sequence token only; the hook cuts the completion at its first line and
  matches it with lensft's normalisation (``exact`` or ``contains``);
- items with choices are ``multiple_choice`` tasks scored by lm-eval's ``acc`` (argmax of summed
  log-likelihood). Each choice is stored as the continuation text ``short_tasks`` scores (a
  leading space after a plain-text prompt, none after a chat generation prompt) with
  ``target_delimiter: ""``;
- a prompt set with ``chat: true`` is meant to be run with lm-eval's chat template
  (``apply_chat_template``; the YAML's ``metadata.lensft_chat`` records it); tasks are 0-shot.

Data paths in the YAML are absolute: export again after moving the directory.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from lensft.atomic import staging_dir
from lensft.errors import LensftError, OutputExists
from lensft.probes.scoring import continuation_text
from lensft.prompts import PromptSet, TaskItem

HOOKS_MODULE = "lensft_hooks"
_HOOKS_SOURCE = ('"""lm-eval hooks of a task directory exported by lensft: answers are matched by lensft."""\n\n'
                 "from lensft.evaluation.hooks import contains_match, exact_match  # noqa: F401\n")


@dataclass
class ExportedTasks:
    """An exported task directory: its path, group name, task names, items and chat flag."""

    path: Path
    group: str
    tasks: list[str] = field(default_factory=list)
    n_items: int = 0
    chat: bool = False


def lm_eval_name(text: str) -> str:
    """A task-name-safe version of ``text`` (letters, digits, ``_``; lowercase)."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", text).strip("_").lower()
    if not name:
        raise LensftError(f"cannot make an lm-eval task name from {text!r}")
    return name


def export_task_dir(prompt_sets: Sequence[PromptSet], out: str | Path, *, group: str | None = None,
                    match: Literal["exact", "contains"] = "exact", max_new_tokens: int = 24,
                    force: bool = False) -> ExportedTasks:
    """Write ``prompt_sets`` (kind ``task``) as an lm-eval task directory at ``out``.

    The directory is assembled beside ``out`` and renamed into place when complete; an existing
    ``out`` is refused unless ``force``.

    Raises:
        LensftError: no prompt sets, a set of another kind, sets that disagree on ``chat``.
        OutputExists: ``out`` exists and ``force`` is false.
    """
    sets = list(prompt_sets)
    _check_sets(sets)
    target = Path(out).expanduser().resolve()
    if target.exists() and not force:
        raise OutputExists(f"{target} exists; remove it or choose another directory (or force)")
    gname = lm_eval_name(group or (sets[0].name if len(sets) == 1 else "lensft_tasks"))
    tasks = _split_tasks(sets, gname)
    stage = staging_dir(target)
    try:
        for name, (ps, items) in tasks.items():
            _write_task(stage, target, name, items, ps, match, max_new_tokens)
        (stage / f"{HOOKS_MODULE}.py").write_text(_HOOKS_SOURCE, encoding="utf-8")
        group_cfg = {"group": gname, "task": list(tasks), "metadata": {"version": 1}}
        (stage / f"_{gname}.yaml").write_text(yaml.safe_dump(group_cfg, sort_keys=False), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ExportedTasks(target, gname, list(tasks), sum(len(v[1]) for v in tasks.values()), sets[0].header.chat)


def _check_sets(sets: list[PromptSet]) -> None:
    if not sets:
        raise LensftError("no prompt sets to export")
    for ps in sets:
        if ps.kind != "task":
            raise LensftError(f"prompt set {ps.name!r} is of kind {ps.kind!r}; only 'task' sets become lm-eval tasks")
        if not ps.items:
            raise LensftError(f"prompt set {ps.name!r} has no items")
    if len({ps.header.chat for ps in sets}) > 1:
        raise LensftError("the prompt sets disagree on 'chat'; export chat and plain-text sets separately")
    if len({ps.name for ps in sets}) != len(sets):
        raise LensftError(f"prompt set names repeat: {[ps.name for ps in sets]}")


def _split_tasks(sets: list[PromptSet], gname: str) -> dict[str, tuple[PromptSet, list[TaskItem]]]:
    """lm-eval task name -> (prompt set, items): one task per (set, item task, mode)."""
    out: dict[str, tuple[PromptSet, list[TaskItem]]] = {}
    for ps in sets:
        items: list[TaskItem] = list(ps.items)  # type: ignore[arg-type]
        names = sorted({it.task for it in items}, key=[it.task for it in items].index)
        for t in names:
            part = t if len(sets) == 1 else (ps.name if len(names) == 1 else f"{ps.name}_{t}")
            of_task = [it for it in items if it.task == t]
            gen, mc = [it for it in of_task if not it.choices], [it for it in of_task if it.choices]
            base = lm_eval_name(f"{gname}_{part}")
            for suffix, group_items in (("", gen), ("_mc" if gen else "", mc)):
                if group_items:
                    if base + suffix in out or base + suffix == gname:
                        raise LensftError(f"two exported tasks would both be named {base + suffix!r}; rename a prompt set")
                    out[base + suffix] = (ps, group_items)
    return out


def _doc(it: TaskItem, chat: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"id": it.id, "task": it.task, "prompt": it.prompt, "answer": it.answer,
                         "aliases": list(it.aliases)}
    if it.choices:
        if it.label is None or not 0 <= it.label < len(it.choices):
            raise LensftError(f"item {it.id!r} has choices but no valid label")
        d["choices"] = [continuation_text(it.prompt, c, chat=chat) for c in it.choices]
        d["label"] = it.label
    return d


def _write_task(stage: Path, final: Path, name: str, items: list[TaskItem], ps: PromptSet,
                match: str, max_new_tokens: int) -> None:
    chat = ps.header.chat
    data = "".join(json.dumps(_doc(it, chat), ensure_ascii=False) + "\n" for it in items)
    (stage / f"{name}.jsonl").write_text(data, encoding="utf-8")
    mc = bool(items[0].choices)
    cfg: dict[str, Any] = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(final / f"{name}.jsonl")}},
        "test_split": "test", "output_type": "multiple_choice" if mc else "generate_until",
        "doc_to_text": "prompt", "num_fewshot": 0,
    }
    if mc:
        cfg.update({"doc_to_choice": "choices", "doc_to_target": "label", "target_delimiter": "",
                    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]})
    else:
        metric = "exact_match" if match == "exact" else "contains_match"
        cfg.update({"doc_to_target": "answer",
                    "generation_kwargs": {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False},
                    "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True}]})
    cfg["metadata"] = {"version": 1, "lensft_prompt_set": ps.name, "lensft_prompt_set_version": ps.version,
                       "lensft_chat": chat, "lensft_match": match}
    text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    if not mc:
        text += f"process_results: !function {HOOKS_MODULE}.{metric}\n"
    (stage / f"{name}.yaml").write_text(text, encoding="utf-8")
