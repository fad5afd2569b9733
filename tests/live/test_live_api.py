"""The live page's routes on a whole agent's control API (real loopback HTTP, the simulated bench on a
pty): the token rules, the pushed stream's events, its bounds (span, number of pages) and a shutdown
with a page open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from e2e_helpers import wait_until
from live_helpers import FAULT_AT, live_bench

from edge_agent.live.server import MAX_STREAMS, plotly_js_path

TOKEN = "live-api-token-5d1e"


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Events:
    """Server-Sent Events read off a real response, one `event:`/`data:` block at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.state: dict[str, Any] = {}  # every `state` event's parts merged, as the page keeps them

    async def next(self, within: float = 5.0) -> tuple[str, Any]:
        block = await asyncio.wait_for(self.response.content.readuntil(b"\n\n"), within)
        assert block, "the stream ended"
        event, data = "", ""
        for line in block.decode().splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        message = json.loads(data)
        if event == "state":
            self.state.update(message)
        return event, message

    async def until(self, kind: str, predicate: Any = None, within: float = 10.0) -> Any:
        """The next `kind` event that `predicate` accepts; for `state`, the merged state it made."""
        if kind == "state" and self.state and (predicate is None or predicate(self.state)):
            return self.state
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            event, data = await self.next(max(0.1, deadline - time.monotonic()))
            if kind == "state" and event == "state" and (predicate is None or predicate(self.state)):
                return self.state
            if kind != "state" and event == kind and (predicate is None or predicate(data)):
                return data
        raise AssertionError(f"no {kind} event as expected within {within} s")


@asynccontextmanager
async def stream(http: aiohttp.ClientSession, url: str, token: str | None = None) -> AsyncIterator[Events]:
    async with http.get(url + "/live/stream?span=60", headers=auth(token)) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield Events(response)


async def test_the_page_and_its_assets_are_open_and_the_data_needs_the_token(tmp_path: Path) -> None:
    async with live_bench(tmp_path, control_token=TOKEN) as bench, aiohttp.ClientSession() as http:
        scripts = ["/live/page.js", "/live/labels.js", "/live/tables.js", "/live/plotly.min.js"]
        assets = [("/", "text/html"), ("/live/page.css", "text/css")]
        assets += [(script, "text/javascript") for script in scripts]
        for path, kind in assets:
            async with http.get(bench.url + path) as response:
                body = await response.read()
                assert response.status == 200, path
                assert response.headers["Content-Type"].startswith(kind), path
                assert TOKEN.encode() not in body
        plotly = plotly_js_path()
        assert plotly is not None
        async with http.get(bench.url + "/live/plotly.min.js") as response:
            assert await response.read() == plotly.read_bytes()  # the installed package's file, as is
        for path in ("/live/stream?span=60", "/live/snapshot?span=60"):
            for token in (None, "wrong-token"):
                async with http.get(bench.url + path, headers=auth(token)) as response:
                    assert response.status == 401, (path, token)
        async with http.get(bench.url + "/live/snapshot?span=60", headers=auth(TOKEN)) as response:
            assert response.status == 200
            assert (await response.json())["hello"]["bench"] == "e2e"
        # The control guard covers the page like every route: a DNS-rebinding Host, a foreign Origin.
        async with http.get(bench.url + "/", headers={"Host": "evil.example"}) as response:
            assert response.status == 403
        headers = {"Origin": "http://evil.example", **auth(TOKEN)}
        async with http.get(bench.url + "/live/stream?span=60", headers=headers) as response:
            assert response.status == 403


async def test_the_stream_pushes_traces_from_the_running_bucket_on_and_the_state(tmp_path: Path) -> None:
    async with live_bench(tmp_path) as bench, aiohttp.ClientSession() as http:
        await bench.sim.start()
        async with stream(http, bench.url) as events:
            event, hello = await events.next()
            assert event == "hello" and hello["bench"] == "e2e" and hello["level"] == 0
            first = await events.until("traces", lambda d: "bench" in d["sources"])
            doc = first["sources"]["bench"]
            assert set(doc["lo"]) == {"supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"}
            assert doc["dx"] == 100.0 and len(doc["lo"]["supply_v"]) == 600  # everything kept, first
            last = doc["first"] + len(doc["lo"]["supply_v"]) - 1
            following = await events.until("traces")
            step = following["sources"]["bench"]
            assert step["first"] == last  # from the bucket that was running on: it grew since
            assert len(step["lo"]["supply_v"]) <= 15  # a few 0.1 s buckets, not the whole span again
            assert following["now"] >= first["now"]
            values = [v for v in step["hi"]["supply_v"] if v is not None]
            assert values and all(11.4 < v < 12.6 for v in values)

            state = await events.until("state", lambda d: "bench" in d.get("bands", {}))
            assert {"kind": "limits", "low": 11.4, "high": 12.6} in state["bands"]["bench"]["supply_v"]

            # The fault: its anomaly in the marks, on the traces' own time axis.
            anomaly = await bench.opened_anomaly("supply_v", within=FAULT_AT + 10)
            marks = await events.until(
                "state",
                lambda d: any(a["id"] == anomaly["id"] for a in d.get("marks", {}).get("anomalies", [])),
            )
            (mark,) = [a for a in marks["marks"]["anomalies"] if a["id"] == anomaly["id"]]
            assert mark["channel"] == "supply_v" and mark["severity"] == "high"
            assert abs(mark["x0"] / 1000 - anomaly["started_wall"]) < 0.5


async def test_pages_at_once_are_bounded_and_a_shutdown_ends_their_streams(tmp_path: Path) -> None:
    async with live_bench(tmp_path) as bench, aiohttp.ClientSession() as http:
        responses = [await http.get(bench.url + "/live/stream?span=600") for _ in range(MAX_STREAMS)]
        try:
            assert [r.status for r in responses] == [200] * MAX_STREAMS
            async with http.get(bench.url + "/live/stream?span=60") as refused:
                assert refused.status == 503
            responses.pop().close()

            async def freed() -> bool:
                return int((await bench.status())["live"]["streams"]) < MAX_STREAMS

            await wait_until(freed, 5, "the closed page's stream to end")
            async with http.get(bench.url + "/live/stream?span=60") as again:
                assert again.status == 200
            # Stopping the agent ends every open stream (no wait for aiohttp's 60 s shutdown timeout).
            started = time.monotonic()
            await bench.stop()
            assert time.monotonic() - started < 15
            for response in responses:
                await asyncio.wait_for(response.content.read(), 5)  # reads to the end: the stream closed
        finally:
            for response in responses:
                response.close()


async def test_a_span_must_be_seconds(tmp_path: Path) -> None:
    async with live_bench(tmp_path) as bench, aiohttp.ClientSession() as http:
        for span in ("abc", "0", "-5", "inf", "nan", "1e9"):
            async with http.get(bench.url + f"/live/stream?span={span}") as response:
                assert response.status == 400, span
                assert "span must be seconds" in (await response.json())["error"]
        async with http.get(bench.url + "/live/snapshot?span=3600") as response:
            assert (await response.json())["hello"]["level"] == 2


async def test_live_page_false_serves_no_page(tmp_path: Path) -> None:
    async with live_bench(tmp_path, extra="live_page = false\n") as bench, aiohttp.ClientSession() as http:
        assert bench.agent.live is None
        for path in ("/", "/live/stream", "/live/plotly.min.js"):
            async with http.get(bench.url + path) as response:
                assert response.status == 404, path
        assert (await bench.status())["live"] is None
