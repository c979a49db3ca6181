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
