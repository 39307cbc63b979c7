// The rawevents explorer: a page over the public query and export APIs, nothing else.
// Event data is untrusted (anyone with the project token writes it): every value reaches the
// page through textContent or setAttribute on SVG presentation attributes, never as markup.
"use strict";

const AUTH_KEY = "rawevents.explorer.auth";
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b6fd4", "#e07b39", "#3aa67a", "#c44d6e", "#8a63c9", "#c9a227",
  "#2a9bb5", "#7c8a99", "#b5562a", "#5b8c2f", "#a34fa3", "#44546a"];
const MAX_SERIES = 11; // event names drawn on their own; the rest are summed as "other events"
const OTHER = "other events";
const TOP_N = 10;
const ALL_EVENTS = '"all events"'; // an `on` expression keying every event the same: the total
const PAGE = 50;

const $ = (id) => document.getElementById(id);
const state = { auth: null, series: [], unit: "day", window: null, cursor: null, drag: null };

// ---- auth -----------------------------------------------------------------------------------

function loadAuth() {
  const raw = sessionStorage.getItem(AUTH_KEY);
  return raw ? JSON.parse(raw) : null;
}

function base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function authHeader(auth) {
  const pair = auth.kind === "account" ? `${auth.username}:${auth.secret}` : `${auth.secret}:`;
  return "Basic " + base64(pair);
}

function withProject(params) {
  if (state.auth && state.auth.projectId) params.project_id = state.auth.projectId;
  return params;
}

class ApiError extends Error {}

async function api(path, params, raw = false) {
  const url = path + "?" + new URLSearchParams(withProject({ ...params })).toString();
  const response = await fetch(url, {
    headers: { Authorization: authHeader(state.auth) },
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(message);
  }
  return raw ? response.blob() : response.json();
}

// ---- dates and the selected window -------------------------------------------------------------

// Bucket labels are project-local wall-clock times; they are handled as UTC dates in JS so the
// browser's own time zone never shifts them.
function parseLabel(label) {
  const [day, time = "00:00:00"] = label.split(" ");
  return new Date(`${day}T${time}Z`);
}

function nextBucket(date, unit) {
  const next = new Date(date.getTime());
  const steps = { minute: () => next.setUTCMinutes(next.getUTCMinutes() + 1),
    hour: () => next.setUTCHours(next.getUTCHours() + 1),
    day: () => next.setUTCDate(next.getUTCDate() + 1),
    week: () => next.setUTCDate(next.getUTCDate() + 7),
    month: () => next.setUTCMonth(next.getUTCMonth() + 1) };
  steps[unit]();
  return next;
}

const isoDay = (date) => date.toISOString().slice(0, 10);
const isoWall = (date) => date.toISOString().slice(0, 19);

function unitFor(fromDate, toDate) {
  const days = (Date.parse(toDate) - Date.parse(fromDate)) / 86400000 + 1;
  if (days <= 1) return "minute";
  if (days <= 31) return "hour";
  if (days <= 400) return "day";
  if (days <= 1500) return "week";
  return "month";
}

function windowClause(win) {
  return `properties["$time"] >= datetime("${isoWall(win.start)}") and ` +
    `properties["$time"] < datetime("${isoWall(win.end)}")`;
}

// The selection every panel, the download and the curl command use.
function selection() {
  const userWhere = $("where").value.trim();
  const params = { from_date: $("from-date").value, to_date: $("to-date").value };
  const event = $("event").value;
  if (event) params.event = JSON.stringify([event]);
  let where = userWhere;
  let shift = 0; // columns the user's text moved by inside the combined expression
  if (state.window) {
    params.from_date = isoDay(state.window.start);
    params.to_date = isoDay(new Date(state.window.end.getTime() - 1));
    where = userWhere ? `(${userWhere}) and ${windowClause(state.window)}` : windowClause(state.window);
    shift = userWhere ? 1 : 0;
  }
  if (where) params.where = where;
  return { params, shift, userWhere };
}

// ---- rendering helpers (text only) --------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function status(text) { $("status").textContent = text; }

function showWhereError(error, shift, userWhere) {
  const box = $("where-error");
  const match = /at column (\d+)/.exec(error.message);
  $("where-error-message").textContent = error.message;
  $("where-error-text").textContent = "";
  $("where-error-caret").textContent = "";
  if (match && error.message.startsWith("where:")) {
    const offset = Math.max(0, Math.min(userWhere.length, Number(match[1]) - 1 - shift));
    const before = userWhere.slice(0, offset);
    const lineStart = before.lastIndexOf("\n") + 1;
    const lineEnd = userWhere.indexOf("\n", offset);
    $("where-error-text").textContent = userWhere.slice(lineStart, lineEnd < 0 ? undefined : lineEnd);
    $("where-error-caret").textContent = " ".repeat(offset - lineStart) + "^";
    $("where-error-caret").dataset.column = String(offset + 1);
    $("where").focus();
    $("where").setSelectionRange(offset, offset + 1);
  }
  box.hidden = false;
}

// ---- chart --------------------------------------------------------------------------------------

async function loadChart() {
  const { params } = selection();
  delete params.where;
  const base = { from_date: $("from-date").value, to_date: $("to-date").value };
  const userWhere = $("where").value.trim();
  const unit = unitFor(base.from_date, base.to_date);
  const query = { ...base, unit };
  if (params.event) query.event = params.event;
  if (userWhere) query.where = userWhere;
  // The top names, and every event under one key: "other events" is the difference. Two small
  // answers instead of one with every name (limit x buckets stays far under the cell cap).
  const [body, all] = await Promise.all([
    api("/api/query/segmentation", { ...query, limit: MAX_SERIES }),
    api("/api/query/segmentation", { ...query, on: ALL_EVENTS, limit: 1 }),
  ]);
  state.unit = unit;
  state.series = body.data.series;
  $("unit").textContent = unit;
  const totals = Object.values(all.data.values)[0] || {};
  drawChart(body.data.series, body.data.values, totals);
}

function stacks(series, values, totals) {
  const names = Object.keys(values).map((name) => [name, series.reduce((s, l) => s + values[name][l], 0)])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([name]) => name);
  const shown = names.slice(0, MAX_SERIES);
  const layers = shown.map((name) => ({ name, counts: series.map((l) => values[name][l]) }));
  const rest = series.map((l) => Math.max(0, (totals[l] || 0) - shown.reduce((s, n) => s + values[n][l], 0)));
  if (rest.some((n) => n > 0)) layers.push({ name: OTHER, counts: rest });
  return layers;
}

function drawChart(series, values, totals) {
  const chart = $("chart");
  chart.replaceChildren();
  const width = 1000, height = 260, left = 44, bottom = 22, top = 8;
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.setAttribute("preserveAspectRatio", "none");
  const layers = stacks(series, values, totals);
  const heights = series.map((_, i) => layers.reduce((s, layer) => s + layer.counts[i], 0));
  const peak = Math.max(1, ...heights);
  const slot = (width - left) / Math.max(1, series.length);
  const scale = (height - top - bottom) / peak;
  state.geometry = { left, slot, width, height };
  chart.append(svg("text", { x: 4, y: top + 10, class: "axis" }));
  chart.lastChild.textContent = String(peak);
  const bars = svg("g", {});
  series.forEach((label, i) => {
    let y = height - bottom;
    layers.forEach((layer, k) => {
      const count = layer.counts[i];
      if (!count) return;
      const h = count * scale;
      y -= h;
      const rect = svg("rect", { x: left + i * slot, y, width: Math.max(1, slot - (slot > 4 ? 1 : 0)), height: h,
        fill: PALETTE[k % PALETTE.length], "data-bucket": i });
      const title = svg("title", {});
      title.textContent = `${label} · ${layer.name}: ${count}`;
      rect.append(title);
      bars.append(rect);
    });
  });
  chart.append(bars);
  const ticks = Math.min(series.length, 6);
  for (let t = 0; t < ticks; t++) {
    const i = Math.floor((t * (series.length - 1)) / Math.max(1, ticks - 1));
    const anchor = t === 0 ? "start" : t === ticks - 1 ? "end" : "middle";
    const text = svg("text", { x: left + (i + 0.5) * slot, y: height - 6, class: "axis", "text-anchor": anchor });
    text.textContent = series[i];
    chart.append(text);
  }
  chart.append(svg("rect", { id: "selection", class: "sel", x: 0, y: top, width: 0, height: height - top - bottom,
    visibility: "hidden" }));
  const legend = $("legend");
  legend.replaceChildren();
  layers.forEach((layer, k) => {
    const item = el("li");
    const swatch = el("span", undefined, "swatch");
    swatch.style.background = PALETTE[k % PALETTE.length];
    item.append(swatch, el("span", layer.name));
    legend.append(item);
  });
  drawSelection();
}

function bucketAt(event) {
  const chart = $("chart");
  const box = chart.getBoundingClientRect();
  const x = ((event.clientX - box.left) / box.width) * state.geometry.width;
  const i = Math.floor((x - state.geometry.left) / state.geometry.slot);
  return Math.max(0, Math.min(state.series.length - 1, i));
}

function drawSelection() {
  const rect = $("selection");
  if (!rect) return;
  const range = state.drag || state.windowBuckets;
  if (!range) {
    rect.setAttribute("visibility", "hidden");
    return;
  }
  const [a, b] = [Math.min(range[0], range[1]), Math.max(range[0], range[1])];
  rect.setAttribute("x", String(state.geometry.left + a * state.geometry.slot));
  rect.setAttribute("width", String((b - a + 1) * state.geometry.slot));
  rect.setAttribute("visibility", "visible");
}

function startDrag(event) {
  if (!state.series.length) return;
  const i = bucketAt(event);
  state.drag = [i, i];
  $("chart").setPointerCapture(event.pointerId);
  drawSelection();
}

function moveDrag(event) {
  if (!state.drag) return;
  state.drag[1] = bucketAt(event);
  drawSelection();
}

function endDrag() {
  if (!state.drag) return;
  const [a, b] = [Math.min(...state.drag), Math.max(...state.drag)];
  state.drag = null;
  setWindow(a, b);
}

function setWindow(a, b) {
  const start = parseLabel(state.series[a]);
  const end = nextBucket(parseLabel(state.series[b]), state.unit);
  state.window = { start, end };
  state.windowBuckets = [a, b];
  drawSelection();
  showWindow();
  refreshSelection();
}

function showWindow() {
  const win = state.window;
  $("window-text").textContent = win
    ? `Window: ${isoWall(win.start).replace("T", " ")} to ${isoWall(win.end).replace("T", " ")} (project time)`
    : "Window: the whole range";
  $("clear-window").hidden = !win;
  $("zoom-window").hidden = !win;
}

// ---- top values ---------------------------------------------------------------------------------

const onProperty = (name) => `properties[${JSON.stringify(name)}]`;

async function topOf(on, params) {
  const body = await api("/api/query/segmentation", { ...params, on, unit: "month", limit: TOP_N });
  const rows = Object.entries(body.data.values).map(([value, counts]) =>
    [value, Object.values(counts).reduce((s, n) => s + n, 0)]);
  return rows.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

async function windowTotal(params) {
  const body = await api("/api/query/segmentation", { ...params, on: ALL_EVENTS, unit: "month", limit: 1 });
  return Object.values(body.data.values).reduce(
    (sum, counts) => sum + Object.values(counts).reduce((s, n) => s + n, 0), 0);
}

function fillTop(tableId, property, rows, total) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const [value, count] of rows) {
    const row = el("tr");
    const cell = el("td");
    const button = el("button", value, "value");
    button.type = "button";
    button.title = "add to the where filter";
    button.addEventListener("click", () => addFilter(property, value));
    cell.append(button);
    const share = total ? `${((100 * count) / total).toFixed(1)}%` : "";
    row.append(cell, el("td", String(count)), el("td", share));
    body.append(row);
  }
  if (!rows.length) {
    const row = el("tr");
    row.append(el("td", "no events"));
    body.append(row);
  }
}

function addFilter(property, value) {
  // string() renders values exactly as segmentation keys them, so the clause selects that row.
  const clause = `string(${onProperty(property)}) == ${JSON.stringify(value)}`;
  const current = $("where").value.trim();
  $("where").value = current ? `(${current}) and ${clause}` : clause;
  applyFilters();
}

async function loadTops() {
  const { params } = selection();
  const totalAsked = windowTotal(params);
  // Each panel fills as soon as its own answer arrives: the distinct_ids read a stored column,
  // an arbitrary property needs the events' JSON and may take longer on a large range.
  const users = (async () => {
    const [total, rows] = await Promise.all([totalAsked, topOf(onProperty("distinct_id"), params)]);
    $("total-line").textContent = `${total} events in the ${state.window ? "window" : "range"}`;
    fillTop("top-users", "distinct_id", rows, total);
  })();
  await Promise.all([users, loadPropertyTop(params, totalAsked)]);
}

async function loadPropertyTop(params, totalAsked) {
  const property = $("property").value.trim();
  const [total, rows] = await Promise.all([
    totalAsked,
    property ? topOf(onProperty(property), params) : Promise.resolve([]),
  ]);
  fillTop("top-values", property, rows, total);
}

// ---- raw events ---------------------------------------------------------------------------------

function eventTime(seconds) {
  return typeof seconds === "number" ? new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ") : "?";
}

async function loadEvents(reset) {
  const { params } = selection();
  const query = { ...params, order: $("order").value, limit: PAGE };
  if (!reset && state.cursor) query.cursor = state.cursor;
  const body = await api("/api/query/events/page", query);
  const list = $("events");
  if (reset) list.replaceChildren();
  for (const row of body.results) {
    const props = row.properties || {};
    const item = el("li");
    const details = el("details");
    const summary = el("summary",
      `${eventTime(props.time)}  ${String(row.event)}  ${props.distinct_id === undefined ? "" : String(props.distinct_id)}`);
    details.append(summary, el("pre", JSON.stringify(row, null, 2)));
    item.append(details);
    list.append(item);
  }
  state.cursor = body.next_cursor;
  $("more").hidden = !body.next_cursor;
}

// ---- export: download and curl ------------------------------------------------------------------

function shellQuote(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }

function curlCommand() {
  const { params } = selection();
  const all = withProject({ ...params });
  const user = state.auth.kind === "account" ? '"$RAWEVENTS_USERNAME:$RAWEVENTS_SECRET"' : '"$RAWEVENTS_SECRET:"';
  const lines = [`curl --fail --compressed -u ${user} --get ${shellQuote(location.origin + "/api/2.0/export")}`];
  for (const [name, value] of Object.entries(all)) lines.push(`  --data-urlencode ${shellQuote(`${name}=${value}`)}`);
  return lines.join(" \\\n");
}

async function download() {
  const { params } = selection();
  status("Downloading the export…");
  const blob = await api("/api/2.0/export", params, true);
  const link = $("download-link");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = `export-${params.from_date}-${params.to_date}.jsonl`;
  link.hidden = false;
  link.click();
  status(`Downloaded ${blob.size} bytes.`);
}

async function copyCurl() {
  try {
    await navigator.clipboard.writeText($("curl").textContent);
    status("curl command copied.");
  } catch (_) {
    getSelection().selectAllChildren($("curl"));
    status("Select-all done: press Ctrl+C to copy.");
  }
}

// ---- flow ---------------------------------------------------------------------------------------

async function guarded(work) {
  const { shift, userWhere } = selection();
  try {
    await work();
  } catch (error) {
    if (error instanceof ApiError && /^where:/.test(error.message)) showWhereError(error, shift, userWhere);
    else status(`Error: ${error.message}`);
    return false;
  }
  return true;
}

async function refreshSelection() {
  $("curl").textContent = curlCommand();
  status("Loading…");
  const ok = await guarded(() => Promise.all([loadTops(), loadEvents(true)]));
  if (ok) status("");
}

async function applyFilters() {
  $("where-error").hidden = true;
  state.cursor = null;
  status("Loading…");
  const ok = await guarded(async () => {
    await loadChart();
    await Promise.all([loadTops(), loadEvents(true)]);
  });
  $("curl").textContent = curlCommand();
  if (ok) status("");
}

async function loadNames() {
  const props = await api("/api/query/events/properties/top", { limit: 200 });
  const list = $("property-names");
  list.replaceChildren(...Object.keys(props).map((name) => { const o = el("option"); o.value = name; return o; }));
}

function showApp() {
  const auth = state.auth;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = auth.kind === "account"
    ? `service account ${auth.username}, project ${auth.projectId}` : `project secret${auth.projectId ? `, project ${auth.projectId}` : ""}`;
  const today = new Date();
  if (!$("to-date").value) $("to-date").value = isoDay(today);
  if (!$("from-date").value) $("from-date").value = isoDay(new Date(today.getTime() - 29 * 86400000));
  applyFilters();
}

async function signIn(event) {
  event.preventDefault();
  const kind = document.querySelector("input[name=kind]:checked").value;
  const auth = kind === "account"
    ? { kind, username: $("sa-user").value.trim(), secret: $("sa-secret").value, projectId: $("project-id").value.trim() }
    : { kind, secret: $("secret").value.trim(), projectId: $("project-id").value.trim() };
  state.auth = auth;
  try {
    await loadNames();
  } catch (error) {
    state.auth = null;
    $("signin-error").textContent = error.message;
    return;
  }
  sessionStorage.setItem(AUTH_KEY, JSON.stringify(auth));
  $("secret").value = "";
  $("sa-secret").value = "";
  $("signin-error").textContent = "";
  showApp();
}

function signOut() {
  sessionStorage.removeItem(AUTH_KEY);
  location.reload();
}

function toggleKind() {
  const account = document.querySelector("input[name=kind]:checked").value === "account";
  document.querySelector(".kind-secret").hidden = account;
  document.querySelector(".kind-account").hidden = !account;
}

function clearWindow() {
  state.window = null;
  state.windowBuckets = null;
  drawSelection();
  showWindow();
  refreshSelection();
}

function zoomWindow() {
  $("from-date").value = isoDay(state.window.start);
  $("to-date").value = isoDay(new Date(state.window.end.getTime() - 1));
  state.window = null;
  state.windowBuckets = null;
  showWindow();
  applyFilters();
}

function init() {
  $("signin-form").addEventListener("submit", signIn);
  for (const radio of document.querySelectorAll("input[name=kind]")) radio.addEventListener("change", toggleKind);
  $("signout").addEventListener("click", signOut);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); clearWindowState(); applyFilters(); });
  $("chart").addEventListener("pointerdown", startDrag);
  $("chart").addEventListener("pointermove", moveDrag);
  $("chart").addEventListener("pointerup", endDrag);
  $("clear-window").addEventListener("click", clearWindow);
  $("zoom-window").addEventListener("click", zoomWindow);
  $("property").addEventListener("change", () => {
    const { params } = selection();
    guarded(() => loadPropertyTop(params, windowTotal(params)));
  });
  $("order").addEventListener("change", () => { state.cursor = null; guarded(() => loadEvents(true)); });
  $("more").addEventListener("click", () => guarded(() => loadEvents(false)));
  $("download").addEventListener("click", () => guarded(download));
  $("copy-curl").addEventListener("click", copyCurl);
  state.auth = loadAuth();
  if (state.auth) {
    loadNames().catch(() => {});
    showApp();
  }
}

function clearWindowState() {
  // New dates or filters redraw the chart, whose buckets the window was drawn on.
  state.window = null;
  state.windowBuckets = null;
  showWindow();
}

document.addEventListener("DOMContentLoaded", init);
