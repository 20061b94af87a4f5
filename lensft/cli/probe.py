"""``lensft probe``: run one registered probe on one model and save the result JSON.

The saved file is a :class:`lensft.results.ProbeResult` (see :mod:`lensft.results` for the
field names: ``probe``, ``settings``, ``model``, ``prompt_set``, ``summary``, ``arrays`` (nested
lists; per layer x head arrays are ``[layer][head]``), ``dims``, ``coords``, ``records``).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from lensft.cli.options import (BatchSizeOpt, DeviceOpt, DtypeOpt, ForceOpt, flag, load_options,
                                memory_errors_as_flags)
from lensft.errors import LensftError, OutputExists
from lensft.prompts import PromptSet, read_prompt_set
from lensft.results import ProbeResult, save_result

console = Console(highlight=False)

#: Built-in prompt set per prompt-set kind, used when a probe names no default of its own.
KIND_DEFAULTS = {"text": "ffn_default.jsonl", "task": "tasks_default.jsonl", "conflict": "conflict_default.jsonl",
                 "needle": "needle_default.jsonl"}

PROBE_HELP = """Run a probe on a model and save the full result as JSON.

Examples:

  lensft probe --list

  lensft probe ffn_activations --model ckpt/short

  lensft probe knowledge_preference --model ckpt/long --prompts conflicts.jsonl --set generate=false

  lensft probe patching --model ckpt/short --donor ckpt/long --set component=mha

--set takes key=value pairs of the probe's settings; values are parsed as JSON when they can be
(numbers, true/false, [lists]) and as strings otherwise. Without --prompts a tiny built-in prompt
set is used.
"""


def parse_settings(settings_cls: type[BaseModel], pairs: list[str]) -> BaseModel:
    """Build a probe's settings from ``key=value`` strings (values JSON-decoded when possible)."""
    fields = settings_cls.model_fields
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise LensftError(f"--set {pair!r}: expected key=value")
        if key not in fields:
            raise LensftError(f"--set {key}: unknown setting; this probe takes {', '.join(sorted(fields)) or 'none'}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    try:
        return settings_cls.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise LensftError(f"--set {loc}: {err['msg']}") from None


def with_batch_size(settings: BaseModel, batch_size: Optional[int], probe_name: str) -> BaseModel:
    """``settings`` with ``--batch-size`` applied (refused for a probe without a batch size)."""
    if batch_size is None:
        return settings
    if "batch_size" not in type(settings).model_fields:
        raise LensftError(f"probe {probe_name!r} runs one prompt at a time; drop --batch-size")
    return settings.model_copy(update={"batch_size": batch_size})


def tokens_per_batch(ps: PromptSet, settings: BaseModel) -> int:
    """An upper estimate of the tokens one forward pass holds, for the memory check: the batch
    size times the longest item (its characters, at most one token each, plus a chat template),
    capped by the probe's ``max_length``."""
    longest = max((_chars(it.model_dump()) for it in ps.items), default=0) + 64
    cap = getattr(settings, "max_length", None)
    return int(getattr(settings, "batch_size", 1)) * (min(longest, cap) if cap else longest)


def _chars(obj: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_chars(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_chars(v) for v in obj)
    return 0


def default_prompt_path(probe: Any) -> Path:
    """The built-in prompt set of a probe (its ``default_prompts`` or its first kind's default)."""
    name = getattr(probe, "default_prompts", None)
    if not name:
        name = next((KIND_DEFAULTS[k] for k in getattr(probe, "kinds", ()) if k in KIND_DEFAULTS), None)
    if not name:
        raise LensftError(f"probe {probe.name!r} has no built-in prompt set; pass --prompts FILE "
                          f"(a prompt set of kind {', '.join(probe.kinds)})")
    return Path(str(resources.files("lensft.probes") / "data" / name))


def load_probe_prompts(probe: Any, path: Optional[Path]) -> PromptSet:
    """Read --prompts with the probe's own loader when it has one, else as a lensft prompt set."""
    p = path if path is not None else default_prompt_path(probe)
    loader = getattr(probe, "load_prompts", None)
    ps = loader(p) if loader is not None else read_prompt_set(p)
    kinds = getattr(probe, "kinds", ())
    if kinds and ps.kind not in kinds:
        raise LensftError(f"probe {probe.name!r} takes prompt sets of kind {', '.join(kinds)}; {p} is {ps.kind!r}")
    return ps


def summary_table(result: ProbeResult) -> Table:
    """A two-column table of the result's summary scalars."""
    ps = result.prompt_set
    title = f"{result.probe} on {result.model.label}" + (f" ({ps.name} v{ps.version}, {ps.n_items} items)" if ps else "")
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in result.summary.items():
        t.add_row(k, "-" if v is None else f"{v:.4g}")
    return t


def probe(
    name: Annotated[Optional[str], typer.Argument(help="registered probe name (see --list)")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="checkpoint directory (the host of a pair probe)")] = None,
    donor: Annotated[Optional[Path], typer.Option("--donor", help="donor checkpoint of a pair probe (e.g. patching)")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="prompt-set file (default: the built-in set)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="result JSON path (default: NAME.json)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="probe setting key=value (repeatable)")] = None,
    list_: Annotated[bool, flag("--list", "list the registered probes and exit")] = False,
    force: ForceOpt = False,
    attn: Annotated[Optional[str], typer.Option("--attn", help="attention implementation (eager, sdpa ...)")] = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    batch_size: BatchSizeOpt = None,
) -> None:
    from lensft.probes.registry import get_probe

    if list_:
        console.print(_probe_table())
        return
    if not name:
        raise LensftError("name a probe (lensft probe NAME --model DIR) or pass --list")
    pr = get_probe(name)
    if model is None:
        raise LensftError("--model DIR is required")
    settings = with_batch_size(parse_settings(pr.Settings, list(set_ or [])), batch_size, name)
    run_and_save(pr, model, donor, prompts, settings, out if out is not None else Path(f"{name}.json"), force,
                 device, dtype, attn)


def _probe_table() -> Table:
    from lensft.probes.registry import get_probe, is_pair_probe, list_probes

    t = Table(title="probes", header_style="bold")
    for c in ("name", "takes", "description"):
        t.add_column(c)
    for n, d in list_probes().items():
        pr = get_probe(n)
        t.add_row(n, ("--model (host) and --donor" if is_pair_probe(pr) else "--model") + f"; {', '.join(pr.kinds)} sets", d)
    return t


def run_and_save(pr: Any, model: Path, donor: Optional[Path], prompts: Optional[Path], settings: BaseModel,
                 out: Path, force: bool, device: str = "cpu", dtype: Optional[str] = None,
                 attn: Optional[str] = None) -> ProbeResult:
    """Load the model(s), run the probe (a pair probe on host ``model`` and ``donor``), save, print."""
    from lensft.checkpoints.outputs import refuse_inside_inputs
    from lensft.handle import load_model
    from lensft.probes.registry import is_pair_probe

    pair = is_pair_probe(pr)
    if pair != (donor is not None):
        raise LensftError(f"probe {pr.name!r} " + ("is a pair probe: give --donor DIR" if pair else "takes no --donor"))
    refuse_inside_inputs(out, {"model": model, **({"donor": donor} if donor is not None else {})})
    if out.exists() and not force:
        raise OutputExists(f"{out} exists; pass --force to replace it or choose another --out")
    ps = load_probe_prompts(pr, prompts)
    opts = load_options(device, dtype, tokens_per_batch(ps, settings))
    with memory_errors_as_flags():  # a donor's check sees the memory the host already holds
        host = load_model(model, opts, attn_implementation=attn)
        other = load_model(donor, opts) if pair else None  # type: ignore[arg-type]
    result = pr.run_pair(host, other, ps, settings) if pair else pr.run(host, ps, settings)
    save_result(result, out)
    console.print(summary_table(result))
    console.print(f"saved {out}")
    return result


PATCH_HELP = """Patch one checkpoint's MHA and/or FFN outputs into another, layer by layer, and save
the change in a metric (default: the knowledge-preference margin on conflict items). The same as
`lensft probe patching --model HOST --donor DONOR`.

Example: where does the long model's attention move the short model towards the context?

  lensft patch --host ckpt/short --donor ckpt/long --component mha --out patch-mha.json
"""


def patch(
    host: Annotated[Path, typer.Option("--host", help="checkpoint that is run and patched")],
    donor: Annotated[Path, typer.Option("--donor", help="checkpoint whose block outputs are patched in")],
    component: Annotated[str, typer.Option("--component", help="mha, ffn or both")] = "both",
    layers: Annotated[Optional[str], typer.Option("--layers", help="layers a:b to patch (default: all)")] = None,
    metric: Annotated[str, typer.Option("--metric", help="auto, margin (conflict sets) or answer_logprob (task sets)")] = "auto",
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="conflict or task prompt set (default: the built-in conflicts)")] = None,
    out: Annotated[Path, typer.Option("--out", help="result JSON path")] = Path("patching.json"),
    force: ForceOpt = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="prompts per forward pass")] = 8,
) -> None:
    from lensft.graft import LayerRange
    from lensft.probes.registry import get_probe

    pr = get_probe("patching")
    for name, value, allowed in (("--component", component, ("mha", "ffn", "both")),
                                 ("--metric", metric, ("auto", "margin", "answer_logprob"))):
        if value not in allowed:
            raise LensftError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    pairs = [f"component={component}", f"metric={metric}", f"batch_size={batch_size}"]
    if layers:
        rng = LayerRange.parse(layers)
        pairs.append(f"layers={list(range(rng.start, rng.stop))}")
    run_and_save(pr, host, donor, prompts, parse_settings(pr.Settings, pairs), out, force, device, dtype)


def register(app: typer.Typer) -> None:
    app.command("probe", help=PROBE_HELP)(probe)
    app.command("patch", help=PATCH_HELP, no_args_is_help=True)(patch)
