"""Issue 13, the live bench page in a real browser: Debian's headless Chromium (driven by Playwright) opens
the control API's `/` of a whole agent fed by the simulated bench on a pty and reporting to the Atlas
emulator. Assertions read the plots' own data and the DOM Plotly drew, not pixels; a screenshot is kept
in the test's tmp dir (its path is printed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from live_helpers import FAULT_AT, live_bench, open_page
from playwright.async_api import Browser, Page

# Every channel's row as Plotly holds it: the points of its envelope trace, and the shapes on its y axis with
# whether each one's path is in the DOM Plotly drew.
PLOTS_JS = """() => {
  const gd = window.benchPage.figure;
  const labelText = (row, name) => {
    const el = document.querySelector(`#figure-labels [data-row="${row}"][data-name="${name}"]`);
    return el ? el.title : "";
  };
  if (!gd || !gd.data || !gd._fullLayout) return [];
  return Object.values(window.benchPage.plots).map((p) => {
    const envelope = gd.data.find((t) => t.name === `${p.source}/${p.channel}`);
    const refs = [p.axis, `${p.axis} domain`];
    const shapes = [];
    (gd._fullLayout.shapes || []).forEach((s, i) => {
      if (!refs.includes(s.yref)) return;
      shapes.push({
        name: s.name, x0: gd.layout.shapes[i].x0, x1: gd.layout.shapes[i].x1, y0: s.y0,
        label: labelText(`${p.source}/${p.channel}`, s.name),
        drawn: gd.querySelector(`.shapelayer path[data-index="${i}"]`) !== null,
      });
    });
    return { source: p.source, channel: p.channel, shapes,
             points: envelope ? envelope.y.filter((v) => v !== null).length : 0 };
  });
}"""
# When each shape (by name) was first drawn (its path in the DOM), by the browser's clock: the host's.
WATCH_JS = """() => {
  window.firstDrawn = {};
  const tick = () => {
    const gd = window.benchPage.figure;
    const shapes = (gd && gd._fullLayout && gd._fullLayout.shapes) || [];
    shapes.forEach((s, i) => {
      if (s.name && !(s.name in window.firstDrawn)
          && gd.querySelector(`.shapelayer path[data-index="${i}"]`)) {
        window.firstDrawn[s.name] = Date.now();
      }
    });
    requestAnimationFrame(tick);
  };
  tick();
}"""
CHANNELS = {"supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"}


async def plots(page: Page) -> dict[str, dict[str, Any]]:
    return {p["channel"]: p for p in await page.evaluate(PLOTS_JS)}


async def wait_for_traces(page: Page) -> None:
    await page.wait_for_function(
        f"(want) => {{ const rows = ({PLOTS_JS})(); return rows.length === want"
        " && rows.every((r) => r.points >= 5); }",
        arg=len(CHANNELS),
        timeout=15_000,
    )


async def test_page_draws_channels_limits_a_fault_and_the_step_outcome(
    tmp_path: Path, browser: Browser
) -> None:
    errors: list[str] = []
    async with live_bench(tmp_path) as bench:
        page = await open_page(browser, bench.url, errors)
        await page.wait_for_function("document.getElementById('connection').textContent === 'live'")
        await page.evaluate(WATCH_JS)
        await bench.sim.start()

        # Every channel of the source plots, with data.
        await wait_for_traces(page)
        drawn = await plots(page)
        assert set(drawn) == CHANNELS and {p["source"] for p in drawn.values()} == {"bench"}

        # The limits of the [[rules]] are lines on their channels' plots (the rules' state comes with the
        # next state push after the source's first frame).
        await page.wait_for_function(
            f"() => ({PLOTS_JS})().some((r) => r.channel === 'supply_v'"
            " && r.shapes.some((s) => s.name === 'limit max' && s.drawn && s.label))",
            timeout=5_000,
        )
        drawn = await plots(page)
        supply = {s["name"]: s for s in drawn["supply_v"]["shapes"]}
        assert supply["limit max"]["y0"] == 12.6 and supply["limit max"]["drawn"]
        assert supply["limit min"]["y0"] == 11.4 and supply["limit min"]["drawn"]
        assert "max 12.6" in supply["limit max"]["label"]
        vibration = {s["name"]: s for s in drawn["vibration_g"]["shapes"]}
        assert vibration["limit max"]["y0"] == 0.5 and "limit min" not in vibration

        # The scripted over-voltage: shaded on supply_v within 2 s of the agent opening the anomaly.
        anomaly = await bench.opened_anomaly("supply_v", within=FAULT_AT + 10)
        name = f"anomaly:{anomaly['id']}"
        await page.wait_for_function("(n) => n in window.firstDrawn", arg=name, timeout=5_000)
        seen_ms = await page.evaluate("(n) => window.firstDrawn[n]", name)
        latency = seen_ms / 1000.0 - anomaly["opened_wall"]
        print(f"anomaly opened by the agent -> shaded span drawn in the page: {latency * 1000:.0f} ms")
        assert latency < 2.0, f"the fault was drawn {latency:.2f} s after the agent opened it"
        shape = next(s for s in (await plots(page))["supply_v"]["shapes"] if s["name"] == name)
        assert abs(shape["x0"] / 1000.0 - anomaly["started_wall"]) < 0.5  # on the trace's own time
        assert "limits (high)" in shape["label"]
        # Not shaded on a channel it is not about.
        assert all(s["name"] != name for s in (await plots(page))["temp_c"]["shapes"])
        # And marked closed once the agent closes it.
        await page.wait_for_function(
            """(n) => [...document.querySelectorAll(`#figure-labels [data-name="${n}"]`)]
                 .some((label) => label.title.startsWith("closed"))""",
            arg=name,
            timeout=10_000,
        )

        # The step timeline shows the step's outcome: load_test failed (the over-voltage), power_on passed.
        await page.wait_for_function(
            """() => { const row = document.querySelector('#steps-table tr[data-step="load_test"]');
                      return row !== null && row.dataset.outcome === 'failed'; }""",
            timeout=15_000,
        )
        steps = await page.evaluate(
            """() => [...document.querySelectorAll('#figure-labels .mark-label.step')]
                 .map((label) => [label.dataset.name, label.title])"""
        )
        assert ["step:load_test", "load_test: failed"] in steps
        assert ["step:power_on", "power_on: passed"] in steps

        # A lens anomaly ("" channel) is shaded on the channels the lens reads, not on every channel of
        # its source; with no lens known (disabled here), on all of them. The page's own function.
        shaded = await page.evaluate(
            """() => {
              const state = window.benchPage.state, kept = state.lens, mark = {source: "bench", channel: ""};
              const on = (channel) => touches(mark, "bench", channel);
              const without = [on("supply_v"), on("temp_c")];
              state.lens = {source: "bench", channels: ["supply_v"]};
              const withLens = [on("supply_v"), on("temp_c"), touches(mark, "other", "supply_v")];
              state.lens = kept;
              return {without, withLens};
            }"""
        )
        assert shaded == {"without": [True, True], "withLens": [True, False, False]}

        # Atlas delivery: the issue the emulator holds, with its id and title, in the page.
        await bench.sim.wait(20)

        async def issue_rows() -> list[dict[str, str]]:
            rows: list[dict[str, str]] = await page.evaluate(
                """() => [...document.querySelectorAll('#issues-table tbody tr')]
                     .map((r) => ({id: r.dataset.issue, text: r.textContent}))"""
            )
            return rows

        await page.wait_for_function(
            "() => document.querySelectorAll('#issues-table tbody tr').length > 0", timeout=15_000
        )
        issues = bench.atlas.state()["issues"]
        assert len(issues) == 1
        (row,) = await issue_rows()
        assert row["id"] == issues[0]["uuid"] and issues[0]["title"] in row["text"]

        shot = tmp_path / "live-page.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
    assert errors == []


async def test_with_a_control_token_the_page_shows_nothing_until_it_is_given(
    tmp_path: Path, browser: Browser
) -> None:
    token = "page-token-9f2c61d0"
    errors: list[str] = []
    async with live_bench(tmp_path, control_token=token) as bench:
        urls: list[str] = []
        statuses: dict[str, list[int]] = {}
        page = await browser.new_page()
        page.on("request", lambda r: urls.append(r.url))
        page.on("response", lambda r: statuses.setdefault(r.url.split("?")[0], []).append(r.status))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(bench.url + "/")
        await bench.sim.start()

        # Without the token: the shell and a form asking for it; the stream refused; nothing drawn.
        await page.wait_for_function("document.getElementById('connection').textContent === 'token needed'")
        assert statuses[bench.url + "/live/stream"] == [401]
        assert await page.evaluate("Object.keys(window.benchPage.plots).length") == 0
        assert await page.is_visible("#token-form") and not await page.is_visible("#main")
        assert token not in await page.content()

        # A wrong token is refused and said so.
        await page.fill("#token", "not-the-token")
        await page.press("#token", "Enter")
        await page.wait_for_function("document.getElementById('token-error').textContent.includes('refused')")
        assert await page.evaluate("Object.keys(window.benchPage.plots).length") == 0

        # The right one: the page works.
        await page.fill("#token", token)
        await page.press("#token", "Enter")
        await wait_for_traces(page)
        assert statuses[bench.url + "/live/stream"][-1] == 200
        # Kept for this tab: a reload connects without asking again.
        await page.reload()
        await wait_for_traces(page)
        assert not await page.is_visible("#token-form")
        # Never in a URL (URLs end up in logs, history and proxies).
        assert urls and not [u for u in urls if token in u]
    assert errors == []
