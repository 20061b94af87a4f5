"""Faults planted in Ray workers for tests/test_ray.py.

The test session's Ray instance runs :func:`install` in every worker process (Ray's
``worker_process_setup_hook``). It wraps the probe runner so that a unit named in the fault plan
(``plan.json`` in the directory ``$LENSFT_TEST_RAY_FAULTS``, ``{"step/model label": fault}``)
fails: ``always`` raises on every attempt, ``once`` raises on the first attempt only, ``crash``
kills the worker process on the first attempt, ``input`` raises a LensftError. Every attempt at a
planted unit appends a line to ``<unit>.attempts``, so tests count attempts across processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PLAN_ENV = "LENSFT_TEST_RAY_FAULTS"
FAULTS = ("always", "once", "crash", "input")


def unit_file(root: Path, unit: str, suffix: str) -> Path:
    """``root/<unit with / and spaces made safe><suffix>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in unit)
    return root / f"{safe}{suffix}"


def plant(root: Path, faults: dict[str, str]) -> None:
    """Write the fault plan (and forget earlier attempts)."""
    for f in root.glob("*.attempts"):
        f.unlink()
    for f in root.glob("*.first"):
        f.unlink()
    assert set(faults.values()) <= set(FAULTS), faults
    (root / "plan.json").write_text(json.dumps(faults))


def clear(root: Path) -> None:
    """Remove the fault plan (the attempt counts stay)."""
    (root / "plan.json").unlink(missing_ok=True)


def attempts(root: Path, unit: str) -> int:
    p = unit_file(root, unit, ".attempts")
    return len(p.read_text().splitlines()) if p.exists() else 0


def _first_attempt(root: Path, unit: str) -> bool:
    try:
        os.close(os.open(unit_file(root, unit, ".first"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _fault(plan: Any) -> None:
    root = Path(os.environ.get(PLAN_ENV, "/nonexistent"))
    if not (root / "plan.json").is_file():
        return
    unit = f"{plan.step}/{plan.model.label}"
    fault = json.loads((root / "plan.json").read_text()).get(unit)
    if fault is None:
        return
    with open(unit_file(root, unit, ".attempts"), "a") as f:
        f.write(f"{os.getpid()}\n")
    if fault == "always" or (fault == "once" and _first_attempt(root, unit)):
        raise RuntimeError(f"planted fault in {unit}")
    if fault == "crash" and _first_attempt(root, unit):
        os._exit(1)
    if fault == "input":
        from lensft.errors import LensftError

        raise LensftError(f"planted bad input in {unit}")


def _wrap_run_probe() -> None:
    from lensft.study import execute

    if getattr(execute.run_probe, "planted", False):
        return
    real = execute.run_probe

    def faulty(plan: Any, prompts: Any, models: Any) -> Any:
        _fault(plan)
        return real(plan, prompts, models)

    faulty.planted = True  # type: ignore[attr-defined]
    execute.run_probe = faulty


def install() -> None:
    """Ray worker setup hook: run every unit's probe through :func:`_fault` first.

    The probes (and torch) are imported when the worker runs its first unit, not here, so workers
    that run no unit (the actor that counts running units) start as fast as without the hook.
    """
    from lensft.study import ray_executor

    real = ray_executor.run_unit

    def run_unit(*args: Any, **kwargs: Any) -> Any:
        _wrap_run_probe()
        return real(*args, **kwargs)

    ray_executor.run_unit = run_unit
