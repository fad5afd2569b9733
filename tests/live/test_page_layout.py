"""The live page's layout in a real browser (Debian's headless Chromium): with several channels, long
channel names and faults close together in time, no two labels on the figure overlap (their boxes as the
browser laid them out), a clipped label keeps its whole text in its tooltip, and the incidents table shows
a whole ordinary title; at 1280, 1920 and 800 px wide. Screenshots are kept in the test's tmp dir."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from e2e_helpers import agent_toml, fault_toml, step_toml
from live_helpers import live_bench, open_page
from playwright.async_api import Browser, Page

LONG = "supply_voltage_main_rail_after_the_input_fuse_and_filter"
LONGER = "pressure_upstream_of_the_relief_valve_on_the_second_loop_kpa"
COLUMNS = ["t_ms", LONG, "current_a", "temp_c", "vibration_g", LONGER]  # the simulated bench's order
RULES = f"""
[[rules]]
channel = "{LONG}"
kind = "limits"
min = 11.4
max = 12.6
clear_after = "200ms"
severity = "high"

[[rules]]
channel = "vibration_g"
kind = "limits"
max = 0.5
clear_after = "200ms"
severity = "medium"

[[rules]]
channel = "current_a"
kind = "limits"
max = 2.8
clear_after = "200ms"
severity = "medium"

[incidents]
join_window = "200ms"
update_after = "200ms"
"""
# Faults 0.2 to 1.4 s apart (a few px at a 1 min span): their marks and labels start nearly together. Two
# incidents: one led by current_a (an ordinary title), one by the long-named channel (a long title).
FAULTS = [
    ("current_a", 1.0, 0.5, 2.0, "medium"),
    ("vibration_g", 1.2, 0.5, 1.0, "medium"),
    ("supply_v", 1.4, 0.4, 1.8, "high"),
    ("supply_v", 2.8, 0.4, 1.8, "high"),
]
STEPS = [("power_on", 0.2, 0.5), ("load_test_at_full_flow_with_the_relief_valve_shut", 0.8, 2.2)]


def layout_agent_toml(state_dir: Path, link: Path, atlas_url: str) -> str:
    return agent_toml(
        bench="layout", state_dir=state_dir, source="bench", link=link, columns=COLUMNS, atlas_url=atlas_url,
        drain_deadline="5s", sections=RULES,
    )  # fmt: skip


def layout_scenario() -> str:
    body = 'name = "layout"\nduration = "4.5s"\n' + "".join(step_toml(*s) for s in STEPS)
    for n, (channel, start, duration, magnitude, severity) in enumerate(FAULTS):
        body += fault_toml(channel, start, duration, magnitude, severity, f"f{n}")
    return body


# Every label on the figure as the browser laid it out (hidden ones left out).
LABELS_JS = """() => [...document.querySelectorAll('#figure-labels .mark-label')]
  .filter((e) => !e.hidden)
  .map((e) => { const r = e.getBoundingClientRect();
    return { kind: e.dataset.kind, row: e.dataset.row, text: e.textContent, title: e.title,
             clipped: e.scrollWidth > e.clientWidth, l: r.left, t: r.top, r: r.right, b: r.bottom }; })"""
FIGURE_JS = """() => { const r = document.getElementById('figure').getBoundingClientRect();
  return { l: r.left, t: r.top, r: r.right, b: r.bottom }; }"""
# The title cell of each incident's row in the anomalies table: its text, whether the browser cut it, how
# many lines it takes and its right edge.
INCIDENT_CELLS_JS = """() => [...document.querySelectorAll('#anomalies-table tr[data-incident]')]
  .map((row) => {
  const cell = row.cells[1], range = document.createRange();
  range.selectNodeContents(cell);
  const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  return { text: cell.textContent, cut: cell.scrollWidth > cell.clientWidth, lines,
           right: cell.getBoundingClientRect().right, width: cell.clientWidth }; })"""


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return min(a["r"], b["r"]) - max(a["l"], b["l"]) > 0.5 and min(a["b"], b["b"]) - max(a["t"], b["t"]) > 0.5


async def settle(page: Page, width: int) -> None:
    """The viewport `width` px wide, and the labels placed for the figure as drawn at that width."""
    await page.set_viewport_size({"width": width, "height": 1000})
    await page.wait_for_function(
        """(w) => { const box = document.getElementById('figure-labels');
                   return box && Number(box.dataset.width) === document.getElementById('figure').clientWidth
                     && Math.abs(document.documentElement.clientWidth - w) < 40; }""",
        arg=width,
        timeout=10_000,
    )


async def test_labels_never_overlap_and_incident_titles_are_whole_at_common_widths(
    tmp_path: Path, browser: Browser
) -> None:
    errors: list[str] = []
    async with live_bench(tmp_path, agent_text=layout_agent_toml, scenario_text=layout_scenario()) as bench:
        page = await open_page(browser, bench.url, errors, viewport=(1280, 1000))
        await page.wait_for_function("document.getElementById('connection').textContent === 'live'")
        await bench.sim.start()
        await bench.sim.wait(15)
        # Every fault's anomaly closed and shown, with its incidents.
        await page.wait_for_function(
            """(n) => { const rows = document.querySelectorAll('#anomalies-table tr[data-anomaly]');
                       return rows.length >= n && ![...rows].some((r) => r.className === 'open')
                         && document.querySelectorAll('#anomalies-table tr[data-incident]').length >= 2; }""",
            arg=len(FAULTS),
            timeout=15_000,
        )
        for width in (1280, 1920, 800):
            await settle(page, width)
            labels = await page.evaluate(LABELS_JS)
            figure = await page.evaluate(FIGURE_JS)
            shot = tmp_path / f"layout-{width}.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot at {width} px: {shot}")

            # The crowded row: both channel names, both anomalies on the long channel, its limits.
            kinds = {(label["kind"], label["row"]) for label in labels}
            assert {("row", f"bench/{LONG}"), ("row", f"bench/{LONGER}"), ("row", "steps")} <= kinds
            assert {("limit", f"bench/{LONG}"), ("incident", f"bench/{LONG}")} <= kinds
            assert sum(1 for la in labels if la["kind"] == "anomaly" and la["row"] == f"bench/{LONG}") >= 2
            # load_test's box (2.2 s of the minute) has room for its label's start, but at 800 px
            assert any(la["kind"] == "step" for la in labels) == (width >= 1280)
            for a, b in itertools.combinations(labels, 2):
                assert not overlaps(a, b), f"at {width} px these labels overlap: {a} and {b}"
            for label in labels:
                # Inside the figure, and the whole text in its tooltip (the visible text may be cut short).
                assert figure["l"] - 0.5 <= label["l"] and label["r"] <= figure["r"] + 0.5, label
                assert figure["t"] - 0.5 <= label["t"] and label["b"] <= figure["b"] + 0.5, label
                assert label["title"] == label["text"] != "", label
            # The incidents' titles are longer than a mark's label may be: cut, whole in their tooltips.
            assert any(la["clipped"] for la in labels if la["kind"] == "incident")

            # The incidents' titles: whole (nothing cut, nothing past the window's edge); an ordinary one
            # (current_a's, some 50 characters) on one line at 1280 px and wider.
            cells = await page.evaluate(INCIDENT_CELLS_JS)
            assert len(cells) >= 2
            for cell in cells:
                assert cell["text"].startswith("[layout] ") and not cell["cut"], cell
                assert cell["right"] <= width, cell
            ordinary = next(c for c in cells if c["text"].startswith("[layout] current_a "))
            assert len(ordinary["text"]) < 90
            if width >= 1280:
                assert ordinary["lines"] == 1, f"at {width} px an ordinary incident title wraps: {ordinary}"
    assert errors == []


PACK_JS = """(cases) => cases.map(([items, left, right, lanes]) => packLabels(items, left, right, lanes))"""


async def test_the_label_packer_keeps_labels_apart_inside_their_area(
    tmp_path: Path, browser: Browser
) -> None:
    """The page's own packing function on crowds no bench makes quickly: a dozen labels at one x, labels
    past either edge, a lane too short for anything. Every label is either hidden (null) or in a lane,
    inside [left, right], at least its minimum width, and apart from every other of its lane."""
    errors: list[str] = []
    async with live_bench(tmp_path) as bench:
        page = await open_page(browser, bench.url, errors)
        await page.wait_for_function("typeof packLabels === 'function'")
        same_x = [{"x": 300, "width": 120}] * 12
        spread = [{"x": x, "width": w} for x, w in [(-50, 200), (90, 40), (150, 300), (160, 80), (590, 90)]]
        cases = [[same_x, 100, 600, 3], [spread, 100, 600, 2], [spread, 100, 130, 1], [[], 0, 10, 3]]
        results = await page.evaluate(PACK_JS, cases)
        minimum = await page.evaluate("LABEL.min")
    for (items, left, right, lanes), placed in zip(cases, results, strict=True):
        assert len(placed) == len(items)
        shown = [p for p in placed if p is not None]
        for p in shown:
            assert left <= p["x"] and p["x"] + p["width"] <= right and p["width"] >= minimum, (p, left, right)
            assert 0 <= p["lane"] < lanes
        for a, b in itertools.combinations(shown, 2):
            if a["lane"] == b["lane"]:
                assert a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"], (a, b)
    # Twelve at one x: one label in each of the three lanes (the others hidden, never overprinted).
    assert sum(p is not None for p in results[0]) == 3
    # Spread out, two lanes: all shown; the first (from past the left edge) cut short where the fourth
    # starts in its lane, the last moved left, whole, so as not to run past the right edge.
    assert all(p is not None for p in results[1])
    assert results[1][0] == {"x": 100, "width": 160 - 4 - 100, "lane": 0}
    assert results[1][3]["lane"] == 0 and results[1][4] == {"x": 510, "width": 90, "lane": 0}
    # An area just wide enough for one label: one.
    assert sum(p is not None for p in results[2]) == 1
    assert errors == []
