"""The package's import graph has no cycle, lazy (function-level) imports included.

A cycle hidden behind a lazy import still ties two modules together: neither can be
read, tested or moved without the other. Only ``if TYPE_CHECKING:`` imports, which never
run, are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import logitlens

PACKAGE = Path(logitlens.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["logitlens", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Module -> the logitlens modules it imports (explicitly, at any level)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:  # "from . import plots" names a module
                    edges.add(
                        f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                    )
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20 and graph["logitlens.analysis"]  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_lazy_cycle():
    """The integrator's old cycle: lenses.get_lens imported tuned lazily, tuned imports lenses."""
    graph = {"lenses": {"tuned"}, "tuned": {"lenses", "files"}, "files": set()}
    assert find_cycle(graph) == ["lenses", "tuned", "lenses"]
    graph["tuned"].discard("lenses")
    assert find_cycle(graph) is None


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "logitlens.analysis" in graph["logitlens.runs"]  # module level, relative
    assert "logitlens.cli.analysis_commands" in graph["logitlens.cli"]  # from . import x
    assert "logitlens.lenses.tuned" in graph["logitlens.lenses"]
