"""Code shape: small functions and small modules in ``lensft/`` (CONTRIBUTING.md, Design rules).

A function may be at most ``MAX_FUNCTION_LINES`` lines, counted from its ``def`` line to its last
line (docstring included, decorators not); a module at most ``MAX_MODULE_LINES`` lines. The
exceptions are listed here with their reason, so a new one is a visible decision.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lensft"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400

#: "path:qualified name" -> why it may be longer (training loops only)
LONG_FUNCTIONS = {
    "organism/training.py:train": "a training loop (54 lines today; allowed to grow with its checkpoints and logging)",
}
#: path -> why the module may be longer
LONG_MODULES: dict[str, str] = {}


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.AST]]:
    out = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((prefix + node.name, node))
            out += _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            out += _functions(node, prefix + node.name + ".")
    return out


def function_lengths(path: Path) -> dict[str, int]:
    """``{qualified name: lines from def to end}`` of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {name: node.end_lineno - node.lineno + 1 for name, node in _functions(tree)}  # type: ignore[attr-defined]


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "data" not in p.relative_to(ROOT).parts)


def test_the_measure_counts_a_def_with_its_docstring(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text('@decorator\ndef f(x):\n    """Doc\n    string."""\n    return x\n\n\nclass C:\n'
                 '    def g(self):\n        def inner():\n            pass\n        return 1\n')
    assert function_lengths(f) == {"f": 4, "C.g": 4, "C.g.inner": 2}


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for p in _modules():
        rel = p.relative_to(ROOT).as_posix()
        for name, n in function_lengths(p).items():
            if n > MAX_FUNCTION_LINES and f"{rel}:{name}" not in LONG_FUNCTIONS:
                long.append(f"{rel}:{name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): " + ", ".join(long)


def test_no_module_is_longer_than_the_limit() -> None:
    long = [f"{p.relative_to(ROOT).as_posix()} ({n} lines)" for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
            and p.relative_to(ROOT).as_posix() not in LONG_MODULES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by what they hold): " + ", ".join(long)


@pytest.mark.parametrize("entry", sorted(LONG_FUNCTIONS) + sorted(LONG_MODULES))
def test_every_exception_is_still_needed(entry: str) -> None:
    """An exception whose function or module is gone (or, for a module, has become short) is removed
    from the list; a training loop stays allowed while it is short."""
    rel, _, name = entry.partition(":")
    path = ROOT / rel
    assert path.is_file(), f"{rel} does not exist: drop it from the exceptions"
    if name:
        assert name in function_lengths(path), f"{entry} does not exist: drop it from LONG_FUNCTIONS"
    else:
        assert len(path.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES, f"{rel}: drop it from LONG_MODULES"
