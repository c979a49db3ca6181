"use strict";
// The lens scoreboard: a sortable summary table and every lens's metric by layer.
const BOARD = JSON.parse(document.getElementById("scoreboard-data").textContent);
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const LABELS = {kl: "KL to the model (nats)", top1_agreement: "top-1 agreement",
  perplexity: "perplexity"};
const view = {sortBy: null, descending: false};

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
function svgEl(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderSummary() {
  const lenses = Object.keys(BOARD.summary);
  const columns = Object.keys(BOARD.summary[lenses[0]] || {});
  if (view.sortBy) {
    const sign = view.descending ? -1 : 1;
    lenses.sort((a, b) => sign * (BOARD.summary[a][view.sortBy] - BOARD.summary[b][view.sortBy]));
  }
  const head = el("tr");
  head.appendChild(el("th", {}, "lens"));
  for (const column of columns) {
    const th = el("th", {"data-column": column}, column);
    th.addEventListener("click", () => {
      view.descending = view.sortBy === column ? !view.descending : false;
      view.sortBy = column;
      renderSummary();
    });
    head.appendChild(th);
  }
  const rows = lenses.map(lens => {
    const row = el("tr", {class: "lens-row"});
    row.appendChild(el("td", {}, lens));
    for (const column of columns) {
      row.appendChild(el("td", {}, Number(BOARD.summary[lens][column]).toPrecision(4)));
    }
    return row;
  });
  document.getElementById("summary").replaceChildren(head, ...rows);
}

function renderChart() {
  const metric = document.getElementById("metric-select").value;
  const log = document.getElementById("log-scale").checked;
  const labels = BOARD.layers.map(layer => layer === -1 ? "embed" : String(layer));
  const series = BOARD.lenses.map(lens => BOARD[metric][lens]);
  const values = series.flat().filter(v => v !== null && isFinite(v) && (!log || v > 0));
  const f = v => log ? Math.log10(v) : v;
  const low = log ? Math.min(...values.map(f)) : Math.min(0, ...values);
  const high = Math.max(...values.map(f), low + 1e-9);
  const [left, right, top, bottom] = [48, 510, 12, 220];
  const x = i => left + (labels.length > 1 ? (i * (right - left)) / (labels.length - 1) : 0);
  const y = v => bottom - ((f(v) - low) / (high - low)) * (bottom - top);
  const nodes = [svgEl("line", {x1: left, y1: bottom, x2: right, y2: bottom, stroke: "#999"}),
    svgEl("line", {x1: left, y1: top, x2: left, y2: bottom, stroke: "#999"}),
    svgEl("text", {x: 2, y: top + 8, "font-size": 10}, (log ? 10 ** high : high).toPrecision(3)),
    svgEl("text", {x: 2, y: bottom, "font-size": 10}, (log ? 10 ** low : low).toPrecision(3)),
    svgEl("text", {x: (left + right) / 2, y: bottom + 30, "font-size": 10}, "layer")];
  const step = Math.max(1, Math.ceil(labels.length / 10));
  for (let i = 0; i < labels.length; i += step) {
    nodes.push(svgEl("text", {x: x(i) - 4, y: bottom + 14, "font-size": 10}, labels[i]));
  }
  series.forEach((values, i) => {
    const points = values.map((v, j) => v === null || !isFinite(v) || (log && v <= 0) ? null :
      `${x(j)},${y(v)}`).filter(p => p !== null).join(" ");
    const colour = COLOURS[i % COLOURS.length];
    nodes.push(svgEl("polyline", {points, fill: "none", stroke: colour, "stroke-width": 2,
      class: "series", "data-lens": BOARD.lenses[i]}));
    nodes.push(svgEl("text", {x: right - 90, y: top + 12 + 12 * i, fill: colour,
      "font-size": 10}, BOARD.lenses[i]));
  });
  document.getElementById("chart").replaceChildren(...nodes);
}

const select = document.getElementById("metric-select");
for (const metric of Object.keys(LABELS)) {
  if (BOARD[metric] && Object.keys(BOARD[metric]).length) {
    select.appendChild(el("option", {value: metric}, LABELS[metric]));
  }
}
select.addEventListener("change", renderChart);
document.getElementById("log-scale").addEventListener("change", renderChart);
document.getElementById("meta").textContent =
  `${BOARD.model_name} · ${BOARD.tokens} held-out tokens · lenses: ${BOARD.lenses.join(", ")}`;
renderSummary();
renderChart();
