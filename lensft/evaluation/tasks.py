"""lm-eval tasks, found and built offline, with one-line errors for what is missing.

:func:`load_tasks` turns task names into lm-eval task/group objects:

- names are looked up in the include paths first and in lm-eval's built-in registry only when
  needed (indexing the registry's ~15k YAML files takes seconds);
- a registered task named in ``data_files`` gets an override YAML (``include:`` the registered
  file, ``dataset_path: json|csv|parquet`` and ``dataset_kwargs.data_files``), the same file a
  user would write to run the task over local files;
- a task whose dataset cannot be loaded offline raises :class:`~lensft.errors.EvaluationError`
  naming the task, the dataset and the two ways to make it available locally.

Relative ``data_files`` paths in a task YAML are read relative to the working directory (that is
how ``datasets`` resolves them); the overrides written here always hold absolute paths.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from lensft.errors import EvaluationError

log = logging.getLogger(__name__)

#: ``datasets`` builders that read local files, by file extension
LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
_EVALUATE_MODULE = re.compile(r"Module '([\w.-]+)' doesn't exist on the Hugging Face Hub")
_MISSING = ("ConnectionError", "OfflineModeIsEnabled", "DatasetNotFoundError", "FileNotFoundError",
            "EmptyDatasetError", "LocalEntryNotFoundError")


def require_lm_eval() -> Any:
    """The ``lm_eval`` module, or an :class:`EvaluationError` saying how to install it."""
    try:
        import lm_eval
        import lm_eval.tasks  # noqa: F401
    except ImportError as e:
        raise EvaluationError(f"lm-evaluation-harness is not installed ({e}); install it with "
                              "pip install 'lensft[eval]' (after torch==2.13.0)") from None
    return lm_eval


@functools.lru_cache(maxsize=1)
def registry() -> Any:
    """lm-eval's built-in task registry (indexed once per process: ~15k YAML files, seconds)."""
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    return TaskManager()


def task_managers(names: Sequence[str], include_paths: Sequence[str | Path] = ()) -> dict[str, Any]:
    """For each name, the lm-eval ``TaskManager`` that knows it: the include paths' own manager
    when they define the name (they take precedence), lm-eval's registry otherwise.

    Raises:
        EvaluationError: an include path is not a directory, or a name is not a task, group or tag.
    """
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    paths = [Path(p).expanduser().resolve() for p in include_paths]
    for p in paths:
        if not p.is_dir():
            raise EvaluationError(f"task include path {p} is not a directory of lm-eval task YAML files")
    local = TaskManager(include_path=[str(p) for p in paths], include_defaults=False) if paths else None
    out: dict[str, Any] = {}
    for n in names:
        if local is not None and n in local.task_index:
            out[n] = local
            continue
        if n not in registry().task_index:
            known = registry().all_tasks + (local.all_tasks if local is not None else [])
            near = difflib.get_close_matches(n, known, n=3, cutoff=0.7)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise EvaluationError(f"lm-eval has no task, group or tag {n!r}.{hint} For your own task, put its YAML "
                                  "file in a directory and add that directory to the include path")
        out[n] = registry()
    return out


def override_yaml(task: str, registered_yaml: Path, files: str | Mapping[str, str], test_split: str) -> dict[str, Any]:
    """The task config that runs a registered task over local files.

    ``files`` is one file (used for the task's test split) or ``{split: file}``; every file must
    exist and all must share one extension (``.json``/``.jsonl``, ``.csv``, ``.parquet``).
    """
    by_split = {test_split: files} if isinstance(files, (str, Path)) else dict(files)
    resolved: dict[str, str] = {}
    for split, f in by_split.items():
        p = Path(f).expanduser().resolve()
        if not p.is_file():
            raise EvaluationError(f"data file {p} for task {task!r} (split {split!r}) does not exist")
        resolved[str(split)] = str(p)
    kinds = {LOCAL_BUILDERS.get(Path(f).suffix.lower()) for f in resolved.values()}
    if None in kinds or len(kinds) != 1:
        raise EvaluationError(f"data files of task {task!r} must all be .jsonl/.json, .csv or .parquet "
                              f"(got {sorted(Path(f).name for f in resolved.values())})")
    return {"include": str(registered_yaml), "task": task, "dataset_path": kinds.pop(), "dataset_name": None,
            "dataset_kwargs": {"data_files": resolved}}


def local_data_manager(managers: Mapping[str, Any], data_files: Mapping[str, Any], out_dir: Path) -> Any:
    """A ``TaskManager`` over override YAMLs (one per ``data_files`` entry, written to ``out_dir``)
    that run the tasks (found by ``managers``: name -> its ``TaskManager``) over local files."""
    from lm_eval.tasks import TaskManager

    out_dir.mkdir(parents=True, exist_ok=True)
    for task, files in data_files.items():
        entry = managers[task].task_index.get(task)
        if entry is None or entry.kind.name != "TASK" or entry.yaml_path is None:
            what = "unknown" if entry is None else f"a {entry.kind.name.lower()}"
            raise EvaluationError(f"data files replace the dataset of one registered YAML task; {task!r} is {what} "
                                  "(for a group, use the local Hugging Face cache or write your own task YAML)")
        cfg = override_yaml(task, Path(entry.yaml_path), files, _test_split(Path(entry.yaml_path)))
        (out_dir / f"{task}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return TaskManager(include_path=[str(out_dir)], include_defaults=False)


def _test_split(path: Path) -> str:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(path, resolve_func=False)
    return str(cfg.get("test_split") or cfg.get("validation_split") or "test")


def load_task_objects(managers: Mapping[str, Any]) -> list[Any]:
    """Build the lm-eval Task/Group objects of each name with its ``TaskManager`` (datasets are
    loaded here).

    Raises:
        EvaluationError: one line about the first task whose dataset is not available offline.
    """
    objs: list[Any] = []
    for name, tm in managers.items():
        try:
            loaded = tm.load([name])
        except Exception as e:  # lm-eval and datasets raise many types; classified below
            raise EvaluationError(describe_load_failure(name, e)) from None
        if name in loaded["groups"]:
            objs.append(loaded["groups"][name])
        elif name in loaded["tasks"]:
            objs.append(loaded["tasks"][name])
        else:  # a tag: its tasks
            objs.extend(loaded["tasks"].values())
    return objs


def describe_load_failure(name: str, exc: BaseException) -> str:
    """One line: which task could not load which dataset, and how to make it available offline."""
    cfg = _failing_task_config(exc)
    first = _message(exc)
    if cfg is None:
        metric = _EVALUATE_MODULE.search(first)
        if metric:
            return (f"task {name!r} needs the evaluate library's metric {metric.group(1)!r}, which is not in the local "
                    "cache and is not downloaded offline; load it once where there is network "
                    f"(evaluate.load({metric.group(1)!r})) or copy a Hugging Face cache that holds it (HF_HOME)")
        return f"lm-eval could not build task {name!r}: {first}"
    task = getattr(cfg, "task", None) or name
    path, dname = getattr(cfg, "dataset_path", None), getattr(cfg, "dataset_name", None)
    kwargs = getattr(cfg, "dataset_kwargs", None) or {}
    in_group = "" if task == name else f" (part of {name!r})"
    if path in set(LOCAL_BUILDERS.values()):
        return (f"task {task!r}{in_group} reads local files {kwargs.get('data_files')} that cannot be loaded ({first}); "
                "fix the paths in its YAML (relative paths are relative to the working directory)")
    if not _is_missing(exc):
        return f"task {task!r}{in_group}: loading dataset {path!r} failed: {first}"
    ds = f"{path!r}" + (f" (config {dname!r})" if dname else "")
    local = (f"point the task at local JSON/JSONL files with the dataset's fields (data files {task}=FILE)"
             if task == name else "write a task YAML with dataset_path: json over local files (include path)")
    return (f"task {task!r}{in_group} needs the Hugging Face dataset {ds}, which is not in the local cache and is "
            f"not downloaded offline; {local}, or copy a Hugging Face cache that holds it (HF_HOME)")


def _failing_task_config(exc: BaseException) -> Any:
    """The config of the lm-eval task whose ``download`` raised ``exc`` (None if not found)."""
    from lm_eval.api.task import Task

    found = None
    for e in _chain(exc):
        for frame, _ in traceback.walk_tb(e.__traceback__):
            me = frame.f_locals.get("self")
            if frame.f_code.co_name == "download" and isinstance(me, Task):
                found = getattr(me, "config", None)
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _is_missing(exc: BaseException) -> bool:
    return any(type(e).__name__ in _MISSING or isinstance(e, (ConnectionError, FileNotFoundError)) for e in _chain(exc))


def _message(exc: BaseException) -> str:
    """``Type: first line`` of the outermost exception in the chain that says something."""
    for e in _chain(exc):
        text = str(e).strip().splitlines()
        if text:
            return f"{type(e).__name__}: {text[0]}"
    return type(exc).__name__
