"""The package's import graph has no cycle: lazy (function-level) and type-only imports
included.

A cycle hidden behind a lazy import, or behind ``if TYPE_CHECKING:``, still ties two
modules together: neither can be read, type-checked, tested or moved without the other.
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


def import_graph() -> dict[str, set[str]]:
    """Module -> the logitlens modules it imports (explicitly, at any level, and under
    ``if TYPE_CHECKING:`` too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
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


def test_the_graph_sees_type_checking_imports():
    """``lenses.base`` names ``LensModel`` only for type checkers; that is an edge too."""
    graph = import_graph()
    assert "logitlens.loading" in graph["logitlens.lenses.base"]
    assert "logitlens.remote" in graph["logitlens.loading"]  # loading opens NDIF models
    assert "logitlens.loading" not in graph["logitlens.remote"]
    assert "logitlens.loading" not in graph["logitlens.remote.weights"]


def test_analysis_and_generation_leave_where_they_run_to_the_model():
    """Local, ``remote="local"`` or NDIF is ``LensModel``'s choice, not theirs."""
    graph = import_graph()
    for module in ("logitlens.analysis", "logitlens.generation"):
        assert not {name for name in graph[module] if name.startswith("logitlens.remote")}
