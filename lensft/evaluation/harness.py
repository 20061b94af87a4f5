"""One lm-evaluation-harness run on a lensft model handle, offline.

:func:`run_harness` wraps the handle's *in-memory* model in lm-eval's ``HFLM`` (no reload, no
checkpoint written: a graft is scored as it sits in memory), builds the tasks offline
(:mod:`lensft.evaluation.tasks`), calls ``lm_eval.simple_evaluate`` inside
:func:`~lensft.evaluation.offline.hf_offline` and returns a :class:`HarnessRun`: lm-eval's
results JSON (what ``lm_eval --output_path`` writes, samples left out), the per-item samples,
and the :class:`~lensft.results.ProbeResult` built from them (:mod:`lensft.evaluation.convert`).

The handle's tokenizer is copied before lm-eval sees it (lm-eval sets a pad token and the padding
side on the tokenizer it is given), so later probes on the same handle see it unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from lensft.atomic import write_json_atomic, write_text_atomic
from lensft.errors import EvaluationError, OutputExists
from lensft.evaluation.convert import harness_result, plain_json, task_hashes
from lensft.evaluation.export import export_task_dir
from lensft.evaluation.offline import hf_offline
from lensft.evaluation.quiet import quiet_lm_eval
from lensft.evaluation.settings import HarnessSettings
from lensft.evaluation.tasks import load_task_objects, local_data_manager, require_lm_eval, task_managers
from lensft.handle import ModelHandle
from lensft.prompts import PromptSet
from lensft.results import ProbeResult, save_result

log = logging.getLogger(__name__)


@dataclass
class HarnessRun:
    """What one run produced: the lensft result, lm-eval's results JSON and its logged samples."""

    result: ProbeResult
    raw: dict[str, Any]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0

    def save(self, path: str | Path, *, force: bool = False) -> list[Path]:
        """Write the result JSON at ``path``, lm-eval's results JSON beside it
        (``<stem>.lm_eval.json``) and, when samples were logged, ``<stem>.lm_eval_samples.jsonl``
        (one lm-eval sample per line, with its ``task``). Returns the paths written.

        Raises:
            OutputExists: one of the files exists and ``force`` is false.
        """
        paths = output_paths(path)
        if not force:
            for p in paths.values():
                if p.exists():
                    raise OutputExists(f"{p} exists; remove it or write elsewhere (or force)")
        save_result(self.result, paths["result"])
        write_json_atomic(paths["lm_eval"], self.raw)
        written = [paths["result"], paths["lm_eval"]]
        if self.samples:
            lines = (json.dumps({"task": t, **row}, ensure_ascii=False) for t in sorted(self.samples)
                     for row in self.samples[t])
            write_text_atomic(paths["samples"], "".join(line + "\n" for line in lines))
            written.append(paths["samples"])
        return written


def output_paths(path: str | Path) -> dict[str, Path]:
    """Where :meth:`HarnessRun.save` writes: ``result``, ``lm_eval`` and ``samples`` paths."""
    p = Path(path)
    stem = p.name[:-5] if p.name.endswith(".json") else p.name
    return {"result": p, "lm_eval": p.with_name(f"{stem}.lm_eval.json"),
            "samples": p.with_name(f"{stem}.lm_eval_samples.jsonl")}


def run_harness(handle: ModelHandle, settings: HarnessSettings | None = None,
                prompts: Optional[PromptSet] = None) -> HarnessRun:
    """Score ``handle`` with lm-eval on ``settings.tasks``, or on ``prompts`` exported as a task.

    Raises:
        EvaluationError: lm-eval missing, no tasks, an unknown task, a dataset not available offline.
    """
    s = settings or HarnessSettings()
    require_lm_eval()
    if not s.tasks and prompts is None:
        raise EvaluationError("name at least one lm-eval task, or give a prompt set of kind 'task' to score")
    if not s.tasks and s.num_fewshot:
        raise EvaluationError("a prompt set is scored 0-shot, as short_tasks scores it; few-shot examples apply "
                              "to lm-eval tasks")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lensft-lm-eval-") as tmp, hf_offline(), quiet_lm_eval():
        names, include, chat = _task_sources(s, prompts, Path(tmp))
        stray = sorted(set(s.data_files) - set(names))
        if stray:
            raise EvaluationError(f"data files given for {stray}, which are not among the tasks {names}")
        managers = task_managers(names, include)
        if s.data_files:
            local = local_data_manager(managers, s.data_files, Path(tmp) / "overrides")
            managers.update({n: local for n in s.data_files})
        raw, chat = _evaluate(handle, s, next(iter(managers.values())), load_task_objects(managers), chat)
    samples = plain_json(raw.pop("samples", None) or {}) if s.log_samples else {}
    raw = plain_json(raw)
    raw["task_hashes"] = task_hashes(samples)
    result = harness_result(handle.provenance, s, raw, samples, prompts=prompts, chat=chat)
    return HarnessRun(result=result, raw=raw, samples=samples, seconds=time.perf_counter() - t0)


def _task_sources(s: HarnessSettings, prompts: Optional[PromptSet], scratch: Path) -> tuple[list[str], list[Any], bool]:
    """Task names, include paths and whether to apply the chat template."""
    if s.tasks:
        if prompts is not None:
            log.info("lm_eval: tasks %s given; prompt set %r not scored", s.tasks, prompts.name)
        return list(s.tasks), list(s.include_path), bool(s.apply_chat_template)
    exported = export_task_dir([prompts], scratch / "tasks", match=s.match,  # type: ignore[list-item]
                               max_new_tokens=s.max_new_tokens)
    chat = exported.chat if s.apply_chat_template is None else s.apply_chat_template
    return [exported.group], [*s.include_path, exported.path], chat


@contextlib.contextmanager
def _own_length_limit(model: Any) -> Iterator[None]:
    """Clear the checkpoint's ``generation_config.max_new_tokens`` while lm-eval runs.

    lm-eval bounds a generation with ``max_length`` (prompt + the task's ``max_gen_toks``); a
    checkpoint whose generation config sets ``max_new_tokens`` overrides that in transformers, so
    answers were cut at the checkpoint's length instead of the task's (the organism's 16 tokens
    against the exported tasks' 24).
    """
    gen = getattr(model, "generation_config", None)
    saved = getattr(gen, "max_new_tokens", None)
    if gen is not None:
        gen.max_new_tokens = None
    try:
        yield
    finally:
        if gen is not None:
            gen.max_new_tokens = saved


def _evaluate(handle: ModelHandle, s: HarnessSettings, tm: Any, objs: list[Any],
              chat: bool) -> tuple[dict[str, Any], bool]:
    """lm-eval's results dict for ``objs`` on the handle's model, and whether chat was applied."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    tok = copy.deepcopy(handle.tokenizer)
    if chat and not getattr(tok, "chat_template", None):
        log.info("lm_eval: %s has no chat template; prompts are scored as plain text", handle.label)
        chat = False
    lm = HFLM(pretrained=handle.model, tokenizer=tok, batch_size=s.batch_size)
    try:
        with _own_length_limit(handle.model):
            out = lm_eval.simple_evaluate(
                model=lm, tasks=objs, task_manager=tm, num_fewshot=s.num_fewshot, limit=s.lm_eval_limit(),
                log_samples=s.log_samples, bootstrap_iters=s.bootstrap_iters, apply_chat_template=chat,
                fewshot_as_multiturn=chat, gen_kwargs=s.gen_kwargs or None, fewshot_random_seed=s.fewshot_seed,
                confirm_run_unsafe_code=s.confirm_run_unsafe_code)
    except ValueError as e:
        if "unsafe" in str(e).lower():
            raise EvaluationError(f"{str(e).splitlines()[0]} Allow it only where running model-written code is "
                                  "acceptable (confirm_run_unsafe_code)") from None
        raise
    if out is None:
        raise EvaluationError("lm-eval returned no results (not the main process)")
    return dict(out), chat
