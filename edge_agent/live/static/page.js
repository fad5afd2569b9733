// The live bench page: reads the agent's pushed stream (/live/stream, Server-Sent Events over fetch, so
// that the control token can go in an Authorization header and never in a URL) and hands what it says
// to Plotly. The agent has already decimated the traces (min/max per bucket); this script only keeps
// the buckets of the chosen span and says what to draw.
"use strict";

const TOKEN_KEY = "edge-agent.control-token";
const SEVERITY_FILL = { high: "rgba(198,40,40,", medium: "rgba(239,108,0,", low: "rgba(249,168,37," };
const OUTCOME_FILL = {
  passed: "#66bb6a", passed_with_exception: "#ffa726", failed: "#ef5350", running: "#42a5f5",
};
const TRACE_COLOR = "#1565c0";

const page = {
  span: 60, buckets: 600, now: 0,
  traces: {}, // source -> channel -> {first, lo: [], hi: []} (bucket numbers first, first+1, ...)
  base: {}, dx: {}, // source -> x (ms) of bucket 0, and ms per bucket
  state: {}, figure: null, plots: {}, // "source/channel" -> {source, channel, axis}: its row's y axis
  bytes: 0, events: 0, connected: false, controller: null, retryDelay: 500, pending: false,
};
window.benchPage = page; // for people with the console open, and for the browser tests

const $ = (id) => document.getElementById(id);

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

function setStatus(text, cls) {
  const el = $("connection");
  el.textContent = text;
  el.className = "status " + (cls || "");
}

function askToken(error) {
  page.connected = false;
  $("main").hidden = true;
  $("token-form").hidden = false;
  $("token-error").textContent = error || "";
  setStatus("token needed", "bad");
  $("token").focus();
}

// -- the stream ---------------------------------------------------------------------------------------

async function connect() {
  if (page.controller) page.controller.abort();
  const controller = (page.controller = new AbortController());
  setStatus("connecting…");
  let response;
  try {
    response = await fetch(`/live/stream?span=${page.span}`, {
      headers: authHeaders(), cache: "no-store", signal: controller.signal,
    });
  } catch (err) {
    if (!controller.signal.aborted) retry("agent unreachable");
    return;
  }
  if (response.status === 401) {
    askToken(sessionStorage.getItem(TOKEN_KEY) ? "the agent refused that token" : "");
    return;
  }
  if (!response.ok) {
    retry(`the agent answered ${response.status}`);
    return;
  }
  $("token-form").hidden = true;
  $("main").hidden = false;
  page.traces = {};
  page.state = {};
  page.connected = true;
  page.retryDelay = 500;
  setStatus("live", "good");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      page.bytes += value.byteLength;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handle(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  page.connected = false;
  if (!controller.signal.aborted) retry("stream ended");
}

function retry(why) {
  page.connected = false;
  page.retryDelay = Math.min(page.retryDelay * 2, 10000);
  setStatus(`${why}; retrying in ${Math.round(page.retryDelay / 1000)} s`, "bad");
  setTimeout(connect, page.retryDelay);
}

function handle(block) {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  const message = JSON.parse(data);
  page.events += 1;
  if (event === "hello") {
    $("bench").textContent = `edge-agent · ${message.bench}`;
    document.title = `${message.bench} · edge-agent`;
    page.buckets = message.levels[message.level].buckets;
  } else if (event === "traces") {
    page.now = message.now;
    merge(message.sources);
  } else if (event === "state") {
    Object.assign(page.state, message);
  }
  schedule();
}

// Buckets from `first` on replace what the page had from there (the running bucket grew).
function merge(sources) {
  for (const [source, doc] of Object.entries(sources)) {
    page.base[source] = doc.x0 - doc.first * doc.dx;
    page.dx[source] = doc.dx;
    const channels = (page.traces[source] ||= {});
    for (const channel of Object.keys(doc.lo)) {
      let trace = channels[channel];
      if (!trace || doc.first < trace.first || doc.first > trace.first + trace.lo.length) {
        trace = channels[channel] = { first: doc.first, lo: [], hi: [] };
      }
      const keep = doc.first - trace.first;
      trace.lo.length = keep;
      trace.hi.length = keep;
      trace.lo.push(...doc.lo[channel]);
      trace.hi.push(...doc.hi[channel]);
      const extra = trace.lo.length - page.buckets;
      if (extra > 0) {
        trace.lo.splice(0, extra);
        trace.hi.splice(0, extra);
        trace.first += extra;
      }
    }
  }
}

function schedule() {
  if (page.pending) return;
  page.pending = true;
  requestAnimationFrame(() => {
    page.pending = false;
    render();
  });
}

// -- drawing --------------------------------------------------------------------------------------------
// One figure: a row per channel (every source's), the step timeline at the bottom, one shared time axis.
// One Plotly.react per update costs the browser about half of what a plot per channel does.

const ROW_PX = 140;
const STEPS_PX = 70;

function render() {
  const range = [page.now - page.span * 1000, page.now];
  const rows = [];
  for (const [source, channels] of Object.entries(page.traces)) {
    for (const [channel, trace] of Object.entries(channels)) rows.push({ source, channel, trace });
  }
  if (rows.length) drawFigure(rows, range);
  fillTables();
}

function drawFigure(rows, range) {
  const several = Object.keys(page.traces).length > 1;
  const plotPx = rows.length * ROW_PX + STEPS_PX;
  const data = [];
  const shapes = [];
  const layout = {
    height: plotPx + 50, margin: { l: 90, r: 16, t: 10, b: 40 }, showlegend: false,
    xaxis: { type: "date", range, tickformat: "%H:%M:%S", anchor: `y${rows.length + 1}` },
  };
  page.plots = {};
  rows.forEach((row, index) => {
    const axis = index === 0 ? "y" : `y${index + 1}`;
    const top = 1 - (index * ROW_PX) / plotPx;
    layout[index === 0 ? "yaxis" : `yaxis${index + 1}`] = {
      domain: [top - (ROW_PX - 14) / plotPx, top], anchor: "x", zeroline: false,
      title: { text: several ? `${row.source}/${row.channel}` : row.channel, font: { size: 11 }, standoff: 10 },
    };
    page.plots[`${row.source}/${row.channel}`] = { source: row.source, channel: row.channel, axis };
    data.push(...traces(row, axis), limitsInView(row.source, row.channel, axis, range));
    shapes.push(...bandShapes(row.source, row.channel, axis), ...markShapes(row.source, row.channel, axis));
  });
  const stepsAxis = `y${rows.length + 1}`;
  layout[`yaxis${rows.length + 1}`] = {
    domain: [0, (STEPS_PX - 10) / plotPx], anchor: "x", range: [0, 1], fixedrange: true,
    showticklabels: false, showgrid: false, zeroline: false, title: { text: "steps", font: { size: 11 } },
  };
  // One invisible point puts the step row on the shared time axis.
  data.push({ x: [range[1]], y: [0], yaxis: stepsAxis, mode: "markers", marker: { opacity: 0 }, hoverinfo: "skip" });
  shapes.push(...stepShapes(stepsAxis));
  layout.shapes = shapes;
  const div = $("figure");
  div.style.height = `${layout.height}px`;
  page.figure = div;
  Plotly.react(div, data, layout, { displaylogo: false, responsive: true });
}

// The envelope of a channel: the buckets' highs left to right, then their lows back, one closed shape
// per run of buckets ("toself" fills each gap-separated segment on its own). A run breaks where no
// sample came for clearly longer than the channel's usual spacing (a dropout, the bench silent), not
// at every empty bucket of a slow channel.
function traces(row, axis) {
  const { source, channel, trace } = row;
  const dx = page.dx[source];
  const base = page.base[source] + dx / 2;
  const present = [];
  trace.hi.forEach((v, i) => { if (v !== null) present.push(i); });
  const spacing = present.slice(1).map((k, j) => k - present[j]).sort((a, b) => a - b);
  const usual = spacing.length ? spacing[Math.floor(spacing.length / 2)] : 1;
  const gap = Math.max(3, 4 * usual);
  const x = [];
  const y = [];
  let run = [];
  const close = () => {
    if (!run.length) return;
    for (const i of run) { x.push(base + (trace.first + i) * dx); y.push(trace.hi[i]); }
    for (const i of run.slice().reverse()) { x.push(base + (trace.first + i) * dx); y.push(trace.lo[i]); }
    x.push(null);
    y.push(null);
    run = [];
  };
  for (const i of present) {
    if (run.length && i - run[run.length - 1] > gap) close();
    run.push(i);
  }
  close();
  return [{
    x, y, yaxis: axis, type: "scatter", mode: "lines", name: `${source}/${channel}`, fill: "toself",
    fillcolor: "rgba(21,101,192,0.35)", line: { width: 1, color: TRACE_COLOR }, hoverinfo: "x+y",
  }];
}

// Invisible points at the limits: the row's automatic y range then shows its limit lines, however far
// the values are from them.
function limitsInView(source, channel, axis, range) {
  const bands = ((page.state.bands || {})[source] || {})[channel] || [];
  const y = bands.flatMap((b) => [b.low, b.high]).filter((v) => v !== null);
  return {
    x: y.map(() => range[1]), y, yaxis: axis, mode: "markers", marker: { opacity: 0 }, hoverinfo: "skip",
    name: `${source}/${channel} limits`,
  };
}

function bandShapes(source, channel, axis) {
  const bands = ((page.state.bands || {})[source] || {})[channel] || [];
  const shapes = [];
  for (const band of bands) {
    if (band.kind === "baseline" && band.low !== null && band.high !== null) {
      shapes.push({
        type: "rect", name: "baseline", xref: "x domain", yref: axis, x0: 0, x1: 1, y0: band.low,
        y1: band.high, fillcolor: "rgba(46,125,50,0.10)", line: { width: 0 }, layer: "below",
        label: { text: "learned band", textposition: "top right", font: { size: 10, color: "#2e7d32" } },
      });
      continue;
    }
    for (const [side, value] of [["min", band.low], ["max", band.high]]) {
      if (value === null) continue;
      shapes.push({
        type: "line", name: `limit ${side}`, xref: "x domain", yref: axis, x0: 0, x1: 1, y0: value, y1: value,
        line: { color: "#c62828", width: 1, dash: "dash" },
        label: { text: `${side} ${value}`, textposition: "end", font: { size: 10, color: "#c62828" } },
      });
    }
  }
  return shapes;
}

function touches(mark, source, channel) {
  // "*" is a dropout of every channel; "" a lens anomaly: about the channels the lens reads (every
  // channel of the source when the page does not know them).
  if (mark.source !== source) return false;
  if (mark.channel === channel || mark.channel === "*") return true;
  if (mark.channel !== "") return false;
  const lens = page.state.lens;
  const read = lens && lens.source === source ? lens.channels : null;
  return !Array.isArray(read) || read.length === 0 || read.includes(channel);
}

function markShapes(source, channel, axis) {
  const marks = page.state.marks || { anomalies: [], incidents: [] };
  const yref = `${axis} domain`;
  const shapes = [];
  for (const a of marks.anomalies) {
    if (!touches(a, source, channel)) continue;
    const fill = SEVERITY_FILL[a.severity] || SEVERITY_FILL.medium;
    const what = a.kind === "lens" ? `lens ${a.label || ""}` : a.kind.replace("rule:", "");
    shapes.push({
      type: "rect", name: `anomaly:${a.id}`, xref: "x", yref, x0: a.x0,
      x1: a.x1 === null ? page.now : a.x1, y0: 0, y1: 0.84,
      fillcolor: fill + (a.open ? "0.30)" : "0.15)"), line: { width: a.open ? 1 : 0, color: fill + "0.9)" },
      layer: "below",
      label: {
        text: `${a.open ? "OPEN" : "closed"} ${what} (${a.severity})`, textposition: "top left",
        font: { size: 10 },
      },
    });
  }
  for (const i of marks.incidents) {
    if (!i.sources.includes(source) || (i.channels.length && !i.channels.includes(channel))) continue;
    shapes.push({
      type: "rect", name: `incident:${i.id}`, xref: "x", yref, x0: i.x0,
      x1: i.x1 === null ? page.now : i.x1, y0: 0.86, y1: 1,
      fillcolor: i.open ? "rgba(106,27,154,0.35)" : "rgba(106,27,154,0.15)", line: { width: 0 },
      label: {
        text: `incident ${i.open ? "open" : "closed"}: ${i.title.slice(0, 60)}`,
        textposition: "middle left", font: { size: 9 },
      },
    });
  }
  return shapes;
}

function stepShapes(axis) {
  const steps = page.state.steps;
  if (!steps) return [];
  const spans = steps.completed.map((s) => ({ ...s }));
  if (steps.running) spans.push({ ...steps.running, outcome: "running", x1: null });
  return spans.filter((s) => s.x0 !== null).map((s) => ({
    type: "rect", name: `step:${s.step}`, xref: "x", yref: `${axis} domain`, x0: s.x0,
    x1: s.x1 === null ? page.now : s.x1, y0: 0.1, y1: 0.9,
    fillcolor: OUTCOME_FILL[s.outcome] || "#bdbdbd", line: { width: 1, color: "#fff" },
    label: { text: `${s.step}: ${s.outcome}`, font: { size: 10 } },
  }));
}

// -- tables ---------------------------------------------------------------------------------------------

function cells(row, values) {
  for (const value of values) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined ? "" : String(value);
    row.appendChild(td);
  }
  return row;
}

function refill(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
}

function tr(values, cls, data) {
  const row = cells(document.createElement("tr"), values);
  if (cls) row.className = cls;
  Object.assign(row.dataset, data || {});
  return row;
}

const clock = (ms) => (ms === null || ms === undefined ? "" : new Date(ms).toLocaleTimeString());

function fillTables() {
  const s = page.state;
  if (s.steps) {
    const rows = s.steps.completed.map((c) =>
      tr([c.step, c.card, c.outcome, c.exception], c.outcome, { step: c.step, outcome: c.outcome }));
    if (s.steps.running) {
      rows.push(tr([s.steps.running.step, s.steps.running.card, "running", ""], "running",
        { step: s.steps.running.step, outcome: "running" }));
    }
    refill("steps-table", rows.reverse());
  }
  if (s.marks) {
    const incidents = s.marks.incidents.map((i) =>
      tr([i.open ? "incident, open" : "incident", i.title, `${i.sources.join(", ")}`, i.severity,
        clock(i.x0), clock(i.x1)], i.open ? "open" : "", { incident: i.id }));
    const anomalies = s.marks.anomalies.map((a) =>
      tr([a.open ? "open" : "closed", a.description + (a.label ? ` (${a.label})` : ""),
        `${a.channel || "lens"} on ${a.source}`, a.severity, clock(a.x0), clock(a.x1)],
        a.open ? "open" : "", { anomaly: a.id }));
    refill("anomalies-table", [...incidents.reverse(), ...anomalies.reverse()]);
  }
  if (s.lens !== undefined) fillLens(s.lens);
  if (s.atlas !== undefined) fillAtlas(s.atlas);
  if (s.tap && s.ports) {
    const ports = Object.entries(s.ports).map(([n, p]) => `${n} ${p.up ? "up" : "DOWN"} (${p.frames} frames)`);
    $("tap").textContent = `ports: ${ports.join("; ")} · page tap: ${s.tap.channels} channels,`
      + ` ${Math.round(s.tap.bytes / 1024)} KiB · received ${Math.round(page.bytes / 1024)} KiB`;
  }
}

function fillLens(lens) {
  const box = $("lens");
  if (lens === null) {
    box.textContent = "lens disabled in the config";
    $("lens-labels").replaceChildren();
    return;
  }
  box.textContent = `session ${lens.session_id || "none"} · ${lens.streaming ? "streaming" : "not streaming"}`
    + ` (${lens.component || "?"}) · windows sent ${lens.windows_sent}, dropped ${lens.windows_dropped}`
    + (lens.last_error ? ` · last error: ${lens.last_error}` : "");
  box.className = lens.streaming ? "good" : "bad";
  const items = lens.recent.slice().reverse().map((r) => {
    const li = document.createElement("li");
    li.textContent = `${clock(r.at)} ${r.label}${r.score === null ? "" : ` (${r.score})`}`;
    if (r.anomalous) li.className = "bad";
    return li;
  });
  $("lens-labels").replaceChildren(...items);
}

function fillAtlas(atlas) {
  const box = $("atlas");
  if (atlas === null) {
    box.textContent = "Atlas reporting disabled in the config";
    return;
  }
  const depth = atlas.depth || {};
  const waiting = (depth.pending || 0) + (depth.in_flight || 0);
  box.textContent = `session ${atlas.session_id || "(being created)"} · jobs waiting ${waiting}`
    + ` · failed ${depth.failed || 0}` + (atlas.blocked ? ` · BLOCKED: ${atlas.blocked.reason}` : "");
  box.className = atlas.blocked || depth.failed ? "bad" : "good";
  refill("issues-table", atlas.issues.map((i) =>
    tr([i.issue_id, i.title, i.via === "repeat" ? "joined (repeat)" : "filed"], "", { issue: i.issue_id })));
  refill("failures-table", atlas.failures.map((f) =>
    tr([`${f.kind} (${f.group})`, f.status, f.answer || f.reason], "bad")));
}

// -- start ----------------------------------------------------------------------------------------------

$("span").addEventListener("change", (event) => {
  page.span = Number(event.target.value);
  connect();
});
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  connect();
});
page.span = Number($("span").value);
connect();
