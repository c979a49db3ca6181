"""A self-contained HTML report of a study: its summary table, tests and plots.

Like :mod:`.report`, one file with nothing fetched: the summary is embedded as JSON and
drawn into sortable tables by inline JavaScript, and the plots are inline SVG.

Example:
    >>> write_study_report(summarize_study(StudyResult.load("runs/smollm2")), "study.html")
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from matplotlib import pyplot as plt

from ..errors import InputError
from ..paths import REPORT_SUFFIXES, check_output_path
from ..studies.stats import StudySummary
from .plots import plot_decision_depths, plot_study_trajectories


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype


def render_study_report(summary: StudySummary, title: str | None = None) -> str:
    """The report page as one HTML string (data, CSS, JavaScript and SVG inline)."""
    title = title or f"logitlens study: {summary.model_name}"
    data = json.dumps(summary.to_dict(), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # no text can close the script element
    figures = [
        ("Mean trajectories per group", plot_study_trajectories(summary)),
        ("Decision depth per group", plot_decision_depths(summary)),
    ]
    pictures = "\n".join(
        f"<figure><figcaption>{html.escape(caption)}</figcaption>{_svg(figure)}</figure>"
        for caption, figure in figures
    )
    return (
        _PAGE.replace("__TITLE__", html.escape(title))
        .replace("__CSS__", _CSS)
        .replace("__SCRIPT__", _SCRIPT)
        .replace("__FIGURES__", pictures)
        .replace("__DATA__", data)
    )


def write_study_report(summary: StudySummary, path: str | Path, title: str | None = None) -> Path:
    """Write the study report to ``path`` (.html) and return the path written."""
    path = check_output_path(path, REPORT_SUFFIXES)
    text = render_study_report(summary, title)
    try:
        path.write_text(text, encoding="utf-8")
    except PermissionError:
        raise InputError(f"No permission to write {str(path)!r}.") from None
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>__CSS__</style>
</head>
<body>
<h1>__TITLE__</h1>
<p id="meta"></p>
<h2>Groups</h2>
<p class="hint">Decision depth: first layer where the target is the lens's top-1 token,
divided by the number of layers (1 = last layer). Medians over the items that reach
top-1; brackets: 95% bootstrap intervals. Click a header to sort.</p>
<table id="groups"></table>
<h2>Tests</h2>
<p class="hint">Mann-Whitney U on decision depth, items never top-1 counted as deciding
after the last layer. Cliff's delta &gt; 0: the first group decides later.</p>
<table id="tests"></table>
<p id="kruskal"></p>
<section id="paired-section" hidden>
<h2>Puns against their literal controls</h2>
<p class="hint">Each pun and its literal control (the same target word, linked by
<code>pair</code>) compared pair by pair: Wilcoxon signed-rank, zero differences dropped.
For decision depth an item never top-1 counts as deciding one layer after the last.
Rank-biserial &gt; 0: the pun's value tends to be higher (for depth: it decides later).</p>
<table id="paired"></table>
</section>
__FIGURES__
<script id="study-data" type="application/json">__DATA__</script>
<script>__SCRIPT__</script>
</body>
</html>
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; cursor: pointer; }
td:first-child, th:first-child { text-align: left; }
.hint { color: #666; font-size: 0.9em; max-width: 60em; }
figure { margin: 1.5em 0; }
figcaption { font-weight: bold; margin-bottom: 0.3em; }
figure svg { max-width: 100%; height: auto; }
"""

_SCRIPT = """
"use strict";
const data = JSON.parse(document.getElementById("study-data").textContent);
const fmt = (x, d = 2) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));
const interval = (iv) => (iv.estimate === null ? "-" :
  `${fmt(iv.estimate)} [${fmt(iv.low)}, ${fmt(iv.high)}]`);

function fill(table, header, rows) {
  table.innerHTML = "";
  const head = table.insertRow();
  header.forEach((name, column) => {
    const cell = document.createElement("th");
    cell.textContent = name;
    cell.addEventListener("click", () => sortBy(table, rows, header, column));
    head.appendChild(cell);
  });
  rows.forEach((row) => {
    const tr = table.insertRow();
    row.forEach((value) => { tr.insertCell().textContent = value.text; });
  });
}

function sortBy(table, rows, header, column) {
  const ascending = table.dataset.sorted !== String(column);
  rows.sort((a, b) => (a[column].key < b[column].key ? -1 : a[column].key > b[column].key ? 1 : 0)
    * (ascending ? 1 : -1));
  fill(table, header, rows);
  table.dataset.sorted = ascending ? String(column) : "";
}

const cell = (text, key) => ({ text: String(text), key: key === undefined ? text : key });
const threshold = data.threshold;
const said = data.groups.length > 0 && data.groups[0].says_target !== null;
const intervalCell = (iv) => cell(interval(iv), iv.estimate);
fill(document.getElementById("groups"),
  ["group", "n", "reach top-1", "median depth top-1", `reach p>${threshold}`,
   `median depth p>${threshold}`, "final P(target)"].concat(said ?
   ["says target", "depth of said token", "said token stable from"] : []),
  data.groups.map((g) => [cell(g.group), cell(g.n), intervalCell(g.share_top1),
    intervalCell(g.depth_top1), intervalCell(g.share_above), intervalCell(g.depth_above),
    cell(fmt(g.final_prob, 3), g.final_prob)].concat(said ? [intervalCell(g.says_target),
    intervalCell(g.said_depth_top1), intervalCell(g.said_depth_stable)] : [])));
fill(document.getElementById("tests"), ["groups", "n", "U", "p", "Cliff's delta"],
  data.tests.map((t) => [cell(`${t.first} vs ${t.second}`), cell(`${t.n_first} / ${t.n_second}`),
    cell(fmt(t.u, 1), t.u), cell(t.p_value === null ? "-" : Number(t.p_value).toPrecision(3),
    t.p_value), cell(fmt(t.cliffs_delta), t.cliffs_delta)]));
if (data.paired.length) {
  document.getElementById("paired-section").hidden = false;
  fill(document.getElementById("paired"),
    ["metric", "pairs", "pun higher / literal higher / tied", "mean pun - literal",
     "W", "p", "rank-biserial"],
    data.paired.map((t) => [cell(t.metric), cell(t.n_pairs),
      cell(`${t.n_first_higher} / ${t.n_second_higher} / ${t.n_tied}`, t.n_first_higher),
      cell(`${fmt(t.mean_difference.estimate, 3)} [${fmt(t.mean_difference.low, 3)}, ` +
        `${fmt(t.mean_difference.high, 3)}]`, t.mean_difference.estimate),
      cell(fmt(t.w, 1), t.w),
      cell(t.p_value === null ? "-" : Number(t.p_value).toPrecision(3), t.p_value),
      cell(fmt(t.rank_biserial), t.rank_biserial)]));
}
if (data.kruskal) {
  const k = data.kruskal;
  document.getElementById("kruskal").textContent = `Kruskal-Wallis over ${k.groups.join(", ")}: ` +
    `H = ${fmt(k.h)}, df = ${k.df}, p = ${k.p_value === null ? "-" : k.p_value.toPrecision(3)}`;
}
document.getElementById("meta").textContent = `${data.model}, ${data.lens} lens, ` +
  `${data.n_items} items, ${data.n_layers} layers; bootstrap ${data.n_boot} resamples, ` +
  `seed ${data.seed}.`;
"""
