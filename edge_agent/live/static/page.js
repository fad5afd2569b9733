// The live bench page: reads the agent's pushed stream (/live/stream, Server-Sent Events over fetch, so
// that the control token can go in an Authorization header and never in a URL) and hands what it says
// to Plotly. The agent has already decimated the traces (min/max per bucket); this script only keeps
// the buckets of the chosen span and says what to draw. labels.js puts the figure's labels on it,
// tables.js fills the tables under it (both loaded before this script).
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
  figureLabels: null, labelsFollow: false, // the figure's labels (labels.js places them)
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
// One Plotly.react per update costs the browser about half of what a plot per channel does. The words
// on it (row names, marks, limits, steps) are not Plotly's: labels.js places them so none overlap.

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

// A block of `px` px from `top` (px from the figure's top): the strip for its name, then its plot.
function rowDomain(top, px, plotPx, below) {
  return [1 - (top + px - below) / plotPx, 1 - (top + HEAD_PX) / plotPx];
}

function drawFigure(rows, range) {
  const several = Object.keys(page.traces).length > 1;
  const plotPx = rows.length * ROW_PX + STEPS_PX;
  const data = [];
  const shapes = [];
  const labels = [];
  const layout = {
    height: plotPx + MARGIN.t + MARGIN.b, margin: MARGIN, showlegend: false,
    xaxis: { type: "date", range, tickformat: "%H:%M:%S", anchor: `y${rows.length + 1}` },
  };
  const figureRows = {};
  page.plots = {};
  rows.forEach((row, index) => {
    const axis = index === 0 ? "y" : `y${index + 1}`;
    const key = `${row.source}/${row.channel}`;
    const domain = rowDomain(index * ROW_PX, ROW_PX, plotPx, 6);
    layout[index === 0 ? "yaxis" : `yaxis${index + 1}`] = { domain, anchor: "x", zeroline: false };
    figureRows[key] = { domain, axis: index === 0 ? "yaxis" : `yaxis${index + 1}` };
    page.plots[key] = { source: row.source, channel: row.channel, axis };
    labels.push({ kind: "row", row: key, text: several ? key : row.channel });
    data.push(...traces(row, axis), limitsInView(row.source, row.channel, axis, range));
    shapes.push(...bandShapes(row.source, row.channel, axis, labels));
    shapes.push(...markShapes(row.source, row.channel, axis, labels));
  });
  const stepsAxis = `y${rows.length + 1}`;
  const stepsDomain = rowDomain(rows.length * ROW_PX, STEPS_PX, plotPx, 0);
  layout[`yaxis${rows.length + 1}`] = {
    domain: stepsDomain, anchor: "x", range: [0, 1], fixedrange: true,
    showticklabels: false, showgrid: false, zeroline: false,
  };
  figureRows.steps = { domain: stepsDomain, axis: `yaxis${rows.length + 1}` };
  labels.push({ kind: "row", row: "steps", text: "steps" });
  // One invisible point puts the step row on the shared time axis.
  data.push({ x: [range[1]], y: [0], yaxis: stepsAxis, mode: "markers", marker: { opacity: 0 }, hoverinfo: "skip" });
  shapes.push(...stepShapes(stepsAxis, labels));
  layout.shapes = shapes;
  const div = $("figure");
  div.style.height = `${layout.height}px`;
  page.figure = div;
  page.figureLabels = { labels, rows: figureRows, range };
  Plotly.react(div, data, layout, { displaylogo: false, responsive: true }).then(() => {
    if (!page.labelsFollow) {
      page.labelsFollow = true; // and after every redraw Plotly does itself (a resize)
      div.on("plotly_afterplot", () => placeLabels(div, page.figureLabels));
    }
    placeLabels(div, page.figureLabels);
  });
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

function bandShapes(source, channel, axis, labels) {
  const bands = ((page.state.bands || {})[source] || {})[channel] || [];
  const row = `${source}/${channel}`;
  const shapes = [];
  for (const band of bands) {
    if (band.kind === "baseline" && band.low !== null && band.high !== null) {
      shapes.push({
        type: "rect", name: "baseline", xref: "x domain", yref: axis, x0: 0, x1: 1, y0: band.low,
        y1: band.high, fillcolor: "rgba(46,125,50,0.10)", line: { width: 0 }, layer: "below",
      });
      labels.push({ kind: "band", row, name: "baseline", text: "learned band", y: band.high });
      continue;
    }
    for (const [side, value] of [["min", band.low], ["max", band.high]]) {
      if (value === null) continue;
      shapes.push({
        type: "line", name: `limit ${side}`, xref: "x domain", yref: axis, x0: 0, x1: 1, y0: value, y1: value,
        line: { color: "#c62828", width: 1, dash: "dash" },
      });
      labels.push({ kind: "limit", row, name: `limit ${side}`, text: `${side} ${value}`, y: value });
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

// Incidents' labels come first: at one start, an incident's says more than its first anomaly's.
function markShapes(source, channel, axis, labels) {
  const marks = page.state.marks || { anomalies: [], incidents: [] };
  const yref = `${axis} domain`;
  const row = `${source}/${channel}`;
  const shapes = [];
  for (const i of marks.incidents) {
    if (!i.sources.includes(source) || (i.channels.length && !i.channels.includes(channel))) continue;
    shapes.push({
      type: "rect", name: `incident:${i.id}`, xref: "x", yref, x0: i.x0,
      x1: i.x1 === null ? page.now : i.x1, y0: 0.86, y1: 1,
      fillcolor: i.open ? "rgba(106,27,154,0.35)" : "rgba(106,27,154,0.15)", line: { width: 0 },
    });
    labels.push({
      kind: "incident", row, name: `incident:${i.id}`, x0: i.x0, cls: i.open ? "open" : "",
      text: `incident ${i.open ? "open" : "closed"}: ${i.title}`,
    });
  }
  for (const a of marks.anomalies) {
    if (!touches(a, source, channel)) continue;
    const fill = SEVERITY_FILL[a.severity] || SEVERITY_FILL.medium;
    const what = a.kind === "lens" ? `lens ${a.label || ""}` : a.kind.replace("rule:", "");
    shapes.push({
      type: "rect", name: `anomaly:${a.id}`, xref: "x", yref, x0: a.x0,
      x1: a.x1 === null ? page.now : a.x1, y0: 0, y1: 0.84,
      fillcolor: fill + (a.open ? "0.30)" : "0.15)"), line: { width: a.open ? 1 : 0, color: fill + "0.9)" },
      layer: "below",
    });
    labels.push({
      kind: "anomaly", row, name: `anomaly:${a.id}`, x0: a.x0, cls: `${a.severity}${a.open ? " open" : ""}`,
      text: `${a.open ? "OPEN" : "closed"} ${what} (${a.severity})`,
    });
  }
  return shapes;
}

function stepShapes(axis, labels) {
  const steps = page.state.steps;
  if (!steps) return [];
  const spans = steps.completed.map((s) => ({ ...s }));
  if (steps.running) spans.push({ ...steps.running, outcome: "running", x1: null });
  return spans.filter((s) => s.x0 !== null).map((s) => {
    const x1 = s.x1 === null ? page.now : s.x1;
    const text = `${s.step}: ${s.outcome}`;
    labels.push({ kind: "step", row: "steps", name: `step:${s.step}`, x0: s.x0, x1, text });
    return {
      type: "rect", name: `step:${s.step}`, xref: "x", yref: `${axis} domain`, x0: s.x0, x1, y0: 0.1, y1: 0.9,
      fillcolor: OUTCOME_FILL[s.outcome] || "#bdbdbd", line: { width: 1, color: "#fff" },
    };
  });
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
