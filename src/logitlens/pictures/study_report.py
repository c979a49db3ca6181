"""A self-contained HTML report of a study: its summary table, tests and plots.

Like :mod:`.report`, one file with nothing fetched: the summary is embedded as JSON and
drawn into sortable tables by inline JavaScript, and the plots are inline SVG. The page,
its CSS and its JavaScript are package data (``assets/study_report.*``).

Example:
    >>> write_study_report(summarize_study(StudyResult.load("runs/smollm2")), "study.html")
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from matplotlib import pyplot as plt

from ..paths import REPORT_SUFFIXES, check_document_output
from ..storage import write_atomic
from ..studies.stats import StudySummary
from .plots import plot_decision_depths, plot_study_trajectories
from .report import asset, script_json


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype


def render_study_report(summary: StudySummary, title: str | None = None) -> str:
    """The report page as one HTML string (data, CSS, JavaScript and SVG inline)."""
    title = title or f"logitlens study: {summary.model_name}"
    figures = [
        ("Mean trajectories per group", plot_study_trajectories(summary)),
        ("Decision depth per group", plot_decision_depths(summary)),
    ]
    pictures = "\n".join(
        f"<figure><figcaption>{html.escape(caption)}</figcaption>{_svg(figure)}</figure>"
        for caption, figure in figures
    )
    return (
        asset("study_report.html")
        .replace("__TITLE__", html.escape(title))
        .replace("__CSS__", asset("study_report.css"))
        .replace("__SCRIPT__", asset("study_report.js"))
        .replace("__FIGURES__", pictures)
        .replace("__DATA__", script_json(summary.to_dict()))
    )


def write_study_report(
    summary: StudySummary, path: str | Path, title: str | None = None, *, force: bool = False
) -> Path:
    """Write the study report to ``path`` (.html) and return the path written.

    An existing file that logitlens did not write is never replaced unless ``force``.
    """
    path = check_document_output(path, REPORT_SUFFIXES, "report", force=force)
    return write_atomic(path, render_study_report(summary, title))
