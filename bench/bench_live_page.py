"""The live bench page's cost (issue 13): two real `edge-agent run` processes side by side, one with the
page turned off (`control.live_page = false`), one with it on, each on its own pty written at the same
time at 3 Mbaud equivalent (5,000 lines/s of 8 channels), against the in-process emulators, and Debian's
headless Chromium (Playwright) as the one browser. Side by side, the machine's other load (it is shared)
falls on both alike: the page's cost is the difference within each window.

- Agent CPU at 3 Mbaud (utime+stime over wall time, /proc/<pid>/stat, % of one core): page on with no
  browser (the tap alone) and with one browser attached (the tap and the pushes), each minus the
  page-off agent in the same window; medians of `--rounds` windows.
- Bytes per second to the browser while attached at 3 Mbaud, at the 1 min span (the agent's own count of
  what it wrote to the stream, and what the page counted as received); the browser's CPU meanwhile
  (every Chromium process under this one).
- Idle RSS (port open, lens session up, no bytes): page off, and page on but never opened; RSS after the
  browser opened the page and went away.
- The tap's own cost per frame in this process (8 channels), for scale.
- A screenshot of the page under load: bench/out/live-page.png.

Run: .venv/bin/python bench/bench_live_page.py [--seconds 10] [--rounds 3]. Prints the figures and
writes bench/out/live_page.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "live"))

from chromium import CHROMIUM_ARGS, INSTALL_HINT, chromium_path  # noqa: E402
from playwright.async_api import Page, async_playwright  # noqa: E402
from soak_lib.agent_bench import AgentBench, _cpu_seconds, _rss_mb  # noqa: E402

from edge_agent.frames import Frame  # noqa: E402
from edge_agent.live.decimator import Decimator  # noqa: E402

OUT = HERE / "out"
RATE_3M = 5000.0  # lines/s: 3,000,000 baud / 10 bits a byte / 60-byte lines
SETTLE = 5.0  # after READY: the lens session up, the first Atlas writes done


def chromium_cpu_seconds() -> float:
    """utime+stime of every Chromium process descended from this one (the browser Playwright started)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        names[int(entry.name)] = name
    me = os.getpid()
    total = 0.0
    for pid, name in names.items():
        if "chrom" not in name.lower():
            continue
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != me:
            ancestor = parents.get(ancestor, 0)
        if ancestor == me:
            with contextlib.suppress(OSError, ValueError, IndexError):  # it ended meanwhile
                total += _cpu_seconds(pid)
    return total


def tap_cost_us(frames: int = 200_000, channels: int = 8) -> float:
    """Microseconds per frame through the decimating tap alone (1 kHz frames, every level rolling)."""
    names = [f"ch{i}" for i in range(channels)]
    batch = [Frame("bench", k / 1000.0, 0.0, {n: float((k * 7 + i) % 101) for i, n in enumerate(names)})
             for k in range(frames)]  # fmt: skip
    best = float("inf")
    for _ in range(3):
        tap = Decimator()
        start = time.perf_counter()
        for frame in batch:
            tap.on_frame(frame)
        best = min(best, time.perf_counter() - start)
    return best / frames * 1e6


class Lane:
    """One agent on its own pty and port (an AgentBench whose emulators may be another lane's)."""

    def __init__(self, workdir: Path, name: str, control_extra: str, emulators: AgentBench | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.bench = AgentBench(workdir)
        if emulators is not None:
            self.bench.archetype, self.bench.atlas = emulators.archetype, emulators.atlas
        self.name = name
        self.control_extra = control_extra
        self.proc: asyncio.subprocess.Process | None = None
        self.drainer = threading.Thread(target=self.bench._drain_echo, daemon=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, http: Any) -> None:
        self.bench.http = http
        self.drainer.start()
        self.proc, _ = await self.bench._spawn(self.name, control_extra=self.control_extra)

    async def status(self) -> dict[str, Any]:
        return await self.bench._status()

    async def stop(self) -> None:
        self.bench._drain_stop.set()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 60)
        os.close(self.bench.master)
        os.close(self.bench.slave)


async def cpu_side_by_side(lanes: list[Lane], seconds: float, rate: float | None) -> list[float]:
    """Each lane's agent CPU (% of one core) over the same window, every pty written at `rate` lines/s
    at once (None: idle): the machine's other load falls on all of them alike."""
    before = [_cpu_seconds(lane.pid) for lane in lanes]
    t0 = time.perf_counter()
    if rate is None:
        await asyncio.sleep(seconds)
    else:
        await asyncio.gather(*(asyncio.to_thread(lane.bench.writer.stream, rate, seconds) for lane in lanes))
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - t0
    return [100.0 * (_cpu_seconds(lane.pid) - b) / elapsed for lane, b in zip(lanes, before, strict=True)]


async def attached(page: Page, lanes: list[Lane], seconds: float) -> dict[str, Any]:
    """With the browser on the second lane's page: both agents' CPU at 3 Mbaud, the bytes the agent
    sent and the page received per second, the browser's CPU."""
    sent0 = float((await lanes[1].status())["live"]["bytes_sent"])
    received0 = float(await page.evaluate("window.benchPage.bytes"))
    browser0, t0 = chromium_cpu_seconds(), time.perf_counter()
    cpu = await cpu_side_by_side(lanes, seconds, RATE_3M)
    sent1 = float((await lanes[1].status())["live"]["bytes_sent"])
    received1 = float(await page.evaluate("window.benchPage.bytes"))
    browser1, t1 = chromium_cpu_seconds(), time.perf_counter()
    return {
        "cpu_percent_3M_page_off": cpu[0],
        "cpu_percent_3M_browser": cpu[1],
        "bytes_per_s_sent": (sent1 - sent0) / (t1 - t0),
        "bytes_per_s_received": (received1 - received0) / (t1 - t0),
        "browser_cpu_percent": 100.0 * (browser1 - browser0) / (t1 - t0),
    }


async def with_browser(lanes: list[Lane], seconds: float, rounds: int) -> dict[str, Any]:
    path = chromium_path()
    if path is None:
        raise SystemExit(INSTALL_HINT)
    runs: list[dict[str, Any]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1300})
            await page.goto(f"http://127.0.0.1:{lanes[1].bench.port}/")
            await page.wait_for_function("document.getElementById('connection').textContent === 'live'")
            await asyncio.sleep(2.0)  # the first (whole-span) push is not the steady rate
            for _ in range(rounds):
                runs.append(await attached(page, lanes, seconds))
            plots = await page.evaluate("Object.keys(window.benchPage.plots).length")
            OUT.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(OUT / "live-page.png"), full_page=True)
        finally:
            await browser.close()
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    figures["plots_drawn"] = plots
    return figures


async def measure(workdir: Path, seconds: float, rounds: int) -> dict[str, Any]:
    import aiohttp

    off = Lane(workdir / "off", "page-off", "live_page = false", None)
    on = Lane(workdir / "on", "page-on", "", off.bench)
    lanes = [off, on]
    await off.bench.archetype.start()
    await off.bench.atlas.start()
    figures: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "lines_per_s": RATE_3M}
    async with aiohttp.ClientSession() as http:
        try:
            for lane in lanes:
                await lane.start(http)
            await asyncio.sleep(SETTLE)
            figures["idle_rss_mb_page_off"] = _rss_mb(off.pid)
            figures["idle_rss_mb_page_never_opened"] = _rss_mb(on.pid)
            idle = [await cpu_side_by_side(lanes, seconds, None) for _ in range(rounds)]
            figures["idle_cpu_percent_page_off"] = statistics.median(c[0] for c in idle)
            figures["idle_cpu_percent_page_never_opened"] = statistics.median(c[1] for c in idle)
            loaded = [await cpu_side_by_side(lanes, seconds, RATE_3M) for _ in range(rounds)]
            figures["cpu_percent_3M_page_off_no_browser"] = statistics.median(c[0] for c in loaded)
            figures["cpu_percent_3M_no_browser"] = statistics.median(c[1] for c in loaded)
            figures["page_cost_percent_3M_no_browser"] = statistics.median(c[1] - c[0] for c in loaded)
            browsed = await with_browser(lanes, seconds, rounds)
            figures.update(browsed)
            figures["page_cost_percent_3M_browser"] = (
                browsed["cpu_percent_3M_browser"] - browsed["cpu_percent_3M_page_off"]
            )
            await asyncio.sleep(2.0)
            figures["rss_mb_after_page_closed"] = _rss_mb(on.pid)
            figures["rss_mb_page_off_after_load"] = _rss_mb(off.pid)
            live = (await on.status())["live"]
            figures["streams_opened"] = live["streams_opened"]
            figures["tap_bytes"] = live["tap"]["bytes"]
        finally:
            for lane in lanes:
                await lane.stop()
            await off.bench.atlas.stop()
            await off.bench.archetype.stop()
    figures["idle_rss_growth_mb"] = figures["idle_rss_mb_page_never_opened"] - figures["idle_rss_mb_page_off"]
    figures["tap_us_per_frame_8ch"] = tap_cost_us()
    figures["tap_percent_at_3M_8ch"] = figures["tap_us_per_frame_8ch"] * RATE_3M / 1e4
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each CPU window (default 10)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="windows of each kind; medians kept (default 3)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-bench-live-") as tmp:
        figures = asyncio.run(measure(Path(tmp), args.seconds, args.rounds))
    for key, value in figures.items():
        print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "live_page.json").write_text(json.dumps({"live_page": figures}, indent=2) + "\n")
    print(f"wrote {OUT / 'live_page.json'} and {OUT / 'live-page.png'}")


if __name__ == "__main__":
    main()
