"use strict";
// The lens view: grid, top-k detail and trajectory of one report's data. The report page
// and the notebook view embed their data (#report-data); the explorer calls showReport()
// with each answer of its server.
let DATA = null;
// Label and scale of each metric that can colour the grid (logitlens.metrics.PICTURES).
let PICTURES = {};
let METRIC_NAMES = {};
const LINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
const state = {entry: 0, metric: "prob", pinned: null, logScale: false, measure: null};
// Smallest probability the log-scale trajectory shows (lower values sit on its floor).
const LOG_FLOOR = 1e-6;

function tokenText(id) {
  const text = DATA.vocab[String(id)];
  return text === undefined ? "<" + id + ">" : text;
}
// Whitespace and control bytes made visible: a space is ␣, not an empty cell.
const VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"};
function shown(text) {
  return text.replace(/[\x00-\x20\x7f]/g, c => VISIBLE[c] ||
    "<0x" + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0") + ">");
}
// A token as a grid cell shows it: its byte labels (<0xE2>) when it is part of a
// character, else its text with whitespace visible.
function tokenLabel(id) {
  const bytes = (DATA.byte_labels || {})[String(id)];
  return bytes === undefined ? shown(tokenText(id)) : bytes;
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
  const picture = PICTURES[metric];
  let max = 0;
  for (const row of values) {
    for (const v of row) if (v !== null && Math.abs(v) > max) max = Math.abs(v);
  }
  if (picture.scale === "unit") max = 1;
  const scale = v => {
    if (v === null) return 0;
    if (picture.scale === "log") return Math.log(v) / Math.log(Math.max(2, max));
    if (picture.scale === "diverging") return max > 0 ? (v + max) / (2 * max) : 0.5;
    return max > 0 ? v / max : 0;
  };
  // Good (high probability, low rank, entropy or KL) is dark blue.
  const dark = picture.high_is_good ? (v => scale(v)) : (v => 1 - scale(v));
  return v => {
    const t = Math.min(1, Math.max(0, dark(v)));
    const r = Math.round(247 - t * (247 - 8)), g = Math.round(251 - t * (251 - 48)),
      b = Math.round(255 - t * (255 - 107));
    return {background: `rgb(${r},${g},${b})`, color: t > 0.55 ? "#fff" : "#000"};
  };
}

function bindControls() {
  const promptSelect = document.getElementById("prompt-select");
  promptSelect.addEventListener("change", () => {
    state.entry = Number(promptSelect.value);
    state.pinned = null;
    render();
  });
  document.getElementById("metric-select").addEventListener("change", event => {
    state.metric = event.target.value;
    renderGrid();
    renderTrajectory();
  });
  document.getElementById("attribution-measure").addEventListener("change", event => {
    state.measure = event.target.value;
    renderAttribution();
  });
  const logScale = document.getElementById("log-scale");
  if (logScale) {
    logScale.addEventListener("change", () => {
      state.logScale = logScale.checked;
      renderTrajectory();
    });
  }
}

function fillPromptSelect() {
  const promptSelect = document.getElementById("prompt-select");
  promptSelect.replaceChildren(...DATA.entries.map((e, i) => el("option", {value: i}, e.label)));
  promptSelect.value = String(state.entry);
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
    e.model_top.forEach(id => nextRow.appendChild(el("th", {}, tokenLabel(id))));
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
        "data-col": col}, tokenLabel(id));
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

// Where a value sits on the trajectory's y axis, 0 (bottom) to 1 (top), and the tick labels.
function yScale(series, probabilities) {
  const values = series.flatMap(s => s.values).filter(v => v !== null);
  if (state.logScale) {
    const positive = values.filter(v => v > 0);
    const high = probabilities ? 1 : Math.max(...positive, LOG_FLOOR);
    const low = probabilities ? LOG_FLOOR : Math.min(...positive, high / 10);
    const [lo, hi] = [Math.log10(low), Math.log10(high)];
    return {at: v => (Math.log10(Math.max(v, low)) - lo) / (hi - lo || 1),
      top: high.toPrecision(2), bottom: low.toPrecision(2)};
  }
  let max = probabilities ? 0.1 : 0;
  for (const v of values) if (v > max) max = v;
  max = max || 1;
  return {at: v => v / max, top: max.toPrecision(2), bottom: "0"};
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
  const scale = yScale(series, e.targets.length > 0 || state.metric === "prob");
  document.getElementById("trajectory-title").textContent =
    `Trajectory at position ${e.positions[col]} (${JSON.stringify(e.tokens[col])}): ${label}` +
    (state.logScale ? " (log scale)" : "");
  const [left, right, top, bottom] = [44, 410, 12, 200];
  const n = e.layers.length;
  const x = i => left + (n > 1 ? (i * (right - left)) / (n - 1) : 0);
  const y = v => bottom - Math.min(1, Math.max(0, scale.at(v))) * (bottom - top);
  const nodes = [svgEl("line", {x1: left, y1: bottom, x2: right, y2: bottom, stroke: "#999"}),
    svgEl("line", {x1: left, y1: top, x2: left, y2: bottom, stroke: "#999"})];
  const text = (content, attrs) => {
    const node = svgEl("text", Object.assign({"font-size": 10, fill: "#444"}, attrs));
    node.textContent = content;
    return node;
  };
  nodes.push(text(scale.top, {x: 2, y: top + 8, class: "y-top"}),
    text(scale.bottom, {x: 2, y: bottom, class: "y-bottom"}));
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

// Direct logit attribution (analyze(..., attribution=True)) at the prompt's last attributed
// position: each layer's attention and MLP part of the target's logit or of target minus
// alternative, as bars up (positive) or down from zero, all on one scale.
function attributionWhat(a, measure) {
  const target = `logit(${JSON.stringify(a.target)})`;
  return measure === "difference" ? `${target} - logit(${JSON.stringify(a.alternative)})` : target;
}
function renderAttribution() {
  const a = (DATA.attribution || [])[state.entry];
  document.getElementById("attribution-section").hidden = !a;
  if (!a) return;
  const names = Object.keys(a.measures);
  if (!names.includes(state.measure)) state.measure = names[names.length - 1];
  const select = document.getElementById("attribution-measure");
  select.replaceChildren(...names.map(name => el("option", {value: name},
    attributionWhat(a, name))));
  select.value = state.measure;
  document.getElementById("attribution-choice").hidden = names.length < 2;
  const m = a.measures[state.measure];
  const n = m.attention.length;
  const [left, right, top, bottom] = [44, 610, 14, 190];
  const max = Math.max(1e-9, ...[...m.attention, ...m.mlp].map(Math.abs));
  const zero = (top + bottom) / 2;
  const slot = (right - left) / n;
  const size = v => (Math.abs(v) / max) * (bottom - top) / 2;
  const nodes = [svgEl("line", {x1: left, x2: right, y1: zero, y2: zero, stroke: "#999"})];
  const text = (content, attrs) => {
    const node = svgEl("text", Object.assign({"font-size": 10, fill: "#444"}, attrs));
    node.textContent = content;
    return node;
  };
  nodes.push(text("+" + max.toPrecision(2), {x: 2, y: top + 8}),
    text("-" + max.toPrecision(2), {x: 2, y: bottom}), text("0", {x: 30, y: zero + 3}));
  [["attention", "#1f77b4"], ["mlp", "#ff7f0e"]].forEach(([part, colour], p) => {
    m[part].forEach((v, layer) => {
      nodes.push(svgEl("rect", {x: left + layer * slot + p * slot / 2, width: slot / 2 - 1,
        y: v >= 0 ? zero - size(v) : zero, height: size(v), fill: colour, class: "bar",
        "data-layer": layer, "data-part": part, "data-value": String(v)}));
    });
    nodes.push(text(part === "mlp" ? "MLP" : "attention", {x: right - 70, y: top + 10 + 12 * p,
      fill: colour}));
  });
  const step = Math.max(1, Math.ceil(n / 10));
  for (let layer = 0; layer < n; layer += step) {
    nodes.push(text(layer, {x: left + layer * slot, y: bottom + 14}));
  }
  nodes.push(text("layer", {x: (left + right) / 2, y: bottom + 24}));
  document.getElementById("attribution-chart").replaceChildren(...nodes);
  document.getElementById("attribution-title").textContent =
    `Direct logit attribution of ${attributionWhat(a, state.measure)} at position ` +
    `${a.position}, by layer`;
  document.getElementById("attribution-sum").textContent = `embedding ${m.embed.toFixed(3)} + ` +
    `attention and MLP parts + constant ${m.constant.toFixed(3)} = ${m.logit.toFixed(3)}, ` +
    "the model's own value.";
}

function render() {
  const e = entry();
  document.getElementById("meta").textContent =
    `${e.model} · ${e.lens} lens · ${e.layers.length} layers x ${e.tokens.length} positions` +
    ` · prompt: ${JSON.stringify(e.prompt)}`;
  fillMetricSelect();
  renderGrid();
  renderTrajectory();
  renderAttribution();
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

/** Show a report's data (report_data() in logitlens.pictures.report) in this page. */
function showReport(data) {
  DATA = data;
  PICTURES = data.pictures;
  METRIC_NAMES = Object.fromEntries(
    Object.entries(PICTURES).map(([name, picture]) => [name, picture.label]));
  if (state.entry >= data.entries.length) state.entry = 0;
  state.pinned = null;
  fillPromptSelect();
  render();
}

bindControls();
const embedded = document.getElementById("report-data");
if (embedded) showReport(JSON.parse(embedded.textContent));
