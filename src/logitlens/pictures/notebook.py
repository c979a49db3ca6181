"""Interactive views inline in notebooks: Jupyter, JupyterLab, VS Code and Colab.

A result shows as its self-contained page (the same page as its HTML report) inside a
sandboxed ``<iframe srcdoc=...>``: scripts run, nothing is fetched, and several views in
one notebook cannot touch each other's elements or styles. ``LensResult``,
``GenerationResult``, ``StudySummary``, ``Scoreboard`` and ``LensEvaluation`` use it as
their ``_repr_html_``; :func:`show` displays one explicitly.

Example:
    >>> result = logitlens.analyze(model, [pun, literal], targets=" current", positions="all")
    >>> logitlens.show(result)        # or leave ``result`` as a cell's last line
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from .report import asset, render_report, script_json

HEIGHT = 720
"""Pixels of the frame a view gets in the notebook (the page scrolls inside)."""


def view_page(item: Any) -> str:
    """The self-contained page of a result (or a list of lens results)."""
    from ..evaluation import LensEvaluation, Scoreboard
    from ..generation import GenerationResult
    from ..results import LensResult
    from ..studies.stats import StudySummary

    if isinstance(item, LensResult) or (
        isinstance(item, Sequence) and item and all(isinstance(entry, LensResult) for entry in item)
    ):
        return render_report(item)
    if isinstance(item, GenerationResult):
        return render_report(item.lens_result, f"logitlens generation: {item.prompt[:60]}")
    if isinstance(item, StudySummary):
        from .study_report import render_study_report

        return render_study_report(item)
    if isinstance(item, LensEvaluation):
        item = Scoreboard(item)
    if isinstance(item, Scoreboard):
        return render_scoreboard(item)
    raise InputError(
        f"show() draws a LensResult, GenerationResult, StudySummary or Scoreboard, "
        f"not {type(item).__name__}."
    )


def render_scoreboard(board: Any, title: str | None = None) -> str:
    """The lens scoreboard's page: a sortable summary and each metric by layer."""
    title = title or f"logitlens lens scoreboard: {board.evaluation.model_name}"
    return (
        asset("scoreboard.html")
        .replace("__TITLE__", html.escape(title))
        .replace("__CSS__", asset("scoreboard.css"))
        .replace("__SCRIPT__", asset("scoreboard.js"))
        .replace("__DATA__", script_json(_finite(board.to_dict())))
    )


def _finite(value: Any) -> Any:
    """NaN and infinities as ``null``: JSON.parse knows neither."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def view_html(item: Any, height: int = HEIGHT) -> str:
    """The view as notebook output: its page in a sandboxed frame (scripts, no network)."""
    page = view_page(item)
    return (
        f'<div class="logitlens-view"><iframe srcdoc="{html.escape(page, quote=True)}" '
        f'sandbox="allow-scripts allow-downloads" '
        f'style="width: 100%; height: {int(height)}px; border: 1px solid #ddd;"></iframe></div>'
    )


def repr_html(item: Any) -> str | None:
    """``_repr_html_`` of the results: the view, or ``None`` (the plain repr) when the
    result cannot be drawn, e.g. a LensResult computed without ``topk``."""
    try:
        return view_html(item)
    except InputError:
        return None


def show(item: Any, height: int = HEIGHT) -> None:
    """Display a result's interactive view in the notebook (Jupyter, VS Code, Colab).

    ``item``: a LensResult (or a list of them), GenerationResult, StudySummary,
    Scoreboard or LensEvaluation.
    """
    try:
        from IPython.display import HTML, display
    except ImportError:
        raise InputError(
            "show() needs a notebook (IPython); outside one, write the report instead: "
            "logitlens.pictures.report.write_report(result, 'report.html')."
        ) from None
    display(HTML(view_html(item, height)))


__all__ = ["render_scoreboard", "repr_html", "show", "view_html", "view_page"]
