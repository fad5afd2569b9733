// The live page's tables under the figure (steps, anomalies and incidents, lens, Atlas delivery), filled
// from the state the agent pushes (page.state, page.js).
"use strict";

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

