"""Data flows one way: every lensft import points down the layer order, and no module cycles.

The order is CONTRIBUTING.md's architecture map. Imports under ``if TYPE_CHECKING:`` are
annotations only and are not counted; function-level (lazy) imports are counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lensft

#: lowest first; a module may import from its own layer or a lower one
LAYERS = ["errors", "faults", "atomic", "locks", "hashing", "provenance", "variants", "results", "prompts", "families", "checkpoints", "devices",
          "views", "handle", "graft", "pico", "probes", "evaluation", "organism", "study", "report", "cli"]
ROOT = Path(lensft.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """lensft modules imported by a file (outside ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    out: set[str] = set()
    me = _module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lensft.")}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if mod.startswith("lensft."):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        if name == "lensft":  # the lazy public API re-exports everything by design
            continue
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "lensft"


def test_every_package_has_a_layer():
    unknown = {_layer(m) for m in _graph()} - set(LAYERS) - {"lensft", "__main__"}
    assert not unknown, f"add these packages to LAYERS (and CONTRIBUTING.md's map): {sorted(unknown)}"


def test_imports_point_down_the_layers():
    rank = {n: i for i, n in enumerate(LAYERS)}
    bad = sorted(f"{m} imports {d}" for m, deps in _graph().items() for d in deps
                 if _layer(m) in rank and _layer(d) in rank and rank[_layer(d)] > rank[_layer(m)])
    assert not bad, "imports against the flow:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _graph()
    for m in graph:  # modules imported as packages also import their __init__
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for d in sorted(graph.get(node, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]) if d in stack else f"{node} -> {d}")
            elif d not in state:
                visit(d, stack + [d])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_planted_violation(tmp_path):
    """The walker must find an upward import and ignore TYPE_CHECKING ones (not a vacuous pass)."""
    f = ROOT / "checkpoints" / "_planted_probe_for_test.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lensft.report import x\n"
                 "def g():\n    from lensft.study import runner\n")
    try:
        deps = _imports(f)
        assert "lensft.study" in deps and not any(d.startswith("lensft.report") for d in deps)
    finally:
        f.unlink()
