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
const SEGMENTATION = "/api/query/segmentation";
const DEFAULT_PROPERTY = "$os";
const MINUTE = 60000, HOUR = 3600000, DAY = 86400000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const RETRIES = 8; // a 503 (the server's admission control) is retried after its Retry-After

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat("en-US");
const fmt = (n) => numbers.format(n);

const state = {
  auth: null,
  project: null, // {name, timezone}
  range: null, // the chart's view: {start, end}, project-local wall clock held in Date's UTC fields
  unitChoice: "auto",
  sel: null, // the selected window, same representation, whole buckets
  event: "",
  where: "", // the where box (free text)
  filters: [], // [{prop, exclude, values: [string]}]: picked in the tables, ANDed to the where box
  prop: DEFAULT_PROPERTY,
  order: "newest",
  user: null, // the open user's distinct_id
  unit: "day",
  buckets: [], // [{start, end, label, counts: [per layer], total}]
  layers: [], // [{name, color}]
  geometry: null,
  hover: null,
  drag: null,
  cursor: null,
  userCursor: null,
  loads: {}, // panel -> AbortController of its running load
  eventNames: [],
};

// ---- auth and requests --------------------------------------------------------------------------

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

class ApiError extends Error {
  constructor(message, status, where) {
    super(message);
    this.status = status;
    this.where = where;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, { once: true });
    }
  });
}

// At most MAX_IN_FLIGHT requests at once: a page load asks for about ten answers, and the
// server's engine shares its memory among the queries running together.
const MAX_IN_FLIGHT = 3;
let inFlight = 0;
const waiting = [];

function acquire(signal) {
  if (inFlight < MAX_IN_FLIGHT) {
    inFlight++;
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const entry = { resolve, reject };
    waiting.push(entry);
    if (signal) {
      signal.addEventListener("abort", () => {
        const at = waiting.indexOf(entry);
        if (at >= 0) {
          waiting.splice(at, 1);
          reject(new DOMException("aborted", "AbortError"));
        }
      }, { once: true });
    }
  });
}

function release() {
  const next = waiting.shift();
  if (next) next.resolve(); // the slot passes on
  else inFlight--;
}

// One API request. A 503 (every slot busy) is retried after its Retry-After, `onWait` told.
async function api(path, params, { raw = false, signal, onWait } = {}) {
  const url = path + "?" + new URLSearchParams(withProject({ ...params })).toString();
  for (let attempt = 0; ; attempt++) {
    await acquire(signal);
    let response, body, failure;
    try {
      response = await fetch(url, {
        headers: { Authorization: authHeader(state.auth) },
        credentials: "omit",
        cache: "no-store",
        signal,
      });
      if (response.ok) body = raw ? await response.blob() : await response.json();
      else if (response.status !== 503 || attempt >= RETRIES) {
        failure = `${response.status} ${response.statusText}`;
        try {
          failure = (await response.json()).error || failure;
        } catch (_) { /* not JSON: keep the status line */ }
      }
    } finally {
      release();
    }
    if (response.ok) return body;
    if (failure === undefined) {
      const seconds = Math.min(30, Math.max(1, Number(response.headers.get("Retry-After")) || 1));
      if (onWait) onWait(seconds, attempt + 1);
      await sleep(seconds * 1000, signal);
      continue;
    }
    throw new ApiError(failure, response.status, params.where);
  }
}

// ---- time: project-local wall clock, held in the UTC fields of Date objects ----------------------

function parseLabel(label) {
  const [day, time = "00:00:00"] = label.split(" ");
  return new Date(`${day}T${time}Z`);
}

function nextBucket(date, unit) {
  const next = new Date(date.getTime());
  if (unit === "minute") next.setUTCMinutes(next.getUTCMinutes() + 1);
  else if (unit === "hour") next.setUTCHours(next.getUTCHours() + 1);
  else if (unit === "day") next.setUTCDate(next.getUTCDate() + 1);
  else if (unit === "week") next.setUTCDate(next.getUTCDate() + 7);
  else next.setUTCMonth(next.getUTCMonth() + 1);
  return next;
}

const isoDay = (date) => date.toISOString().slice(0, 10);
const isoWall = (date) => date.toISOString().slice(0, 19);
const isoMinute = (date) => date.toISOString().slice(0, 16);
const midnight = (date) => date.getTime() % DAY === 0;
const wholeDays = (win) => midnight(win.start) && midnight(win.end);
const dayStart = (date) => new Date(date.getTime() - (date.getTime() % DAY));
const addDays = (date, days) => new Date(date.getTime() + days * DAY);

// Today in the project's time zone (the export refuses days after it).
function projectToday() {
  const zone = (state.project && state.project.timezone) || "UTC";
  try {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" })
      .formatToParts(new Date());
    const get = (type) => parts.find((p) => p.type === type).value;
    return new Date(`${get("year")}-${get("month")}-${get("day")}T00:00:00Z`);
  } catch (_) {
    return dayStart(new Date());
  }
}

function defaultRange() {
  const today = projectToday();
  return { start: addDays(today, -29), end: addDays(today, 1) };
}

function autoUnit(span) {
  if (span <= 6 * HOUR) return "minute";
  if (span <= 8 * DAY) return "hour";
  if (span <= 180 * DAY) return "day";
  if (span <= 3 * 366 * DAY) return "week";
  return "month";
}

function chartUnit() {
  return state.unitChoice === "auto" ? autoUnit(state.range.end - state.range.start) : state.unitChoice;
}

function dayLabel(date) {
  return `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}`;
}

function clock(date) {
  return date.toISOString().slice(11, 16);
}

function spanText(win) {
  if (wholeDays(win)) {
    const last = addDays(win.end, -1);
    return isoDay(win.start) === isoDay(last) ? isoDay(win.start) : `${isoDay(win.start)} to ${isoDay(last)}`;
  }
  if (isoDay(win.start) === isoDay(new Date(win.end - 1))) return `${isoDay(win.start)} ${clock(win.start)} to ${clock(win.end)}`;
  return `${isoDay(win.start)} ${clock(win.start)} to ${isoDay(win.end)} ${clock(win.end)}`;
}

function bucketText(bucket, unit) {
  const d = bucket.start;
  const day = `${WEEKDAYS[d.getUTCDay()]} ${dayLabel(d)} ${d.getUTCFullYear()}`;
  if (unit === "minute") return `${day}, ${clock(d)}`;
  if (unit === "hour") return `${day}, ${clock(d)} to ${clock(bucket.end)}`;
  if (unit === "day") return day;
  if (unit === "week") return `week of ${day}`;
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
}

// ---- the selection as API parameters ------------------------------------------------------------

const onProperty = (name) => `properties[${JSON.stringify(name)}]`;

function filterClause(filter) {
  const value = `string(${onProperty(filter.prop)})`;
  if (filter.values.length === 1) return `${value} ${filter.exclude ? "!=" : "=="} ${JSON.stringify(filter.values[0])}`;
  return `${value} ${filter.exclude ? "not in" : "in"} [${filter.values.map((v) => JSON.stringify(v)).join(", ")}]`;
}

function timeClause(win) {
  return `properties["$time"] >= datetime("${isoWall(win.start)}") and ` +
    `properties["$time"] < datetime("${isoWall(win.end)}")`;
}

// The where expression of a window: the where box first (so its error columns map back), then
// the picked filters (but not `skip`'s include filter: a table shows what else could be picked),
// then the time window when it is not whole days.
function composeWhere(win, skip) {
  const user = state.where.trim();
  const parts = state.filters.filter((f) => !(skip && f.prop === skip && !f.exclude)).map(filterClause);
  if (win && !wholeDays(win)) parts.push(timeClause(win));
  if (!user) return parts.join(" and ");
  return parts.length ? `(${user}) and ${parts.join(" and ")}` : user;
}

function queryParams(win, skip) {
  const params = { from_date: isoDay(win.start), to_date: isoDay(new Date(win.end.getTime() - 1)) };
  if (state.event) params.event = JSON.stringify([state.event]);
  const where = composeWhere(win, skip);
  if (where) params.where = where;
  return params;
}

const selectionWindow = () => state.sel || state.range;

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

function button(text, className, onClick, title) {
  const node = el("button", text, className);
  node.type = "button";
  if (title) node.title = title;
  node.addEventListener("click", onClick);
  return node;
}

function status(text) { $("status").textContent = text; }

// Each panel says what it is doing next to itself: loading, empty (why), or an error (retry).
function setPanel(panel, kind, text, retry) {
  const node = $(`${panel}-state`);
  node.dataset.state = kind;
  node.className = `state ${kind}`;
  node.replaceChildren();
  if (text) node.append(el("span", text));
  if (retry) node.append(" ", button("Retry", "link", retry));
}

function whereColumn(error) {
  const match = /at column (\d+)/.exec(error.message);
  const user = state.where.trim();
  if (!match || !error.where || !user) return null;
  const start = error.where.indexOf(user);
  const offset = Number(match[1]) - 1 - start;
  return start < 0 || offset < 0 || offset > user.length ? null : offset;
}

function showWhereError(error) {
  const user = state.where.trim();
  const offset = whereColumn(error);
  // The server names the column in the expression it was sent (the where box inside the
  // filters and the time window) and quotes that expression: say the column in the box instead.
  const head = /^(where: .*? at column )\d+/.exec(error.message);
  $("where-error-message").textContent = offset !== null && head ? `${head[1]}${offset + 1}` : error.message;
  const text = $("where-error-text");
  text.replaceChildren();
  if (offset !== null) {
    const mark = el("mark", user.slice(offset, offset + 1) || " ");
    mark.id = "where-error-mark";
    mark.dataset.column = String(offset + 1);
    text.append(user.slice(0, offset), mark, user.slice(offset + 1));
    $("where").focus();
    $("where").setSelectionRange(offset, Math.min(user.length, offset + 1));
  } else {
    text.textContent = user;
  }
  $("where-error").hidden = false;
}

// Run one panel's load: a newer load of the same panel aborts it, a where error is shown once
// under the where box, any other error next to the panel with a retry.
async function run(panel, work) {
  if (state.loads[panel]) state.loads[panel].abort();
  const controller = new AbortController();
  state.loads[panel] = controller;
  setPanel(panel, "loading", "Loading…");
  const onWait = (seconds, attempt) =>
    setPanel(panel, "loading", `The server is busy: retrying in ${seconds} s (attempt ${attempt} of ${RETRIES})…`);
  try {
    const outcome = await work(controller.signal, onWait);
    if (controller.signal.aborted) return;
    if (outcome && outcome.empty) setPanel(panel, "empty", outcome.empty);
    else setPanel(panel, "ready", "");
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    if (error instanceof ApiError && /^where:/.test(error.message)) {
      showWhereError(error);
      setPanel(panel, "error", "Nothing shown: fix the where expression above.");
    } else {
      setPanel(panel, "error", `Could not load: ${error.message}`, () => run(panel, work));
    }
  } finally {
    if (state.loads[panel] === controller) delete state.loads[panel];
  }
}

// ---- chart --------------------------------------------------------------------------------------

async function loadChart(signal, onWait) {
  const unit = chartUnit();
  const params = { ...queryParams(state.range), unit };
  const [top, all] = await Promise.all([
    api(SEGMENTATION, { ...params, limit: MAX_SERIES }, { signal, onWait }),
    api(SEGMENTATION, { ...params, on: ALL_EVENTS, limit: 1 }, { signal, onWait }),
  ]);
  signal.throwIfAborted();
  state.unit = unit;
  $("unit").textContent = unit;
  buildBuckets(top.data.series, top.data.values, Object.values(all.data.values)[0] || {}, unit);
  drawChart();
  const total = state.buckets.reduce((s, b) => s + b.total, 0);
  if (total) return null;
  if (state.event) await eventNames(); // for "did you mean"
  signal.throwIfAborted();
  return { empty: emptyChartText() };
}

function buildBuckets(series, values, totals, unit) {
  const names = Object.keys(values).map((name) => [name, series.reduce((s, l) => s + values[name][l], 0)])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([name]) => name).slice(0, MAX_SERIES);
  state.layers = names.map((name, k) => ({ name, color: PALETTE[k % PALETTE.length] }));
  let other = false;
  const buckets = [];
  for (const label of series) {
    const start = parseLabel(label);
    const end = nextBucket(start, unit);
    if (end <= state.range.start || start >= state.range.end) continue;
    const counts = names.map((name) => values[name][label] || 0);
    const named = counts.reduce((s, n) => s + n, 0);
    const rest = Math.max(0, (totals[label] || 0) - named);
    if (rest) other = true;
    counts.push(rest);
    buckets.push({ start: start < state.range.start ? state.range.start : start,
      end: end > state.range.end ? state.range.end : end, label, counts, total: named + rest });
  }
  if (other) state.layers.push({ name: OTHER, color: PALETTE[MAX_SERIES % PALETTE.length] });
  state.buckets = buckets;
}

function emptyChartText() {
  const filtered = state.event || state.where.trim() || state.filters.length;
  if (!filtered) {
    return `No events from ${spanText(state.range)}. Send some to /track or /import, ` +
      "or start the server with `rawevents serve --demo` for a project full of sample traffic.";
  }
  if (state.event) {
    const wanted = state.event.toLowerCase();
    const near = state.eventNames.filter((name) => name.toLowerCase().includes(wanted) ||
      wanted.includes(name.toLowerCase())).slice(0, 3);
    if (!state.eventNames.includes(state.event)) {
      return `No event named "${state.event}" in this range.` +
        (near.length ? ` Did you mean ${near.map((n) => `"${n}"`).join(", ")}?` : " Pick one from the suggestions.");
    }
  }
  return "No events match these filters in this range.";
}

function niceStep(max, count) {
  const raw = Math.max(1, max) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * magnitude;
  return Math.max(1, Math.round(step));
}

// Ticks at round wall-clock times: the smallest step giving at most `most` ticks over the range.
const TICK_STEPS = [[MINUTE, 1], [MINUTE, 5], [MINUTE, 10], [MINUTE, 15], [MINUTE, 30], [HOUR, 1], [HOUR, 2],
  [HOUR, 3], [HOUR, 6], [HOUR, 12], [DAY, 1], [DAY, 2], [DAY, 7], ["month", 1], ["month", 3], ["month", 6], ["month", 12]];

function timeTicks(range, most) {
  const span = range.end - range.start;
  for (const [size, count] of TICK_STEPS) {
    const approx = size === "month" ? count * 30.4 * DAY : size * count;
    if (span / approx > most) continue;
    const ticks = [];
    if (size === "month") {
      const t = new Date(Date.UTC(range.start.getUTCFullYear(), range.start.getUTCMonth(), 1));
      while (t < range.end) {
        if (t >= range.start && t.getUTCMonth() % count === 0) ticks.push(new Date(t.getTime()));
        t.setUTCMonth(t.getUTCMonth() + 1);
      }
      return { ticks, format: (d) => `${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}` };
    }
    const step = size * count;
    let t = Math.ceil(range.start.getTime() / step) * step;
    if (step === 7 * DAY) { // Mondays
      t = dayStart(range.start).getTime();
      while (new Date(t).getUTCDay() !== 1 || t < range.start.getTime()) t += DAY;
    }
    for (; t < range.end.getTime(); t += step) ticks.push(new Date(t));
    const format = step >= DAY ? dayLabel : (d) => (midnight(d) ? dayLabel(d) : clock(d));
    return { ticks, format };
  }
  return { ticks: [], format: dayLabel };
}

function timeToX(t) {
  const { left, slot } = state.geometry;
  const buckets = state.buckets;
  if (!buckets.length || t <= buckets[0].start) return left;
  if (t >= buckets[buckets.length - 1].end) return left + buckets.length * slot;
  let lo = 0, hi = buckets.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (buckets[mid].start <= t) lo = mid; else hi = mid - 1;
  }
  const b = buckets[lo];
  const fraction = Math.min(1, Math.max(0, (t - b.start) / (b.end - b.start)));
  return left + (lo + fraction) * slot;
}

function drawChart() {
  const chart = $("chart");
  chart.replaceChildren();
  const width = Math.max(240, Math.floor($("chart-wrap").clientWidth));
  const narrow = width < 600;
  const height = narrow ? 200 : 260;
  const buckets = state.buckets;
  const peak = Math.max(1, ...buckets.map((b) => b.total));
  const step = niceStep(peak, narrow ? 4 : 5);
  const top = Math.ceil(peak / step) * step;
  const left = 14 + 7 * fmt(top).length, right = 12, topPad = 10, bottom = 24;
  const plot = { w: width - left - right, h: height - topPad - bottom };
  const slot = plot.w / Math.max(1, buckets.length);
  state.geometry = { left, right: left + plot.w, top: topPad, height, width, slot, plotH: plot.h };
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.setAttribute("width", String(width));
  chart.setAttribute("height", String(height));
  const y = (v) => topPad + plot.h - (v / top) * plot.h;

  const grid = svg("g", { class: "grid" });
  for (let v = 0; v <= top; v += step) {
    grid.append(svg("line", { x1: left, x2: left + plot.w, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = fmt(v);
    grid.append(label);
  }
  chart.append(grid);

  const bars = svg("g", { class: "bars" });
  const gap = slot > 5 ? 1 : 0;
  buckets.forEach((bucket, i) => {
    const group = svg("g", { "data-bucket": i, "data-label": bucket.label, "data-total": bucket.total });
    let base = y(0);
    bucket.counts.forEach((count, k) => {
      if (!count) return;
      const h = (count / top) * plot.h;
      base -= h;
      group.append(svg("rect", { x: left + i * slot, y: base, width: Math.max(1, slot - gap), height: h,
        fill: state.layers[k].color }));
    });
    bars.append(group);
  });
  chart.append(bars);

  const axis = svg("g", { class: "x-axis" });
  axis.append(svg("line", { x1: left, x2: left + plot.w, y1: y(0), y2: y(0), class: "baseline" }));
  const { ticks, format } = timeTicks(state.range, Math.max(2, Math.floor(plot.w / (narrow ? 64 : 84))));
  // A tick of a day or longer bucket labels the bucket: centred under its bar.
  const centre = ["day", "week", "month"].includes(state.unit) ? slot / 2 : 0;
  for (const t of ticks) {
    const x = timeToX(t) + centre;
    axis.append(svg("line", { x1: x, x2: x, y1: y(0), y2: y(0) + 4, class: "tick" }));
    const anchor = x - left < 24 ? "start" : left + plot.w - x < 24 ? "end" : "middle";
    const label = svg("text", { x, y: height - 6, class: "axis", "text-anchor": anchor });
    label.textContent = format(t);
    axis.append(label);
  }
  chart.append(axis);
  chart.append(svg("rect", { id: "hover-band", class: "hover", x: 0, y: topPad, width: 0, height: plot.h, visibility: "hidden" }));
  chart.append(svg("rect", { id: "selection", class: "sel", x: 0, y: topPad, width: 0, height: plot.h, visibility: "hidden" }));
  drawLegend();
  drawSelection();
  drawHover();
  $("range-text").textContent = `${spanText(state.range)} (project time, ${(state.project && state.project.timezone) || "UTC"})`;
}

function drawLegend() {
  const legend = $("legend");
  legend.replaceChildren();
  for (const layer of state.layers) {
    const item = el("li");
    const swatch = el("span", undefined, "swatch");
    swatch.style.background = layer.color;
    item.append(swatch, el("span", layer.name));
    legend.append(item);
  }
}

function bucketAt(clientX) {
  const box = $("chart").getBoundingClientRect();
  const x = clientX - box.left;
  const i = Math.floor((x - state.geometry.left) / state.geometry.slot);
  return Math.max(0, Math.min(state.buckets.length - 1, i));
}

function drawSelection() {
  const rect = $("selection");
  if (!rect || !state.geometry) return;
  const g = state.geometry;
  let x1, x2;
  if (state.drag) {
    const [a, b] = [Math.min(state.drag.a, state.drag.b), Math.max(state.drag.a, state.drag.b)];
    x1 = g.left + a * g.slot;
    x2 = g.left + (b + 1) * g.slot;
  } else if (state.sel) {
    x1 = timeToX(state.sel.start);
    x2 = timeToX(state.sel.end);
  }
  if (x1 === undefined || x2 <= g.left || x1 >= g.right || (x1 === x2 && !state.drag)) {
    rect.setAttribute("visibility", "hidden");
    return;
  }
  const width = Math.max(2, x2 - x1);
  rect.setAttribute("x", String(Math.max(g.left, x1 - (width === 2 ? 1 : 0))));
  rect.setAttribute("width", String(width));
  rect.setAttribute("visibility", "visible");
}

function drawHover() {
  const band = $("hover-band");
  const readout = $("readout");
  const i = state.hover;
  if (!band || i === null || i === undefined || !state.buckets[i]) {
    if (band) band.setAttribute("visibility", "hidden");
    readout.hidden = true;
    return;
  }
  const g = state.geometry;
  const bucket = state.buckets[i];
  band.setAttribute("x", String(g.left + i * g.slot));
  band.setAttribute("width", String(Math.max(2, g.slot)));
  band.setAttribute("visibility", "visible");
  readout.replaceChildren(el("strong", bucketText(bucket, state.unit)), el("div", `${fmt(bucket.total)} events`, "total"));
  const rows = bucket.counts.map((count, k) => [count, k]).filter(([count]) => count > 0)
    .sort((a, b) => b[0] - a[0]).slice(0, 6);
  for (const [count, k] of rows) {
    const line = el("div", undefined, "line");
    const swatch = el("span", undefined, "swatch");
    swatch.style.background = state.layers[k].color;
    line.append(swatch, el("span", state.layers[k].name, "name"), el("span", fmt(count), "count"));
    readout.append(line);
  }
  readout.hidden = false;
  const x = g.left + (i + 0.5) * g.slot;
  const room = g.width - x;
  readout.style.left = room > readout.offsetWidth + 16 ? `${x + 12}px` : `${Math.max(0, x - readout.offsetWidth - 12)}px`;
  readout.style.top = "8px";
}

function pointerDown(event) {
  if (!state.buckets.length || event.button !== 0) return;
  const i = bucketAt(event.clientX);
  state.drag = { a: i, b: i };
  $("chart").setPointerCapture(event.pointerId);
  drawSelection();
}

function pointerMove(event) {
  if (!state.buckets.length) return;
  const i = bucketAt(event.clientX);
  state.hover = i;
  drawHover();
  if (state.drag) {
    state.drag.b = i;
    drawSelection();
  }
}

function pointerUp() {
  if (!state.drag) return;
  const [a, b] = [Math.min(state.drag.a, state.drag.b), Math.max(state.drag.a, state.drag.b)];
  state.drag = null;
  selectBuckets(a, b);
}

function pointerLeave() {
  if (state.drag) return;
  state.hover = null;
  drawHover();
}

function chartKey(event) {
  const n = state.buckets.length;
  if (!n) return;
  if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    const current = state.hover === null ? (event.key === "ArrowLeft" ? n : -1) : state.hover;
    state.hover = Math.max(0, Math.min(n - 1, current + (event.key === "ArrowLeft" ? -1 : 1)));
    drawHover();
    event.preventDefault();
  } else if ((event.key === "Enter" || event.key === " ") && state.hover !== null) {
    selectBuckets(state.hover, state.hover);
    event.preventDefault();
  } else if (event.key === "Escape") {
    setSelection(null);
  }
}

function selectBuckets(a, b) {
  setSelection({ start: state.buckets[a].start, end: state.buckets[b].end });
}

function setSelection(sel) {
  state.sel = sel;
  drawSelection();
  refreshPanels();
}

function showWindow() {
  $("window-text").textContent = state.sel
    ? `Selection: ${spanText(state.sel)} (project time)`
    : "Selection: the whole range";
  $("clear-window").hidden = !state.sel;
}

// ---- zoom ---------------------------------------------------------------------------------------

function snapRange(start, end) {
  const span = end - start;
  const grain = span >= 2 * DAY ? DAY : span >= 2 * HOUR ? HOUR : MINUTE;
  const s = Math.floor(start / grain) * grain;
  const e = Math.ceil(end / grain) * grain;
  const limit = addDays(projectToday(), 1).getTime();
  const shift = Math.max(0, e - Math.max(limit, s + grain));
  return { start: new Date(s - shift), end: new Date(e - shift) };
}

function zoomIn() {
  if (state.sel && (state.sel.start > state.range.start || state.sel.end < state.range.end)) {
    setRange({ start: state.sel.start, end: state.sel.end });
    return;
  }
  const span = state.range.end - state.range.start;
  if (span <= 10 * MINUTE) return;
  const centre = (state.range.start.getTime() + state.range.end.getTime()) / 2;
  setRange(snapRange(centre - span / 8, centre + span / 8));
}

function zoomOut() {
  const span = state.range.end - state.range.start;
  const focus = state.sel || state.range;
  const centre = (focus.start.getTime() + focus.end.getTime()) / 2;
  setRange(snapRange(centre - span * 2, centre + span * 2));
}

function setRange(range) {
  state.range = range;
  if (state.sel && (state.sel.end <= range.start || state.sel.start >= range.end)) state.sel = null;
  refreshAll(true);
}

// ---- top users and values -----------------------------------------------------------------------

async function topOf(on, params, options) {
  const body = await api(SEGMENTATION, { ...params, on, unit: "month", limit: TOP_N }, options);
  const rows = Object.entries(body.data.values).map(([value, counts]) =>
    [value, Object.values(counts).reduce((s, n) => s + n, 0)]);
  return rows.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

// Totals by parameters, shared by the panels of one refresh.
function totalOf(cache, params, options) {
  const key = JSON.stringify(params);
  if (!cache.has(key)) {
    cache.set(key, api(SEGMENTATION, { ...params, on: ALL_EVENTS, unit: "month", limit: 1 }, options).then((body) =>
      Object.values(body.data.values).reduce((sum, counts) => sum + Object.values(counts).reduce((s, n) => s + n, 0), 0)));
  }
  return cache.get(key);
}

function filterOf(prop, exclude) {
  return state.filters.find((f) => f.prop === prop && f.exclude === exclude);
}

function picked(prop) {
  const filter = filterOf(prop, false);
  return filter ? filter.values : [];
}

function toggleValue(prop, value, exclude) {
  let filter = filterOf(prop, exclude);
  if (!filter) {
    filter = { prop, exclude, values: [] };
    state.filters.push(filter);
  }
  const at = filter.values.indexOf(value);
  if (at >= 0) filter.values.splice(at, 1);
  else filter.values.push(value);
  if (exclude) { // an excluded value is no longer picked
    const include = filterOf(prop, false);
    if (include && include.values.includes(value)) include.values.splice(include.values.indexOf(value), 1);
  }
  state.filters = state.filters.filter((f) => f.values.length);
  refreshAll();
}

function fillTop(kind, prop, rows, total) {
  const table = $(kind === "users" ? "top-users" : "top-values");
  const body = table.tBodies[0];
  body.replaceChildren();
  const chosen = picked(prop);
  const shown = new Set(rows.map(([value]) => value));
  const all = [...rows, ...chosen.filter((v) => !shown.has(v)).map((v) => [v, null])];
  all.forEach(([value, count]) => {
    const row = el("tr");
    const isPicked = chosen.includes(value);
    if (isPicked) row.className = "picked";
    const pick = el("td", undefined, "pick");
    const box = el("input");
    box.type = "checkbox";
    box.checked = isPicked;
    box.setAttribute("aria-label", `keep only events where ${prop} is ${value}`);
    box.addEventListener("change", () => toggleValue(prop, value, false));
    pick.append(box);
    const cell = el("td", undefined, "value-cell");
    if (kind === "users") {
      cell.append(button(value, "value", () => openUser(value), "open this user's timeline and profile"));
    } else {
      cell.append(button(value, "value", () => toggleValue(prop, value, false), "keep only events with this value"));
    }
    const share = total && count !== null ? `${((100 * count) / total).toFixed(1)}%` : "";
    const ex = el("td", undefined, "ex");
    ex.append(button("⊘", "exclude", () => toggleValue(prop, value, true), `exclude ${prop} ${value}`));
    row.append(pick, cell, el("td", count === null ? "–" : fmt(count), "num"), el("td", share, "num"), ex);
    body.append(row);
  });
}

async function loadUsers(signal, onWait, totals) {
  const params = queryParams(selectionWindow(), "distinct_id");
  const options = { signal, onWait };
  const [total, rows] = await Promise.all([totalOf(totals, params, options), topOf(onProperty("distinct_id"), params, options)]);
  signal.throwIfAborted();
  fillTop("users", "distinct_id", rows, total);
  return rows.length ? null : { empty: "No users in this selection." };
}

async function loadValues(signal, onWait, totals) {
  const property = state.prop.trim();
  $("top-values").tBodies[0].replaceChildren();
  if (!property) return { empty: "Type a property name above." };
  const params = queryParams(selectionWindow(), property);
  const options = { signal, onWait };
  const [total, rows] = await Promise.all([totalOf(totals, params, options), topOf(onProperty(property), params, options)]);
  signal.throwIfAborted();
  fillTop("values", property, rows, total);
  if (rows.length) return null;
  return { empty: `No event in this selection has a string, number or boolean "${property}"` +
    " (lists and objects are not counted)." };
}

async function loadTotal(signal, onWait, totals) {
  const params = queryParams(selectionWindow());
  const total = await totalOf(totals, params, { signal, onWait });
  signal.throwIfAborted();
  $("total-line").textContent = `${fmt(total)} events in the ${state.sel ? "selection" : "range"}`;
}

// ---- events: the selection's, and one user's timeline ------------------------------------------

function eventTime(seconds) {
  return typeof seconds === "number" ? new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ") : "?";
}

function eventItem(row, withUser) {
  const props = row.properties || {};
  const item = el("li");
  const details = el("details");
  const summary = el("summary");
  summary.append(el("time", eventTime(props.time)), " ", el("span", String(row.event), "name"));
  if (withUser && props.distinct_id !== undefined) summary.append(" ", el("span", String(props.distinct_id), "who"));
  if (!withUser) {
    const detail = ["product_name", "query", "coupon", "utm_campaign", "$current_url"].find((k) => props[k] !== undefined);
    if (detail) summary.append(" ", el("span", `${detail}: ${String(props[detail])}`, "detail"));
    if (props.$distinct_id_before_identity !== undefined) {
      summary.append(" ", el("span", `sent as ${String(props.$distinct_id_before_identity)}`, "before"));
    }
  }
  details.append(summary, el("pre", JSON.stringify(row, null, 2)));
  item.append(details);
  return item;
}

async function loadEvents(signal, onWait, reset) {
  const query = { ...queryParams(selectionWindow()), order: state.order, limit: PAGE };
  if (!reset && state.cursor) query.cursor = state.cursor;
  const body = await api("/api/query/events/page", query, { signal, onWait });
  signal.throwIfAborted();
  const list = $("events");
  if (reset) list.replaceChildren();
  for (const row of body.results) list.append(eventItem(row, true));
  state.cursor = body.next_cursor;
  $("more").hidden = !body.next_cursor;
  return list.children.length ? null : { empty: "No events in this selection." };
}

function openUser(id) {
  state.user = id;
  showUser(true);
}

function showUser(scroll) {
  const open = state.user !== null;
  $("user").hidden = !open;
  writeUrl();
  if (!open) return;
  $("user-id").textContent = state.user;
  $("timeline-range").textContent = `(${spanText(state.range)})`;
  run("profile", loadProfile);
  run("timeline", (signal, onWait) => loadTimeline(signal, onWait, true));
  if (scroll) $("user").scrollIntoView({ block: "start" });
}

async function loadProfile(signal, onWait) {
  const id = state.user;
  const body = await api("/api/2.0/engage", { distinct_id: id }, { signal, onWait });
  signal.throwIfAborted();
  const table = $("profile").tBodies[0];
  table.replaceChildren();
  const found = body.results.find((r) => r.$distinct_id === id);
  if (!found) return { empty: "No profile: nothing was sent to /engage for this id." };
  const first = ["$name", "$email"];
  const rank = (key) => (first.includes(key) ? first.indexOf(key) : first.length);
  const keys = Object.keys(found.$properties).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  for (const key of keys) {
    const value = found.$properties[key];
    const row = el("tr");
    row.append(el("th", key), el("td", typeof value === "string" ? value : JSON.stringify(value)));
    table.append(row);
  }
  return null;
}

async function loadTimeline(signal, onWait, reset) {
  const range = state.range;
  const query = {
    from_date: isoDay(range.start),
    to_date: isoDay(new Date(range.end.getTime() - 1)),
    where: `string(properties["distinct_id"]) == ${JSON.stringify(state.user)}` +
      (wholeDays(range) ? "" : ` and ${timeClause(range)}`),
    order: "newest",
    limit: PAGE,
  };
  if (!reset && state.userCursor) query.cursor = state.userCursor;
  const body = await api("/api/query/events/page", query, { signal, onWait });
  signal.throwIfAborted();
  const list = $("timeline");
  if (reset) list.replaceChildren();
  for (const row of body.results) list.append(eventItem(row, false));
  state.userCursor = body.next_cursor;
  $("timeline-more").hidden = !body.next_cursor;
  return list.children.length ? null : { empty: "No events of this user in the range." };
}

// ---- export: where, download and curl -----------------------------------------------------------

function shellQuote(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }

function curlCommand() {
  const all = withProject({ ...queryParams(selectionWindow()) });
  const user = state.auth.kind === "account" ? '"$RAWEVENTS_USERNAME:$RAWEVENTS_SECRET"' : '"$RAWEVENTS_SECRET:"';
  const lines = [`curl --fail --compressed -u ${user} --get ${shellQuote(location.origin + "/api/2.0/export")}`];
  for (const [name, value] of Object.entries(all)) lines.push(`  --data-urlencode ${shellQuote(`${name}=${value}`)}`);
  return lines.join(" \\\n");
}

function showExport() {
  const params = queryParams(selectionWindow());
  $("where-effective").textContent = params.where || "";
  $("effective").hidden = !params.where || params.where === state.where.trim();
  $("curl").textContent = curlCommand();
}

async function download() {
  const params = queryParams(selectionWindow());
  status("Downloading the export…");
  try {
    const blob = await api("/api/2.0/export", params, { raw: true, onWait: (s) => status(`The server is busy: retrying in ${s} s…`) });
    const link = $("download-link");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = `export-${params.from_date}-${params.to_date}.jsonl`;
    link.hidden = false;
    link.click();
    status(`Downloaded ${fmt(blob.size)} bytes.`);
  } catch (error) {
    status(`Download failed: ${error.message}`);
  }
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

// ---- filters shown as chips ---------------------------------------------------------------------

function showChips() {
  const list = $("chips");
  list.replaceChildren();
  for (const filter of state.filters) {
    const item = el("li", undefined, filter.exclude ? "chip exclude" : "chip");
    const values = filter.values.length > 3
      ? `any of ${fmt(filter.values.length)}: ${filter.values.slice(0, 3).join(", ")}, …`
      : filter.values.join(" or ");
    item.append(el("span", filter.prop, "prop"), ` ${filter.exclude ? "is not" : "is"} `, el("span", values, "values"));
    item.append(button("×", "remove", () => {
      state.filters = state.filters.filter((f) => f !== filter);
      refreshAll();
    }, `remove the filter on ${filter.prop}`));
    list.append(item);
  }
  $("chips-row").hidden = !state.filters.length;
}

function editFiltersAsText() {
  const parts = state.filters.map(filterClause);
  const user = state.where.trim();
  if (user) parts.unshift(parts.length ? `(${user})` : user);
  state.where = parts.join(" and ");
  state.filters = [];
  $("where").value = state.where;
  refreshAll();
}

// ---- the state in the URL (#…): reload and share ------------------------------------------------

function spanParam(win) {
  if (wholeDays(win)) return `${isoDay(win.start)}..${isoDay(addDays(win.end, -1))}`;
  return `${isoMinute(win.start)}..${isoMinute(win.end)}`;
}

function parseSpan(text) {
  const match = /^(\d{4}-\d\d-\d\d)(T\d\d:\d\d)?\.\.(\d{4}-\d\d-\d\d)(T\d\d:\d\d)?$/.exec(text || "");
  if (!match) return null;
  const start = new Date(`${match[1]}${match[2] || "T00:00"}:00Z`);
  let end = new Date(`${match[3]}${match[4] || "T00:00"}:00Z`);
  if (!match[4]) end = addDays(end, 1);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start) return null;
  return { start, end };
}

function writeUrl(push) {
  if (!state.range) return;
  const p = new URLSearchParams();
  p.set("range", spanParam(state.range));
  if (state.unitChoice !== "auto") p.set("unit", state.unitChoice);
  if (state.sel) p.set("sel", spanParam(state.sel));
  if (state.event) p.set("event", state.event);
  if (state.where.trim()) p.set("where", state.where);
  if (state.filters.length) p.set("filters", JSON.stringify(state.filters.map((f) => [f.prop, f.exclude ? "not" : "is", f.values])));
  if (state.prop !== DEFAULT_PROPERTY) p.set("prop", state.prop);
  if (state.order !== "newest") p.set("order", state.order);
  if (state.user !== null) p.set("user", state.user);
  const hash = "#" + p.toString();
  if (location.hash === hash) return;
  if (push) history.pushState(null, "", hash);
  else history.replaceState(null, "", hash);
}

function readUrl() {
  const p = new URLSearchParams(location.hash.slice(1));
  state.range = parseSpan(p.get("range")) || state.range || null;
  state.sel = parseSpan(p.get("sel"));
  const unit = p.get("unit");
  state.unitChoice = ["minute", "hour", "day", "week", "month"].includes(unit) ? unit : "auto";
  state.event = p.get("event") || "";
  state.where = p.get("where") || "";
  state.filters = [];
  try {
    const filters = JSON.parse(p.get("filters") || "[]");
    for (const [prop, mode, values] of filters) {
      if (typeof prop === "string" && Array.isArray(values) && values.length && values.every((v) => typeof v === "string")) {
        state.filters.push({ prop, exclude: mode === "not", values });
      }
    }
  } catch (_) { /* a hand-edited URL: no filters */ }
  state.prop = p.get("prop") || DEFAULT_PROPERTY;
  state.order = p.get("order") === "oldest" ? "oldest" : "newest";
  state.user = p.has("user") ? p.get("user") : null;
}

function showInputs() {
  $("from-date").value = isoDay(state.range.start);
  $("to-date").value = isoDay(new Date(state.range.end.getTime() - 1));
  $("event").value = state.event;
  $("where").value = state.where;
  $("property").value = state.prop;
  $("order").value = state.order;
  $("unit-choice").value = state.unitChoice;
}

// ---- flow ---------------------------------------------------------------------------------------

function refreshAll(push) {
  $("where-error").hidden = true;
  writeUrl(push);
  showInputs();
  run("chart", loadChart);
  refreshPanels();
  eventNames();
  if (state.user !== null) showUser(false);
}

function refreshPanels() {
  $("where-error").hidden = true;
  writeUrl();
  showWindow();
  showChips();
  showExport();
  const totals = new Map();
  state.cursor = null;
  run("total", (signal, onWait) => loadTotal(signal, onWait, totals));
  run("users", (signal, onWait) => loadUsers(signal, onWait, totals));
  run("values", (signal, onWait) => loadValues(signal, onWait, totals));
  run("events", (signal, onWait) => loadEvents(signal, onWait, true));
}

function applyForm(event) {
  event.preventDefault();
  const from = $("from-date").value, to = $("to-date").value;
  if (from && to && from <= to) {
    const range = { start: new Date(`${from}T00:00:00Z`), end: addDays(new Date(`${to}T00:00:00Z`), 1) };
    if (range.start.getTime() !== state.range.start.getTime() || range.end.getTime() !== state.range.end.getTime()) {
      state.range = range;
      if (state.sel && (state.sel.start < range.start || state.sel.end > range.end)) state.sel = null;
    }
  }
  state.event = $("event").value.trim();
  state.where = $("where").value;
  refreshAll(true);
}

async function loadPropertyNames() {
  try {
    const props = await api("/api/query/events/properties/top", { limit: 200 });
    const list = $("property-names");
    list.replaceChildren(...Object.keys(props).map((name) => { const o = el("option"); o.value = name; return o; }));
  } catch (_) { /* suggestions only */ }
}

// The event names of the range (for suggestions), asked once per range of days.
let namesAsked = { key: null, promise: null };

function eventNames() {
  const range = state.range;
  const params = { from_date: isoDay(range.start), to_date: isoDay(new Date(range.end - 1)), unit: "month", limit: 200 };
  const key = JSON.stringify(params);
  if (namesAsked.key !== key) {
    const promise = api(SEGMENTATION, params).then((body) => {
      if (namesAsked.promise !== promise) return;
      state.eventNames = Object.keys(body.data.values);
      $("event-names").replaceChildren(...state.eventNames.map((name) => { const o = el("option"); o.value = name; return o; }));
    }).catch(() => { /* suggestions only */ });
    namesAsked = { key, promise };
  }
  return namesAsked.promise;
}

async function showApp() {
  const auth = state.auth;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = auth.kind === "account"
    ? `service account ${auth.username}, project ${auth.projectId}` : `project secret${auth.projectId ? `, project ${auth.projectId}` : ""}`;
  if (state.project) $("who").textContent += ` · ${state.project.name} (${state.project.timezone})`;
  readUrl();
  if (!state.range) state.range = defaultRange();
  refreshAll();
  loadPropertyNames(); // suggestions: asked after the panels' answers
}

async function fetchProject() {
  state.project = await api("/api/rawevents/project", {});
}

async function signIn(event) {
  event.preventDefault();
  const kind = document.querySelector("input[name=kind]:checked").value;
  const auth = kind === "account"
    ? { kind, username: $("sa-user").value.trim(), secret: $("sa-secret").value, projectId: $("project-id").value.trim() }
    : { kind, secret: $("secret").value.trim(), projectId: $("project-id").value.trim() };
  state.auth = auth;
  $("signin-error").textContent = "";
  try {
    await fetchProject();
  } catch (error) {
    state.auth = null;
    $("signin-error").textContent = error.message;
    return;
  }
  sessionStorage.setItem(AUTH_KEY, JSON.stringify(auth));
  $("secret").value = "";
  $("sa-secret").value = "";
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

let resizeTimer = null;
function onResize() {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (state.buckets.length && !$("app").hidden) drawChart(); }, 100);
}

function init() {
  $("signin-form").addEventListener("submit", signIn);
  for (const radio of document.querySelectorAll("input[name=kind]")) radio.addEventListener("change", toggleKind);
  $("signout").addEventListener("click", signOut);
  $("filters").addEventListener("submit", applyForm);
  $("where").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) applyForm(event);
  });
  const chart = $("chart");
  chart.addEventListener("pointerdown", pointerDown);
  chart.addEventListener("pointermove", pointerMove);
  chart.addEventListener("pointerup", pointerUp);
  chart.addEventListener("pointerleave", pointerLeave);
  chart.addEventListener("keydown", chartKey);
  $("clear-window").addEventListener("click", () => setSelection(null));
  $("zoom-in").addEventListener("click", zoomIn);
  $("zoom-out").addEventListener("click", zoomOut);
  $("reset-range").addEventListener("click", () => setRange(defaultRange()));
  $("unit-choice").addEventListener("change", () => { state.unitChoice = $("unit-choice").value; refreshAll(); });
  $("property").addEventListener("change", () => {
    state.prop = $("property").value.trim();
    writeUrl();
    run("values", (signal, onWait) => loadValues(signal, onWait, new Map()));
  });
  $("edit-filters").addEventListener("click", editFiltersAsText);
  $("order").addEventListener("change", () => {
    state.order = $("order").value;
    writeUrl();
    run("events", (signal, onWait) => loadEvents(signal, onWait, true));
  });
  $("more").addEventListener("click", () => run("events", (signal, onWait) => loadEvents(signal, onWait, false)));
  $("timeline-more").addEventListener("click", () =>
    run("timeline", (signal, onWait) => loadTimeline(signal, onWait, false)));
  $("user-close").addEventListener("click", () => { state.user = null; showUser(false); });
  $("user-filter").addEventListener("click", () => {
    if (!picked("distinct_id").includes(state.user)) toggleValue("distinct_id", state.user, false);
  });
  $("download").addEventListener("click", download);
  $("copy-curl").addEventListener("click", copyCurl);
  window.addEventListener("resize", onResize);
  window.addEventListener("popstate", () => { if (!$("app").hidden) { readUrl(); refreshAll(); } });
  state.auth = loadAuth();
  if (state.auth) {
    fetchProject().then(showApp, (error) => {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        state.auth = null;
        sessionStorage.removeItem(AUTH_KEY);
        $("signin-error").textContent = error.message;
      } else {
        showApp();
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", init);
