"""``lensft eval``: standard benchmarks through lm-evaluation-harness on a checkpoint or an
in-memory graft; ``lensft export-tasks``: task prompt sets as an lm-eval task directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from lensft.cli.options import (AlphaOpt, BaseOpt, DeviceOpt, DtypeOpt, FfnOpt, ForceOpt, HostOpt, LayersOpt, LongOpt,
                                MhaOpt, NormsOpt, RoleOpt, ShortOpt, graft_spec_from_options)
from lensft.errors import LensftError

console = Console(highlight=False)

EVAL_HELP = """Score a model on lm-evaluation-harness tasks, offline, and save a lensft result JSON
plus lm-eval's own results JSON beside it.

Examples:

  lensft eval --model ckpt/short --tasks gsm8k_cot --num-fewshot 4 --out short-gsm8k.json

  # the paper's MHA swap: the short model with the long model's attention, built in memory
  lensft eval --short S --long L --mha long --ffn short --tasks gsm8k_cot --num-fewshot 4 --out graft-gsm8k.json

  # your own task YAML over local JSONL files, or a registered task over a local copy of its data
  lensft eval --model M --include-path my_tasks/ --tasks my_task --out my.json
  lensft eval --model M --tasks gsm8k_cot --data-files gsm8k_cot=gsm8k/test.jsonl --out m.json

  # a lensft task prompt set, scored by lm-eval exactly as the short_tasks probe scores it
  lensft eval --model M --prompts arithmetic.jsonl --out m-arith.json

Nothing is downloaded: datasets come from the local Hugging Face cache, --data-files or
--include-path.
"""


def eval_cmd(
    out: Annotated[Path, typer.Option("--out", help="result JSON (lm-eval's JSON goes beside it)")],
    model: Annotated[Optional[Path], typer.Option("--model", help="checkpoint directory")] = None,
    short: ShortOpt = None,
    long: LongOpt = None,
    base: BaseOpt = None,
    mha: MhaOpt = None,
    ffn: FfnOpt = None,
    host: HostOpt = None,
    layers: LayersOpt = None,
    norms: NormsOpt = "host",
    alpha: AlphaOpt = 1.0,
    role: RoleOpt = None,
    tasks: Annotated[Optional[list[str]], typer.Option("--tasks", help="lm-eval tasks, groups or tags, comma-separated (repeatable)")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="a task prompt set to score instead of --tasks")] = None,
    include_path: Annotated[Optional[list[Path]], typer.Option("--include-path", help="directory of task YAML files (repeatable)")] = None,
    data_files: Annotated[Optional[list[str]], typer.Option("--data-files", help="TASK=FILE or TASK=SPLIT:FILE: run a registered task on local files (repeatable)")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option("--num-fewshot", help="few-shot examples [default: each task's]")] = None,
    limit: Annotated[Optional[float], typer.Option("--limit", help="first N documents per task (a fraction when < 1)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="batch size")] = 8,
    chat: Annotated[Optional[bool], typer.Option("--chat/--no-chat", help="apply the tokenizer's chat template [default: off; a prompt set's own flag]")] = None,
    gen_kwargs: Annotated[Optional[list[str]], typer.Option("--gen-kwargs", help="generation override KEY=VALUE, e.g. max_gen_toks=512 (repeatable)")] = None,
    allow_code: Annotated[bool, typer.Option("--allow-code-execution", help="run tasks that execute model-written code (MBPP, HumanEval)")] = False,
    no_samples: Annotated[bool, typer.Option("--no-samples", help="do not keep per-item records")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    force: ForceOpt = False,
) -> None:
    from lensft.evaluation.harness import output_paths
    from lensft.evaluation.probe import LmEvalProbe
    from lensft.evaluation.settings import HarnessSettings

    names = [t.strip() for item in tasks or [] for t in item.split(",") if t.strip()]
    if bool(names) == (prompts is not None):
        raise LensftError("give --tasks (lm-eval tasks) or --prompts (a task prompt set), one of the two")
    settings = _validated(HarnessSettings, dict(
        tasks=names, num_fewshot=num_fewshot, limit=limit, batch_size=batch_size,
        include_path=[str(p) for p in include_path or []], data_files=_data_files(data_files or []),
        apply_chat_template=chat, gen_kwargs=_pairs("--gen-kwargs", gen_kwargs or []), log_samples=not no_samples,
        confirm_run_unsafe_code=allow_code))
    if not force:
        for p in output_paths(out).values():
            if p.exists():
                from lensft.errors import OutputExists

                raise OutputExists(f"{p} exists; pass --force to replace it or choose another --out")
    ps = _read_prompts(prompts) if prompts is not None else None
    handle = _load(model, short, long, base, dict(mha=mha, ffn=ffn, host=host, layers=layers, norms=norms,
                                                  alpha=alpha, role=role), device, dtype)
    run = _with_flag_hints(lambda: LmEvalProbe().evaluate(handle, ps, settings))
    written = run.save(out, force=force)
    console.print(results_table(run.result))
    console.print(f"{run.result.summary.get('n_items', 0):.0f} documents in {run.seconds:.1f} s; saved "
                  + ", ".join(str(p) for p in written))


def _load(model: Optional[Path], short: Optional[Path], long: Optional[Path], base: Optional[Path],
          graft: dict[str, Any], device: str, dtype: str):  # -> ModelHandle
    """The model to score: a checkpoint (--model) or a graft of the triple built in memory."""
    triple_given = short is not None or long is not None or base is not None
    if (model is not None) == triple_given:
        raise LensftError("give --model DIR, or --short S --long L [--base B] with --mha/--ffn for a graft")
    if model is not None:
        if graft["mha"] or graft["ffn"]:
            raise LensftError("--mha/--ffn build a graft of --short/--long; they do not apply to --model")
        from lensft.handle import load_model

        return _place(load_model(model), device=device, dtype=dtype)
    if short is None or long is None or graft["mha"] is None or graft["ffn"] is None:
        raise LensftError("a graft needs --short, --long, --mha and --ffn (e.g. --mha long --ffn short)")
    from lensft.checkpoints.load import load_triple
    from lensft.graft import graft_model, variant_model

    spec = graft_spec_from_options(**graft)
    triple = load_triple(short=short, long=long, base=base)
    if spec.mha == spec.ffn == spec.host and not spec.overrides:
        handle = variant_model(triple, spec.host.value)
    else:
        handle = graft_model(triple, spec)
    return _place(handle, device=device, dtype=dtype)


_DTYPES = ("float32", "bfloat16", "float16")


def _place(handle, *, device: str, dtype: str):  # -> ModelHandle
    """Move the model to ``device`` and ``dtype`` (until perf's LoadOptions load it there directly)."""
    import torch

    if dtype not in _DTYPES:
        raise LensftError(f"--dtype must be one of {', '.join(_DTYPES)} (got {dtype!r})")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise LensftError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1 ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LensftError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if dev.type != "cpu" or dtype != "float32":
        handle.model.to(device=dev, dtype=getattr(torch, dtype))
    return handle


def _read_prompts(path: Path):  # -> PromptSet
    from lensft.probes.short_tasks import load_tasks

    return load_tasks(path)


def _data_files(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        task, sep, spec = item.partition("=")
        if not sep or not task.strip() or not spec.strip():
            raise LensftError(f"--data-files takes TASK=FILE or TASK=SPLIT:FILE (got {item!r})")
        split, colon, path = spec.partition(":")
        if colon and split and "/" not in split and "\\" not in split:
            entry = out.setdefault(task.strip(), {})
            if not isinstance(entry, dict):
                raise LensftError(f"--data-files {task}: give either one FILE or SPLIT:FILE entries")
            entry[split] = path
        else:
            if task.strip() in out:
                raise LensftError(f"--data-files {task}: give either one FILE or SPLIT:FILE entries")
            out[task.strip()] = spec
    return out


def _pairs(flag: str, items: list[str]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise LensftError(f"{flag} takes KEY=VALUE (got {item!r})")
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _validated(cls: Any, data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "options"
        raise LensftError(f"{flag}: {err['msg']}") from None


_FLAG_HINTS = {"(data files ": "(--data-files ", "(include path)": "(--include-path DIR)",
               "the include path": "--include-path DIR", "(confirm_run_unsafe_code)": "(--allow-code-execution)"}


def _with_flag_hints(fn):
    """Run ``fn``; an evaluation error's wording of options gets the flag names of this command."""
    from lensft.errors import EvaluationError

    try:
        return fn()
    except EvaluationError as e:
        msg = str(e)
        for words, flag in _FLAG_HINTS.items():
            msg = msg.replace(words, flag)
        raise EvaluationError(msg) from None


def results_table(result) -> Table:  # result: ProbeResult of the lm_eval probe
    """Task, metric (and lm-eval filter), value and the 95% interval of every score."""
    from lensft.evaluation.convert import metric_rows

    t = Table(title=f"lm-eval on {result.model.label}", header_style="bold", title_justify="left")
    for col, just in (("task", "left"), ("metric", "left"), ("value", "right"), ("95% interval", "right"),
                      ("n", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in metric_rows(result):
        ci = r.ci95
        metric = r.metric if r.filter in ("none", "") else f"{r.metric}/{r.filter}"
        t.add_row(r.task, metric, f"{r.value:.4f}", "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]",
                  "-" if r.n is None else str(r.n))
    return t


EXPORT_HELP = """Write task prompt sets (lensft's kind 'task', e.g. the organism's evaluation sets) as
an lm-eval task directory: one YAML + JSONL per task and a group YAML, scored by lm-eval exactly
as the short_tasks probe scores them.

Example:

  lensft export-tasks ORGANISM_DIR/data --group organism --out organism-tasks
  lensft eval --model M --include-path organism-tasks --tasks organism --chat --out m.json
"""


def _task_sets(paths: list[Path]) -> tuple[list, list[str]]:
    """Prompt sets from files, and from every ``*.jsonl`` of a directory whose kind is ``task``
    (the names of the other files are returned as skipped)."""
    from lensft.prompts import read_prompt_set

    sets, skipped = [], []
    for p in paths:
        if not p.is_dir():
            sets.append(_read_prompts(p))
            continue
        for f in sorted(p.glob("*.jsonl")):
            ps = read_prompt_set(f)
            (sets.append(ps) if ps.kind == "task" else skipped.append(f.name))
    if not sets:
        raise LensftError(f"no task prompt sets in {', '.join(map(str, paths))}")
    return sets, skipped


def export_tasks(
    prompts: Annotated[list[Path], typer.Argument(help="task prompt sets, simple task JSONL files, or directories of prompt sets")],
    out: Annotated[Path, typer.Option("--out", help="task directory to write")],
    group: Annotated[Optional[str], typer.Option("--group", help="lm-eval group name [default: the prompt set's name]")] = None,
    match: Annotated[str, typer.Option("--match", help="generated answers: exact or contains match")] = "exact",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="greedy answer length cap")] = 24,
    force: ForceOpt = False,
) -> None:
    from lensft.evaluation.export import export_task_dir

    if match not in ("exact", "contains"):
        raise LensftError(f"--match must be exact or contains (got {match!r})")
    if max_new_tokens < 1:
        raise LensftError("--max-new-tokens must be at least 1")
    sets, skipped = _task_sets(prompts)
    for name in skipped:
        console.print(f"skipped {name} (not a task prompt set)")
    try:
        done = export_task_dir(sets, out, group=group, match=match, max_new_tokens=max_new_tokens,  # type: ignore[arg-type]
                               force=force)
    except LensftError as e:
        raise type(e)(str(e).replace("(or force)", "(or pass --force)")) from None
    console.print(f"wrote {len(done.tasks)} lm-eval tasks ({done.n_items} documents) in group [bold]{done.group}[/] "
                  f"to {done.path}" + ("; score them with --chat" if done.chat else ""))


def register(app: typer.Typer) -> None:
    app.command("eval", help=EVAL_HELP, no_args_is_help=True)(eval_cmd)
    app.command("export-tasks", help=EXPORT_HELP, no_args_is_help=True)(export_tasks)
