"""A self-contained interactive HTML report of lens results.

One file, no network: the data is embedded as JSON and the JavaScript and CSS are
inlined. The page shows the logit-lens grid (layers x positions, top-1 token per
cell, coloured by a chosen metric) and the trajectories of the targets; hovering a
cell shows its top-k tokens, clicking pins it and follows that position in the
trajectory chart. Several prompts (and lenses) are selectable in one file. A result
from ``analyze(..., attribution=True)`` adds the direct logit attribution: each layer's
attention and MLP part of the target's logit (and of target minus alternative) as bars.

Example:
    >>> result = analyze(model, [pun, literal], targets=" current", positions="all",
    ...                  metrics=["topk", "entropy", "kl", "final_rank"])
    >>> write_report(result, "report.html")
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import jsontext
from ..errors import InputError
from ..metrics import PICTURES
from ..paths import REPORT_SUFFIXES, check_document_output
from ..results import LensResult
from ..storage import write_atomic

if TYPE_CHECKING:
    from ..attribution import Attribution

_TOP1 = "top_probs"
"""The array the page colours by itself (the top-1 probability, drawn from the top-k)."""
_PICTURE_KEYS = ("label", "scale", "high_is_good")


def asset(name: str) -> str:
    """A file of a report page (``report.html``, ``study_report.css``, ...): package data."""
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _rounded(values: np.ndarray, digits: int = 4) -> Any:
    """Nested lists of floats with ``digits`` significant digits (NaN as null): small JSON."""
    if values.ndim == 0:
        value = float(values)
        return None if math.isnan(value) else float(f"{value:.{digits}g}")
    return [_rounded(row, digits) for row in values]


def _entry(result: LensResult, prompt: int, label: str) -> dict[str, Any]:
    """One selectable prompt: its analysed columns and everything shown about them."""
    columns = np.flatnonzero(result.positions[prompt] >= 0)
    positions = [int(p) for p in result.positions[prompt, columns]]
    top_ids = result.require("top_ids")[prompt][:, columns]
    top_probs = result.require("top_probs")[prompt][:, columns]
    entry: dict[str, Any] = {
        "label": label,
        "model": result.model_name,
        "lens": result.lens,
        "prompt": result.prompts[prompt],
        "layers": result.layer_labels,
        "positions": positions,
        "tokens": [result.tokens[prompt][p] for p in positions],
        "top_ids": top_ids.tolist(),
        "top_probs": _rounded(top_probs),
        "model_top": None
        if result.model_top_ids is None
        else result.model_top_ids[prompt, columns].tolist(),
        "targets": result.target_tokens[prompt] if result.target_prob is not None else [],
        "target_prob": None
        if result.target_prob is None
        else _rounded(result.target_prob[prompt][:, columns]),
        "metrics": {},
    }
    for name, picture in PICTURES.items():
        values = getattr(result, picture.array)
        if values is not None and picture.array != _TOP1:
            values = values[prompt][:, columns].astype(float)
            if values.ndim == 3:  # per target: the first one, as in plots.plot_grid
                values = values[..., 0]
            entry["metrics"][name] = _rounded(values)
    return entry


def attribution_data(attribution: Attribution) -> list[dict[str, Any]]:
    """Per prompt, at its last attributed position: the parts of the first target's logit
    and (with an alternative) of target minus alternative, as the page draws them."""
    entries = []
    for prompt in range(len(attribution.prompts)):
        column = int(np.flatnonzero(attribution.positions[prompt] >= 0)[-1])
        measures = {}
        for name in ("target", "difference") if attribution.difference is not None else ["target"]:
            parts = attribution.measure(name)
            measures[name] = {
                "embed": float(parts.embed[prompt, column, 0]),
                "attention": parts.attention[prompt, :, column, 0].astype(float).tolist(),
                "mlp": parts.mlp[prompt, :, column, 0].astype(float).tolist(),
                "constant": float(parts.constant[prompt, column, 0]),
                "logit": float(parts.logit[prompt, column, 0]),
            }
        entries.append(
            {
                "position": int(attribution.positions[prompt, column]),
                "target": attribution.target_tokens[prompt][0],
                "alternative": attribution.alternative_tokens[prompt][0]
                if attribution.difference is not None
                else None,
                "measures": measures,
            }
        )
    return entries


def report_data(results: LensResult | Sequence[LensResult]) -> dict[str, Any]:
    """The JSON the page embeds: one entry per prompt of each result, plus token texts;
    ``attribution`` (one item per entry, null for a result without one) when a result
    carries its direct logit attribution."""
    items = [results] if isinstance(results, LensResult) else list(results)
    if not items:
        raise InputError("Nothing to report: give at least one result.")
    several_lenses = len({r.lens for r in items}) > 1
    entries, vocab, attribution = [], {}, []
    for result in items:
        result.require("top_ids")
        if result.attribution is None:
            attribution += [None] * len(result.prompts)
        else:
            attribution += attribution_data(result.attribution)
        for prompt, text in enumerate(result.prompts):
            label = text if len(text) <= 70 else text[:67] + "..."
            if several_lenses:
                label = f"{label} [{result.lens} lens]"
            entries.append(_entry(result, prompt, label))
        vocab.update({str(key): value for key, value in result.vocab.items()})
    shown = {name for name, picture in PICTURES.items() if picture.array == _TOP1}
    shown |= {name for entry in entries for name in entry["metrics"]}
    pictures = {
        name: {key: value for key, value in asdict(picture).items() if key in _PICTURE_KEYS}
        for name, picture in PICTURES.items()
        if name in shown
    }
    data = {"entries": entries, "vocab": vocab, "pictures": pictures}
    if any(item is not None for item in attribution):
        data["attribution"] = attribution
    return data


def render_report(
    results: LensResult | Sequence[LensResult], title: str = "logitlens report"
) -> str:
    """The report page as one HTML string (data, CSS and JavaScript inline)."""
    return render_report_data(report_data(results), title)


def render_report_data(data: dict[str, Any], title: str = "logitlens report") -> str:
    """The report page of data from :func:`report_data` (the explorer adds byte labels)."""
    return (
        asset("report.html")
        .replace("__VIEW__", asset("lens_view.html"))
        .replace("__TITLE__", html.escape(title))
        .replace("__CSS__", asset("report.css"))
        .replace("__SCRIPT__", asset("report.js"))
        .replace("__DATA__", script_json(data))
    )


def script_json(data: Any) -> str:
    """JSON to embed in a ``<script>`` element: ``<`` escaped so no text can close it."""
    return jsontext.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def write_report(
    results: LensResult | Sequence[LensResult],
    path: str | Path,
    title: str = "logitlens report",
    *,
    force: bool = False,
) -> Path:
    """Write the report to ``path`` (.html) and return the path written.

    An existing file that logitlens did not write is never replaced unless ``force``.
    """
    path = check_document_output(path, REPORT_SUFFIXES, "report", force=force)
    return write_atomic(path, render_report(results, title))


__all__ = [
    "attribution_data",
    "render_report",
    "render_report_data",
    "report_data",
    "script_json",
    "write_report",
]
