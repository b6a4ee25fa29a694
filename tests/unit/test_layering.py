"""The package's layering, read from the source: no import circle among dynaflow's modules
(imports under TYPE_CHECKING included), and nothing below ``world.py`` imports it — only the
package's face, the CLI, the demo, the console and the testing helpers stand above it."""

from __future__ import annotations

import ast
from pathlib import Path

import dynaflow

ROOT = Path(dynaflow.__file__).parent
#: the modules allowed to import dynaflow.world (they stand above it)
ABOVE_WORLD = ("dynaflow", "dynaflow.cli", "dynaflow.demo", "dynaflow.console", "dynaflow.testing")


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the dynaflow modules it imports (every import statement, wherever it is)."""
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in mods:
                        graph[name].add(target)
                    elif base in mods:
                        graph[name].add(base)
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in mods)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 100  # the whole package was read
    assert circles(graph) == []


def test_the_circle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_nothing_below_world_imports_it() -> None:
    graph = import_graph()
    importers = {name for name, imported in graph.items() if "dynaflow.world" in imported}
    below = {
        name
        for name in importers
        if not (
            name == "dynaflow"
            or any(name.startswith(top + "_") or name.startswith(top + ".") for top in ABOVE_WORLD)
            or name in ABOVE_WORLD
        )
    }
    assert importers  # the face and the CLI do import it
    assert below == set()
