"""``lensft eval``: standard benchmarks through lm-evaluation-harness on a checkpoint or an
in-memory graft; ``lensft export-tasks``: task prompt sets as an lm-eval task directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from lensft.cli.options import (AlphaOpt, BaseOpt, DeviceOpt, DtypeOpt, FfnOpt, ForceOpt, HostOpt, LayersOpt, LongOpt,
                                MhaOpt, NormsOpt, RoleOpt, ShortOpt, graft_spec_from_options, load_options,
                                memory_errors_as_flags)
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

  # the paper's nine benchmarks (Table 3) next to the paper's scores; --limit for a quick look
  lensft eval --model M --suite paper --limit 50 --out m-paper/

Nothing is downloaded: datasets come from the local Hugging Face cache, --data-files or
--include-path.
"""


def eval_cmd(
    out: Annotated[Path, typer.Option("--out", help="result JSON (lm-eval's JSON goes beside it); with --suite a directory")],
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
    suite: Annotated[Optional[str], typer.Option("--suite", help="a benchmark suite instead of --tasks: 'paper' (the paper's Table 3) or a suite YAML")] = None,
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
    dtype: DtypeOpt = None,
    force: ForceOpt = False,
) -> None:
    from lensft.evaluation.settings import HarnessSettings

    names = [t.strip() for item in tasks or [] for t in item.split(",") if t.strip()]
    if sum((bool(names), prompts is not None, suite is not None)) != 1:
        raise LensftError("give --tasks (lm-eval tasks), --prompts (a task prompt set) or --suite (a benchmark list), "
                          "one of the three")
    settings = _validated(HarnessSettings, dict(
        tasks=names, num_fewshot=num_fewshot, limit=limit, batch_size=batch_size,
        include_path=[str(p) for p in include_path or []], data_files=_data_files(data_files or []),
        apply_chat_template=chat, gen_kwargs=_pairs("--gen-kwargs", gen_kwargs or []), log_samples=not no_samples,
        confirm_run_unsafe_code=allow_code))
    bench = _suite(suite, settings, out, force, num_fewshot, gen_kwargs) if suite is not None else None
    if bench is None:
        _refuse_existing(out, force)
    ps = _read_prompts(prompts) if prompts is not None else None
    with memory_errors_as_flags():
        handle = _load(model, short, long, base, dict(mha=mha, ffn=ffn, host=host, layers=layers, norms=norms,
                                                      alpha=alpha, role=role), load_options(device, dtype))
    if bench is not None:
        return _with_flag_hints(lambda: _run_suite(handle, bench, settings, out, force))
    from lensft.evaluation.probe import LmEvalProbe

    run = _with_flag_hints(lambda: LmEvalProbe().evaluate(handle, ps, settings))
    written = run.save(out, force=force)
    console.print(results_table(run.result))
    console.print(f"{run.result.summary.get('n_items', 0):.0f} documents in {run.seconds:.1f} s; saved "
                  + ", ".join(str(p) for p in written))


def _refuse_existing(out: Path, force: bool) -> None:
    from lensft.errors import OutputExists
    from lensft.evaluation.harness import output_paths

    if not force:
        for p in output_paths(out).values():
            if p.exists():
                raise OutputExists(f"{p} exists; pass --force to replace it or choose another --out")


def _suite(name: str, settings, out: Path, force: bool, num_fewshot: Optional[int], gen_kwargs: Optional[list[str]]):
    """The suite to run (checked before any model is loaded)."""
    from lensft.errors import OutputExists
    from lensft.evaluation.suite import load_suite

    if num_fewshot is not None or gen_kwargs:
        raise LensftError("--num-fewshot and --gen-kwargs are set per benchmark by the suite; edit a copy of its YAML")
    if settings.data_files and not set(settings.data_files) <= {t for b in load_suite(name).benchmarks for t in b.tasks}:
        raise LensftError(f"--data-files names tasks outside suite {name!r}")
    if out.exists() and not out.is_dir():
        raise LensftError(f"--out {out} is a file; with --suite it is a directory")
    if (out / "suite.json").exists() and not force:
        raise OutputExists(f"{out / 'suite.json'} exists; pass --force to replace it or choose another --out")
    return load_suite(name)


def _run_suite(handle, bench, settings, out: Path, force: bool) -> None:
    from lensft.evaluation.suite_run import run_suite

    over = {k: getattr(settings, k) for k in ("limit", "batch_size", "include_path", "data_files", "apply_chat_template",
                                              "log_samples")}
    console.print(f"suite [bold]{bench.name}[/] on {handle.label}: {len(bench.benchmarks)} benchmarks")
    run = run_suite(handle, bench, out, allow_code=settings.confirm_run_unsafe_code, force=True,
                    on_row=lambda r: console.print(f"  {r.benchmark}: " + (f"{r.value:.4f} ({r.score})" if r.value is not None
                                                                           else f"not measured: {_flags(r.reason)}")),
                    **over)
    console.print(suite_table(bench, run))
    console.print(f"saved {out / 'suite.json'} and one result per measured benchmark in {out}")
    missing = run.not_measured
    if missing:
        raise LensftError(f"{len(missing)} of {len(run.rows)} benchmarks not measured: "
                          + "; ".join(f"{r.benchmark}" for r in missing) + f" (reasons in {out / 'suite.json'})")


def suite_table(bench, run) -> Table:
    """Benchmark, lm-eval score (percent) with its 95% interval, and the paper's arms beside it."""
    arms = list(bench.arms)
    paper = ", ".join(f"{a} = {d}" for a, d in bench.arms.items())
    t = Table(title=f"{bench.name} suite on {run.model}, percent (paper: {paper})", header_style="bold",
              title_justify="left")
    for col in ("benchmark", "value", "95% interval", "n", *[f"paper {a}" for a in arms]):
        t.add_column(col, justify="left" if col == "benchmark" else "right")
    for r in run.rows:
        ref = ["-" if r.paper.get(a) is None else f"{r.paper[a]:.2f}" for a in arms]
        if r.value is None:
            t.add_row(r.benchmark, "not measured", "-", "-", *ref)
            continue
        ci = "-" if r.ci95 is None else f"[{100 * r.ci95[0]:.1f}, {100 * r.ci95[1]:.1f}]"
        t.add_row(r.benchmark, f"{100 * r.value:.2f}", ci, str(r.n or "-"), *ref)
    return t


def _load(model: Optional[Path], short: Optional[Path], long: Optional[Path], base: Optional[Path],
          graft: dict[str, Any], options):  # options: LoadOptions -> ModelHandle
    """The model to score: a checkpoint (--model) or a graft of the triple built in memory."""
    triple_given = short is not None or long is not None or base is not None
    if (model is not None) == triple_given:
        raise LensftError("give --model DIR, or --short S --long L [--base B] with --mha/--ffn for a graft")
    if model is not None:
        if graft["mha"] or graft["ffn"]:
            raise LensftError("--mha/--ffn build a graft of --short/--long; they do not apply to --model")
        from lensft.handle import load_model

        return load_model(model, options)
    if short is None or long is None or graft["mha"] is None or graft["ffn"] is None:
        raise LensftError("a graft needs --short, --long, --mha and --ffn (e.g. --mha long --ffn short)")
    from lensft.checkpoints.load import load_triple
    from lensft.graft import graft_model, variant_model

    spec = graft_spec_from_options(**graft)
    triple = load_triple(short=short, long=long, base=base)
    if spec.mha == spec.ffn == spec.host and not spec.overrides:
        return variant_model(triple, spec.host.value, options)
    return graft_model(triple, spec, options)


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


_FLAG_HINTS = {"(data files ": "(--data-files ", "(include path)": "(--include-path DIR)", "(or force)": "(or --force)",
               "the include path": "--include-path DIR", "(confirm_run_unsafe_code)": "(--allow-code-execution)"}


def _flags(msg: str) -> str:
    """A library message with its wording of options replaced by this command's flag names."""
    for words, flag in _FLAG_HINTS.items():
        msg = msg.replace(words, flag)
    return msg


def _with_flag_hints(fn):
    """Run ``fn``; an evaluation error's wording of options gets the flag names of this command."""
    from lensft.errors import EvaluationError, OutputExists

    try:
        return fn()
    except (EvaluationError, OutputExists) as e:
        raise type(e)(_flags(str(e))) from None


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
