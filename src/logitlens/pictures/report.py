"""A self-contained interactive HTML report of lens results.

One file, no network: the data is embedded as JSON and the JavaScript and CSS are
inlined. The page shows the logit-lens grid (layers x positions, top-1 token per
cell, coloured by a chosen metric) and the trajectories of the targets; hovering a
cell shows its top-k tokens, clicking pins it and follows that position in the
trajectory chart. Several prompts (and lenses) are selectable in one file.

Example:
    >>> result = analyze(model, [pun, literal], targets=" current", positions="all",
    ...                  metrics=["topk", "entropy", "kl", "final_rank"])
    >>> write_report(result, "report.html")
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..paths import REPORT_SUFFIXES, check_output_path, write_text_atomic
from ..results import LensResult

_METRIC_ARRAYS = ("entropy", "kl", "final_rank")


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
    for name in _METRIC_ARRAYS:
        values = getattr(result, name)
        if values is not None:
            entry["metrics"][name] = _rounded(values[prompt][:, columns].astype(float))
    return entry


def report_data(results: LensResult | Sequence[LensResult]) -> dict[str, Any]:
    """The JSON the page embeds: one entry per prompt of each result, plus token texts."""
    items = [results] if isinstance(results, LensResult) else list(results)
    if not items:
        raise InputError("Nothing to report: give at least one result.")
    several_lenses = len({r.lens for r in items}) > 1
    entries, vocab = [], {}
    for result in items:
        result.require("top_ids")
        for prompt, text in enumerate(result.prompts):
            label = text if len(text) <= 70 else text[:67] + "..."
            if several_lenses:
                label = f"{label} [{result.lens} lens]"
            entries.append(_entry(result, prompt, label))
        vocab.update({str(key): value for key, value in result.vocab.items()})
    return {"entries": entries, "vocab": vocab}


def render_report(
    results: LensResult | Sequence[LensResult], title: str = "logitlens report"
) -> str:
    """The report page as one HTML string (data, CSS and JavaScript inline)."""
    data = json.dumps(report_data(results), ensure_ascii=False, separators=(",", ":"))
    # "<" escaped so that no token text can close the script element.
    data = data.replace("<", "\\u003c")
    return (
        _PAGE.replace("__TITLE__", html.escape(title))
        .replace("__CSS__", _CSS)
        .replace("__SCRIPT__", _SCRIPT)
        .replace("__DATA__", data)
    )


def write_report(
    results: LensResult | Sequence[LensResult],
    path: str | Path,
    title: str = "logitlens report",
) -> Path:
    """Write the report to ``path`` (.html) and return the path written."""
    path = check_output_path(path, REPORT_SUFFIXES)
    return write_text_atomic(path, render_report(results, title))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>__CSS__</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <label>Prompt <select id="prompt-select"></select></label>
  <label>Colour by <select id="metric-select"></select></label>
  <p id="meta"></p>
</header>
<main>
  <section id="grid-section">
    <div id="grid-wrap"><table id="grid"></table></div>
    <p class="hint">Rows: layers (last at the top). Columns: input tokens; the cell is
    the lens's top-1 prediction of the next token. Bold: already the model's own
    next token. Hover a cell for its top-k; click to pin it.</p>
  </section>
  <aside>
    <div id="detail"><p class="hint">Hover over a cell.</p></div>
    <h2 id="trajectory-title">Trajectory</h2>
    <svg id="trajectory" viewBox="0 0 420 240" role="img"></svg>
  </aside>
</main>
<script type="application/json" id="report-data">__DATA__</script>
<script>__SCRIPT__</script>
</body>
</html>
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 12px; color: #222; }
header h1 { font-size: 1.2em; margin: 0 0 6px; }
header label { margin-right: 16px; }
#meta { color: #555; margin: 6px 0; font-size: 0.9em; }
main { display: flex; gap: 16px; align-items: flex-start; }
#grid-section { flex: 1 1 auto; min-width: 0; }
#grid-wrap { overflow: auto; max-height: 80vh; border: 1px solid #ccc; }
table#grid { border-collapse: collapse; font-size: 11px; }
#grid th, #grid td { border: 1px solid #fff; padding: 2px 4px; white-space: pre;
  max-width: 7em; overflow: hidden; text-overflow: ellipsis; }
#grid thead th { position: sticky; top: 0; background: #f4f4f4; z-index: 1; }
#grid thead tr.next th { top: 18px; color: #b22; }
#grid th.layer { position: sticky; left: 0; background: #f4f4f4; text-align: right; }
#grid td.cell { cursor: pointer; text-align: center; }
#grid td.hit { font-weight: bold; }
#grid td.pinned { outline: 2px solid #e33; outline-offset: -2px; }
aside { flex: 0 0 440px; }
#detail { min-height: 220px; border: 1px solid #ccc; padding: 6px 10px; font-size: 13px; }
#detail table { border-collapse: collapse; width: 100%; }
#detail td { padding: 1px 4px; white-space: pre; }
#detail td.bar span { display: inline-block; height: 9px; background: #4a7fc1; }
.hint { color: #777; font-size: 12px; }
#trajectory { width: 420px; height: 240px; border: 1px solid #ccc; }
h2 { font-size: 1em; margin: 10px 0 4px; }
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const METRIC_NAMES = {prob: "probability of the top-1 token", final_rank:
  "rank of the model's final prediction", entropy: "entropy (nats)",
  kl: "KL to the final layer (nats)"};
const LINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
const state = {entry: 0, metric: "prob", pinned: null};

function tokenText(id) {
  const text = DATA.vocab[String(id)];
  return text === undefined ? "<" + id + ">" : text;
}
function shown(text) {
  return text.replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
}
function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}
function entry() { return DATA.entries[state.entry]; }

function metricValues(e, metric) {
  if (metric === "prob") return e.top_probs.map(row => row.map(cell => cell[0]));
  return e.metrics[metric];
}
function colourScale(values, metric) {
  let max = 0;
  for (const row of values) for (const v of row) if (v !== null && v > max) max = v;
  if (metric === "prob") max = 1;
  const scale = v => {
    if (v === null) return 0;
    if (metric === "final_rank") return Math.log(v) / Math.log(Math.max(2, max));
    return max > 0 ? v / max : 0;
  };
  // Good (high probability, low rank, entropy or KL) is dark blue.
  const dark = metric === "prob" ? (v => scale(v)) : (v => 1 - scale(v));
  return v => {
    const t = Math.min(1, Math.max(0, dark(v)));
    const r = Math.round(247 - t * (247 - 8)), g = Math.round(251 - t * (251 - 48)),
      b = Math.round(255 - t * (255 - 107));
    return {background: `rgb(${r},${g},${b})`, color: t > 0.55 ? "#fff" : "#000"};
  };
}

function fillSelectors() {
  const promptSelect = document.getElementById("prompt-select");
  DATA.entries.forEach((e, i) => promptSelect.appendChild(el("option", {value: i}, e.label)));
  promptSelect.addEventListener("change", () => {
    state.entry = Number(promptSelect.value);
    state.pinned = null;
    render();
  });
  document.getElementById("metric-select").addEventListener("change", event => {
    state.metric = event.target.value;
    renderGrid();
  });
}

function fillMetricSelect() {
  const select = document.getElementById("metric-select");
  const available = ["prob", ...Object.keys(entry().metrics)];
  if (!available.includes(state.metric)) state.metric = "prob";
  select.replaceChildren(...available.map(m => el("option", {value: m}, METRIC_NAMES[m])));
  select.value = state.metric;
}

function renderGrid() {
  const e = entry();
  const values = metricValues(e, state.metric);
  const colour = colourScale(values, state.metric);
  const table = document.getElementById("grid");
  const head = el("thead");
  const inputRow = el("tr");
  inputRow.appendChild(el("th", {class: "layer"}, "layer"));
  e.tokens.forEach(t => inputRow.appendChild(el("th", {}, shown(t))));
  head.appendChild(inputRow);
  if (e.model_top) {
    const nextRow = el("tr", {class: "next"});
    nextRow.appendChild(el("th", {class: "layer"}, "next"));
    e.model_top.forEach(id => nextRow.appendChild(el("th", {}, shown(tokenText(id)))));
    head.appendChild(nextRow);
  }
  const body = el("tbody");
  for (let layer = e.layers.length - 1; layer >= 0; layer--) {
    const row = el("tr");
    row.appendChild(el("th", {class: "layer"}, e.layers[layer]));
    e.tokens.forEach((_, col) => {
      const id = e.top_ids[layer][col][0];
      const style = colour(values[layer][col]);
      const hit = e.model_top && e.model_top[col] === id;
      const cell = el("td", {class: "cell" + (hit ? " hit" : ""), "data-layer": layer,
        "data-col": col}, shown(tokenText(id)));
      cell.style.background = style.background;
      cell.style.color = style.color;
      if (state.pinned && state.pinned[0] === layer && state.pinned[1] === col) {
        cell.classList.add("pinned");
      }
      row.appendChild(cell);
    });
    body.appendChild(row);
  }
  table.replaceChildren(head, body);
}

function showDetail(layer, col) {
  const e = entry();
  const box = document.getElementById("detail");
  const title = el("p");
  title.appendChild(el("b", {}, `Layer ${e.layers[layer]}`));
  title.appendChild(document.createTextNode(
    `, position ${e.positions[col]} (input ${JSON.stringify(e.tokens[col])})`));
  const table = el("table", {id: "topk"});
  e.top_ids[layer][col].forEach((id, i) => {
    const p = e.top_probs[layer][col][i];
    const row = el("tr", {class: "topk-row"});
    row.appendChild(el("td", {class: "rank"}, String(i + 1)));
    row.appendChild(el("td", {class: "token"}, JSON.stringify(tokenText(id))));
    row.appendChild(el("td", {class: "prob"}, p === null ? "" : p.toFixed(4)));
    const bar = el("td", {class: "bar"});
    const span = el("span");
    span.style.width = Math.round(120 * (p || 0)) + "px";
    bar.appendChild(span);
    row.appendChild(bar);
    table.appendChild(row);
  });
  const extra = el("p", {class: "hint"});
  const parts = [];
  e.targets.forEach((t, i) =>
    parts.push(`P(${JSON.stringify(t)}) = ${Number(e.target_prob[layer][col][i]).toPrecision(3)}`));
  for (const [name, values] of Object.entries(e.metrics)) {
    parts.push(`${name} = ${Number(values[layer][col]).toPrecision(3)}`);
  }
  extra.textContent = parts.join(" · ");
  box.replaceChildren(title, table, extra);
}

function renderTrajectory() {
  const e = entry();
  const col = state.pinned ? state.pinned[1] : e.tokens.length - 1;
  const svg = document.getElementById("trajectory");
  let series, label;
  if (e.targets.length) {
    series = e.targets.map((t, i) => ({name: `P(${JSON.stringify(t)})`,
      values: e.target_prob.map(row => row[col][i])}));
    label = "probability";
  } else {
    const values = metricValues(e, state.metric);
    series = [{name: METRIC_NAMES[state.metric], values: values.map(row => row[col])}];
    label = METRIC_NAMES[state.metric];
  }
  document.getElementById("trajectory-title").textContent =
    `Trajectory at position ${e.positions[col]} (${JSON.stringify(e.tokens[col])}): ${label}`;
  const [left, right, top, bottom] = [44, 410, 12, 200];
  let max = e.targets.length ? 0.1 : 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max || 1;
  const n = e.layers.length;
  const x = i => left + (n > 1 ? (i * (right - left)) / (n - 1) : 0);
  const y = v => bottom - (v / max) * (bottom - top);
  const nodes = [svgEl("line", {x1: left, y1: bottom, x2: right, y2: bottom, stroke: "#999"}),
    svgEl("line", {x1: left, y1: top, x2: left, y2: bottom, stroke: "#999"})];
  const text = (content, attrs) => {
    const node = svgEl("text", Object.assign({"font-size": 10, fill: "#444"}, attrs));
    node.textContent = content;
    return node;
  };
  nodes.push(text(max.toPrecision(2), {x: 2, y: top + 8}), text("0", {x: 30, y: bottom}));
  const step = Math.max(1, Math.ceil(n / 10));
  for (let i = 0; i < n; i += step) nodes.push(text(e.layers[i], {x: x(i) - 4, y: bottom + 14}));
  nodes.push(text("layer", {x: (left + right) / 2, y: bottom + 30}));
  if (e.targets.length) {
    nodes.push(svgEl("line", {x1: left, x2: right, y1: y(0.1), y2: y(0.1), stroke: "#888",
      "stroke-dasharray": "4 3", class: "threshold"}));
  }
  series.forEach((s, i) => {
    const points = s.values.map((v, j) => v === null ? null : `${x(j)},${y(v)}`)
      .filter(p => p !== null).join(" ");
    const colour = LINE_COLOURS[i % LINE_COLOURS.length];
    nodes.push(svgEl("polyline", {points, fill: "none", stroke: colour, "stroke-width": 2,
      class: "series", "data-name": s.name}));
    nodes.push(text(s.name, {x: left + 8, y: top + 12 + 12 * i, fill: colour}));
  });
  svg.replaceChildren(...nodes);
}

function render() {
  const e = entry();
  document.getElementById("meta").textContent =
    `${e.model} · ${e.lens} lens · ${e.layers.length} layers x ${e.tokens.length} positions` +
    ` · prompt: ${JSON.stringify(e.prompt)}`;
  fillMetricSelect();
  renderGrid();
  renderTrajectory();
  document.getElementById("detail").replaceChildren(
    el("p", {class: "hint"}, "Hover over a cell."));
}

function cellOf(event) {
  const cell = event.target.closest("td.cell");
  return cell ? [Number(cell.dataset.layer), Number(cell.dataset.col), cell] : null;
}

const grid = document.getElementById("grid");
grid.addEventListener("mouseover", event => {
  const hit = cellOf(event);
  if (hit) showDetail(hit[0], hit[1]);
});
grid.addEventListener("mouseleave", () => {
  if (state.pinned) showDetail(state.pinned[0], state.pinned[1]);
});
grid.addEventListener("click", event => {
  const hit = cellOf(event);
  if (!hit) return;
  for (const old of grid.querySelectorAll("td.pinned")) old.classList.remove("pinned");
  hit[2].classList.add("pinned");
  state.pinned = [hit[0], hit[1]];
  showDetail(hit[0], hit[1]);
  renderTrajectory();
});

fillSelectors();
render();
"""


__all__ = ["render_report", "report_data", "write_report"]
