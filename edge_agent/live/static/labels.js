// The words on the live page's figure: every label is an HTML element over the Plotly figure
// (#figure-labels), placed here so that no two overlap, however close the marks or long the names.
// Plotly's own shape and axis labels would overprint each other (a mark's label runs over its
// neighbour's). Each label has an area of its own kind, and inside it a simple one-dimensional rule:
//   row names     a strip above each row: one name each, cut to the row's width
//   marks         anomalies and incidents, in lanes at the top of their row, each at its mark's start;
//                 a label is cut short where the next one in its lane starts, hidden when no lane has room
//   limits        limit lines and learned bands, in the right margin at their value, stacked apart
//   steps         inside each step's box on the steps row, cut to the box
// A cut label ends in "…" and shows its whole text as its tooltip (title); every label has one.
"use strict";

const LABEL = {
  height: 13, // px, one line of 10 px text
  lane: 15, // px between lanes
  lanes: 4, // lanes of mark labels in a row: half its height (more would hide the trace under them)
  gap: 4, // px at least between two labels side by side
  min: 28, // px: the narrowest a label is cut to (an "…" and a letter or two); narrower, hidden
  max: 360, // px: the widest a mark label gets, so that one long title does not fill its lane
};
const HEAD_PX = 16; // the strip above each row for its name
const MARGIN = { l: 64, r: 80, t: 4, b: 40 }; // r: the limits' labels

// Where labels of `width` px starting at `x` go in `lanes` lanes between `left` and `right` px: for each
// item (same order) {x, width, lane}, or null when it is hidden. A label that would run past `right`
// starts further left (the newest marks are at the right edge); left to right (ties: in the given
// order, so the caller puts first what matters most), a label takes the first lane free at its x; when
// none is, the lane whose last label keeps the most of itself is cut short for it (not under LABEL.min).
function packLabels(items, left, right, lanes) {
  const placed = items.map(() => null);
  if (right - left < LABEL.min) return placed; // the area is narrower than any label
  const wants = items.map((item) => {
    const width = Math.min(Math.max(item.width, LABEL.min), right - left);
    return { x: Math.max(left, Math.min(item.x, right - width)), width };
  });
  const last = []; // per lane: the label that ends it
  const order = wants.map((_, i) => i).sort((a, b) => wants[a].x - wants[b].x);
  for (const i of order) {
    const { x, width } = wants[i];
    let lane = last.findIndex((p) => p.x + p.width + LABEL.gap <= x);
    if (lane < 0 && last.length < lanes) lane = last.length;
    if (lane < 0) {
      let room = LABEL.min - 1;
      last.forEach((p, k) => {
        if (x - LABEL.gap - p.x > room) {
          room = x - LABEL.gap - p.x;
          lane = k;
        }
      });
      if (lane < 0) continue;
      last[lane].width = room;
    }
    placed[i] = last[lane] = { x, width, lane };
  }
  return placed;
}

// Tops (px) for labels of `height` px wanted centred at `ys` between `top` and `bottom` px, in the same
// order, none overlapping; null for the ones there is no room for (the furthest down).
function stackLabels(ys, height, top, bottom) {
  const order = ys.map((_, i) => i).sort((a, b) => ys[a] - ys[b]);
  const fit = Math.max(0, Math.floor((bottom - top + 1) / (height + 1)));
  const kept = order.slice(0, fit);
  const tops = kept.map((i) => Math.min(Math.max(ys[i] - height / 2, top), bottom - height));
  for (let k = 1; k < tops.length; k++) tops[k] = Math.max(tops[k], tops[k - 1] + height + 1);
  for (let k = tops.length - 1; k >= 0; k--) {
    const limit = k === tops.length - 1 ? bottom - height : tops[k + 1] - height - 1;
    tops[k] = Math.min(tops[k], limit);
  }
  const result = ys.map(() => null);
  kept.forEach((i, k) => { result[i] = tops[k]; });
  return result;
}

// The labels' elements in `box`, one per spec (same order), at their natural width: the one a label had
// before when it is still there (a tooltip being read stays up across the redraws every second).
function labelElements(box, specs) {
  const before = new Map([...box.children].map((el) => [el.dataset.key, el]));
  const elements = specs.map((spec) => {
    const key = `${spec.row}|${spec.kind}|${spec.name || ""}`;
    const el = before.get(key) || document.createElement("div");
    before.delete(key);
    el.className = `mark-label ${spec.kind} ${spec.cls || ""}`;
    if (el.title !== spec.text) el.textContent = el.title = spec.text;
    Object.assign(el.dataset, { key, kind: spec.kind, row: spec.row, name: spec.name || "" });
    el.style.width = "";
    el.hidden = false;
    return el;
  });
  for (const el of before.values()) el.remove();
  box.append(...elements.filter((el) => !el.isConnected));
  return elements;
}

// Puts the figure's labels (`figure.labels`, from page.js's drawFigure) on the figure as Plotly drew it
// (`gd`): called after every draw, and so after every resize too.
function placeLabels(gd, figure) {
  const box = document.getElementById("figure-labels");
  const full = gd._fullLayout;
  if (!box || !full || !figure) return;
  const plotLeft = MARGIN.l;
  const plotRight = full.width - MARGIN.r;
  const plotHeight = full.height - MARGIN.t - MARGIN.b;
  const [t0, t1] = figure.range;
  const xpx = (ms) => plotLeft + ((ms - t0) / (t1 - t0)) * (plotRight - plotLeft);
  const rowBox = (row) => ({
    top: MARGIN.t + (1 - row.domain[1]) * plotHeight, bottom: MARGIN.t + (1 - row.domain[0]) * plotHeight,
  });
  const elements = labelElements(box, figure.labels);
  const natural = elements.map((el) => el.scrollWidth + 1); // one layout for all, before any is placed
  const put = (i, x, top, width) => {
    elements[i].hidden = top === null || width === null;
    if (!elements[i].hidden) {
      Object.assign(elements[i].style, { left: `${x}px`, top: `${top}px`, width: `${width}px` });
    }
  };
  const byRow = new Map();
  figure.labels.forEach((spec, i) => {
    const area = { incident: "anomaly", band: "limit" }[spec.kind] || spec.kind; // who shares room with whom
    const key = `${spec.row}|${area}`;
    if (!byRow.has(key)) byRow.set(key, []);
    byRow.get(key).push(i);
  });
  for (const [key, indexes] of byRow) {
    const area = key.split("|")[1];
    const { top, bottom } = rowBox(figure.rows[figure.labels[indexes[0]].row]);
    if (area === "row") {
      for (const i of indexes) put(i, plotLeft, top - HEAD_PX + 1, plotRight - plotLeft);
    } else if (area === "anomaly" || area === "step") {
      const items = indexes.map((i) => {
        const spec = figure.labels[i];
        const x = xpx(spec.x0);
        // A step's label stays inside its box (which may have started before the figure's left edge).
        const room = spec.x1 === undefined ? LABEL.max : xpx(spec.x1) - Math.max(x, plotLeft) - 2;
        if (room < LABEL.min) return null;
        return { x: x + (area === "step" ? 2 : 0), width: Math.min(natural[i], room) };
      });
      const lanes = area === "step" ? 1 : LABEL.lanes;
      const shown = items.filter((item) => item !== null);
      const packed = packLabels(shown, plotLeft, plotRight, lanes);
      let k = 0;
      indexes.forEach((i, n) => {
        const p = items[n] === null ? null : packed[k++];
        if (!p) put(i, 0, null, null);
        else if (area === "step") put(i, p.x, (top + bottom - LABEL.height) / 2, p.width);
        else put(i, p.x, top + 1 + p.lane * LABEL.lane, p.width);
      });
    } else {
      const axis = full[figure.rows[figure.labels[indexes[0]].row].axis];
      const [v0, v1] = axis.range;
      const ys = indexes.map((i) => bottom - ((figure.labels[i].y - v0) / (v1 - v0)) * (bottom - top));
      const tops = stackLabels(ys, LABEL.height, top, bottom);
      const width = MARGIN.r - 6;
      indexes.forEach((i, n) => put(i, plotRight + 4, tops[n], Math.min(natural[i], width)));
    }
  }
  box.dataset.width = String(full.width);
}
