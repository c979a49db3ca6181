"""Code that runs inside the trace must be shippable to NDIF by value.

logitlens is not installed on NDIF's servers: ``nnsight.register(logitlens)`` ships
the functions the trace calls, with their module globals. An import executed at call
time (``from .x import y`` inside a function) would look for logitlens on the server
and fail there, while every local test, ``remote="local"`` included, still passes.
This test keeps such imports out of the trace path.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from logitlens import analysis, architectures, lenses, metrics, residuals

TRACE_PATH = [
    analysis.lens_reductions,
    analysis.reduce_residuals,
    residuals.read_positions,
    residuals.chunk_plan,
    residuals.layer_output,
    architectures.resolve,
    lenses.Unembedding,
    lenses.LogitLens,
    lenses.RawLens,
    metrics.entropy,
    metrics.kl_divergence,
    metrics.token_rank,
    metrics._count_above,
    lenses.TunedLens.translate,
    lenses.TunedLens.project,
]


@pytest.mark.parametrize("code", TRACE_PATH, ids=lambda code: code.__qualname__)
def test_no_import_runs_inside_the_trace(code):
    tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports, f"{code.__qualname__} imports at call time: {ast.unparse(imports[0])}"


def test_the_check_catches_a_call_time_import():
    def shipped(x):
        from logitlens.metrics import entropy

        return entropy(x)

    tree = ast.parse(textwrap.dedent(inspect.getsource(shipped)))
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))
