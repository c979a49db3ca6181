// The explorer: a form that asks logitlens serve for an analysis and shows the answer with
// the report's lens view (showReport). Nothing here runs code from the server or reaches
// the disk but the downloads the user asks for.
const TOKEN = new URLSearchParams(location.search).get("token");
const FIELDS = ["prompts", "lens", "target", "alternative", "positions", "metric", "k",
  "attribution"];
const explorer = {info: null, answer: null, request: null, polling: null};

function $(id) { return document.getElementById(id); }

async function call(path, body) {
  const headers = {};
  if (TOKEN) headers["X-Logitlens-Token"] = TOKEN;
  const options = {headers, method: body === undefined ? "GET" : "POST"};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    const problem = type.startsWith("application/json") ? (await response.json()).error :
      `${response.status} ${response.statusText}`;
    throw new Error(problem);
  }
  return type.startsWith("application/json") ? response.json() : response.blob();
}

// The form as the server's AnalysisRequest; a typed ␣ (as the grid shows spaces) is a space.
function formRequest() {
  const spaces = text => text.replace(/\u2423/g, " ");
  return {
    prompts: $("prompts").value.split("\n").filter(line => line.trim()),
    lens: $("lens").value,
    target: spaces($("target").value),
    alternative: spaces($("alternative").value),
    positions: $("positions").value.trim() || "all",
    metric: $("grid-metric").value,
    k: Number($("k").value),
    attribution: $("attribution").checked,
  };
}

function fillForm(request) {
  if (request.prompts) $("prompts").value = [].concat(request.prompts).join("\n");
  for (const name of ["lens", "target", "alternative", "positions", "k"]) {
    if (request[name] !== undefined && request[name] !== null) $(name).value = request[name];
  }
  if (request.metric) $("grid-metric").value = request.metric;
  $("attribution").checked = String(request.attribution) === "true";
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function pollStatus() {
  try {
    const status = await call("/api/status");
    const waiting = status.waiting ? ` · ${status.waiting} waiting` : "";
    $("status").textContent = status.running ?
      `running ${status.running} (${status.progress})${waiting}` : `queued${waiting}`;
  } catch (error) {
    $("status").textContent = "waiting for the server";
  }
}

async function analyze() {
  const request = formRequest();
  showError("");
  $("run").disabled = true;
  $("status").classList.add("busy");
  $("status").textContent = "asking";
  explorer.polling = setInterval(pollStatus, 300);
  try {
    const answer = await call("/api/analyze", request);
    explorer.answer = answer;
    explorer.request = request;
    show(answer, request);
    $("status").textContent = "";
  } catch (error) {
    showError(error.message);
    $("status").textContent = "";
  } finally {
    clearInterval(explorer.polling);
    $("status").classList.remove("busy");
    $("run").disabled = false;
  }
}

function show(answer, request) {
  state.metric = request.metric;
  showReport(answer.view);
  $("view-wrap").hidden = false;
  $("actions").hidden = false;
  $("timing").textContent = `answered in ${answer.seconds.toFixed(3)} s`;
  const warnings = $("warnings");
  warnings.textContent = answer.warnings.join(" ");
  warnings.hidden = answer.warnings.length === 0;
  const shared = new URLSearchParams();
  for (const name of FIELDS) {
    const value = name === "prompts" ? request.prompts.join("\n") : request[name];
    shared.set(name, String(value));
  }
  history.replaceState(null, "", location.pathname + location.search + "#" + shared);
  $("share-link").href = location.origin + location.pathname + "#" + shared;
  renderCompare();
}

// Several prompts side by side: one row each, with its trajectory as a small line.
function renderCompare() {
  const entries = DATA.entries;
  $("compare").hidden = entries.length < 2;
  const table = $("compare-table");
  const head = el("tr");
  const withTarget = entries[0].targets.length > 0;
  for (const title of ["prompt", "last input", "lens's last top-1",
    withTarget ? `P(${JSON.stringify(entries[0].targets[0])}) by layer` : "top-1 prob by layer",
    withTarget ? "first layer > 0.1" : "max"]) {
    head.appendChild(el("th", {}, title));
  }
  const rows = entries.map((e, i) => {
    const col = e.tokens.length - 1;
    const values = withTarget ? e.target_prob.map(row => row[col][0]) :
      e.top_probs.map(row => row[col][0]);
    const row = el("tr", {class: "compare-row" + (i === state.entry ? " chosen" : ""),
      "data-entry": i});
    row.appendChild(el("td", {}, e.label));
    row.appendChild(el("td", {}, shown(e.tokens[col])));
    row.appendChild(el("td", {class: "top1"}, tokenLabel(e.top_ids[e.layers.length - 1][col][0])));
    const cell = el("td");
    cell.appendChild(sparkline(values));
    row.appendChild(cell);
    const above = values.findIndex(v => v !== null && v > 0.1);
    row.appendChild(el("td", {}, withTarget ? (above < 0 ? "never" : e.layers[above]) :
      Math.max(...values.filter(v => v !== null)).toFixed(3)));
    return row;
  });
  table.replaceChildren(head, ...rows);
}

function sparkline(values) {
  const [width, height] = [160, 24];
  const svg = svgEl("svg", {width, height, viewBox: `0 0 ${width} ${height}`});
  const n = values.length;
  // The trajectory chart's log scale applies here too (1e-6 to 1).
  const level = v => state.logScale ?
    (Math.log10(Math.max(v, LOG_FLOOR)) - Math.log10(LOG_FLOOR)) / -Math.log10(LOG_FLOOR) : v;
  const points = values.map((v, i) => v === null ? null :
    `${(i * width) / Math.max(1, n - 1)},${height - 2 - level(v) * (height - 4)}`)
    .filter(p => p !== null).join(" ");
  svg.appendChild(svgEl("polyline", {points, fill: "none", stroke: "#1f77b4",
    "stroke-width": 1.5}));
  return svg;
}

function download(blob, name) {
  const link = el("a", {href: URL.createObjectURL(blob), download: name});
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function start() {
  const info = await call("/api/info");
  explorer.info = info;
  $("lens").replaceChildren(...info.lenses.map(name => el("option", {value: name}, name)));
  $("lens").value = info.default_lens;
  $("grid-metric").replaceChildren(...Object.entries(info.metrics).map(
    ([name, label]) => el("option", {value: name}, label)));
  $("grid-metric").value = "prob";
  const shared = new URLSearchParams(location.hash.slice(1));
  if (shared.has("prompts")) {
    fillForm(Object.fromEntries(shared.entries()));
    analyze();
  }
}

$("ask").addEventListener("submit", event => {
  event.preventDefault();
  analyze();
});
$("prompts").addEventListener("keydown", event => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    analyze();
  }
});
$("grid-metric").addEventListener("change", () => {
  const metric = $("grid-metric").value;
  if (explorer.answer && (metric === "prob" || metric in entry().metrics)) {
    state.metric = metric;
    renderGrid();
    renderTrajectory();
  } else if (explorer.answer) {
    analyze();
  }
});
$("prompt-select").addEventListener("change", () => {
  renderCompare();
});
$("log-scale").addEventListener("change", () => renderCompare());
$("compare-table").addEventListener("click", event => {
  const row = event.target.closest("tr.compare-row");
  if (!row) return;
  const select = $("prompt-select");
  select.value = row.dataset.entry;
  select.dispatchEvent(new Event("change"));
});
$("download-json").addEventListener("click", () => {
  const text = JSON.stringify(explorer.answer.result);
  download(new Blob([text], {type: "application/json"}), "logitlens-result.json");
});
$("download-html").addEventListener("click", async () => {
  try {
    download(await call("/api/report", explorer.request), "logitlens-report.html");
  } catch (error) {
    showError(error.message);
  }
});
start().catch(error => showError(error.message));
