"""The live bench page on the control API (aiohttp adapter): the page, its assets, and the pushed stream.

    GET /                   the page (HTML; no data in it)
    GET /live/page.js       its script (and labels.js: its figure's labels, tables.js: its tables),
                            /live/page.css its style
    GET /live/plotly.min.js the charting library, served from the installed `plotly` package
    GET /live/stream?span=S Server-Sent Events: `hello`, then `traces` every PUSH_EVERY seconds (the
                            decimated buckets of the level that covers S seconds: all of them first,
                            then from the page's running bucket on) and `state` when a part changed
    GET /live/snapshot?span=S  the same as one JSON document (for curl and tests)

Tokens: the page and its assets carry no data and are served to anyone the control guard lets through
(same Host/Origin rules as every route); a browser cannot send a header when it navigates, so the
page asks for the token itself, keeps it in the tab's sessionStorage and sends it as
`Authorization: Bearer` on its `fetch` of the stream and the snapshot, which the bearer middleware
checks like any other route. The token never appears in a URL, a log line or the page's HTML.

Only this module and the assets are loaded when the agent starts; plotly.min.js is found on disk
(without importing the Python package) and sent by the file sender, so an agent whose page nobody
opens carries no charting code in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from edge_agent.live.board import LiveBoard, levels_doc
from edge_agent.live.decimator import SPANS, level_for_span
from edge_agent.logs import get_logger

log = get_logger(__name__)

STATIC = Path(__file__).parent / "static"
# Seconds between trace pushes: one redraw a second (each costs the browser a full Plotly layout); an
# anomaly or a step does not wait for it (the board wakes the push loop).
PUSH_EVERY = 1.0
STATE_EVERY = 1.0  # seconds between state checks (anomalies, steps, lens, Atlas); one build serves all
MIN_GAP = 0.1  # seconds: the shortest time between two pushes to one page, however busy the board is
MAX_STREAMS = 8  # pages open at once: each costs a push loop and its socket
MAX_SPAN = 24 * 3600.0
PUBLIC_PATHS = frozenset(
    {"/", "/live/page.js", "/live/labels.js", "/live/tables.js", "/live/page.css", "/live/plotly.min.js"}
)
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

StateSource = Callable[[], Awaitable[dict[str, Any]]]


def plotly_js_path() -> Path | None:
    """plotly.min.js inside the installed `plotly` package, found without importing it."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "package_data" / "plotly.min.js"
        if candidate.is_file():
            return candidate
    return None


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)


class LivePage:
    """The page's routes and its push loops, reading a `LiveBoard` and a state source."""

    def __init__(
        self,
        board: LiveBoard,
        state: StateSource,
        bench: str,
        *,
        mono: Callable[[], float] = time.monotonic,
        push_every: float = PUSH_EVERY,
        state_every: float = STATE_EVERY,
    ) -> None:
        self.board = board
        self._state = state
        self.bench = bench
        self._mono = mono
        self.push_every = push_every
        self.state_every = state_every
        self._parts: dict[str, str] = {}
        self._parts_at = -math.inf
        self._marks = ""
        self._marks_version = -1
        self._parts_lock = asyncio.Lock()
        self._streams: set[_Stream] = set()
        board.listener = self._wake_all
        self.counters = {"streams_opened": 0, "streams_refused": 0, "bytes_sent": 0, "state_errors": 0}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/live/page.js", self._asset)
        app.router.add_get("/live/labels.js", self._asset)
        app.router.add_get("/live/tables.js", self._asset)
        app.router.add_get("/live/page.css", self._asset)
        app.router.add_get("/live/plotly.min.js", self._plotly)
        app.router.add_get("/live/snapshot", self._snapshot)
        app.router.add_get("/live/stream", self._stream)
        app.on_shutdown.append(self._close_streams)

    def status(self) -> dict[str, Any]:
        return {"streams": len(self._streams), **self.counters, "tap": self.board.summary()}

    # -- static -------------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "index.html", headers={"Content-Type": "text/html", "Cache-Control": "no-cache"}
        )

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        path = STATIC / Path(request.path).name
        return web.FileResponse(
            path, headers={"Content-Type": ASSET_TYPES[path.suffix], "Cache-Control": "no-cache"}
        )

    async def _plotly(self, request: web.Request) -> web.StreamResponse:
        path = plotly_js_path()
        if path is None:
            return web.json_response(
                {"error": "the plotly package is not installed (pip install plotly)"}, status=404
            )
        # A day's cache: the file changes only when the package is upgraded (the ETag says when).
        return web.FileResponse(
            path, headers={"Content-Type": "text/javascript", "Cache-Control": "max-age=86400"}
        )

    # -- data ---------------------------------------------------------------------------------------

    def _span(self, request: web.Request) -> float | web.Response:
        text = request.query.get("span", str(SPANS[0]))
        try:
            span = float(text)
        except ValueError:
            span = math.nan
        if not (math.isfinite(span) and 0 < span <= MAX_SPAN):
            return web.json_response(
                {"error": f"span must be seconds in (0, {MAX_SPAN:g}], got {text[:40]!r}"}, status=400
            )
        return span

    def _now_ms(self) -> float:
        return round((self._mono() + self.board.offset) * 1000.0, 1)

    def marks(self) -> str:
        """The marks part as JSON text, made again only when the board changed (for every page)."""
        version = self.board.version
        if version != self._marks_version:
            self._marks = _dumps(self.board.marks())
            self._marks_version = version
        return self._marks

    async def parts(self) -> dict[str, str]:
        """The state's other parts as JSON text, built at most once per `state_every` for every page
        (reading them may wait on the outbox's database thread)."""
        async with self._parts_lock:
            if self._mono() - self._parts_at >= self.state_every:
                try:
                    built = await self._state()
                    self._parts = {name: _dumps(value) for name, value in built.items()}
                except Exception as exc:  # a page must not take the agent down; say it once per kind
                    self.counters["state_errors"] += 1
                    if self.counters["state_errors"] == 1:
                        log.error("live_state_failed", exc_info=exc)
                self._parts_at = self._mono()
            return self._parts

    def _hello(self, span: float) -> dict[str, Any]:
        return {"bench": self.bench, "span": span, "level": level_for_span(span), "levels": levels_doc()}

    async def _snapshot(self, request: web.Request) -> web.Response:
        span = self._span(request)
        if isinstance(span, web.Response):
            return span
        parts = {"marks": self.marks(), **await self.parts()}
        level = level_for_span(span)
        body = (
            f'{{"hello":{_dumps(self._hello(span))},"now":{self._now_ms()},'
            f'"traces":{_dumps(self.board.traces(level))},'
            + ",".join(f'"{name}":{text}' for name, text in parts.items())
            + "}"
        )
        return web.Response(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        span = self._span(request)
        if isinstance(span, web.Response):
            return span
        if len(self._streams) >= MAX_STREAMS:
            self.counters["streams_refused"] += 1
            return web.json_response({"error": f"at most {MAX_STREAMS} live pages at once"}, status=503)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream = _Stream()
        self._streams.add(stream)
        self.counters["streams_opened"] += 1
        try:
            await self._push_loop(response, span, stream)
        except ConnectionError:
            pass  # the page went away
        finally:
            self._streams.discard(stream)
        return response

    async def _push_loop(self, response: web.StreamResponse, span: float, stream: _Stream) -> None:
        """Traces every `push_every`; the state's changed parts every `state_every`, and at once when
        the board changed (an anomaly opened: the page shades it without waiting for the next push)."""
        level = level_for_span(span)
        await self._send(response, "hello", _dumps(self._hello(span)))
        cursor: dict[str, int] | None = None
        sent: dict[str, str] = {}
        next_state = -math.inf
        while not stream.stopped:
            started = self._mono()
            stream.wake.clear()
            traces = self.board.traces(level, cursor)
            cursor = {}
            for source in traces:
                latest = self.board.decimator.latest_key(source, level)
                if latest is not None:
                    cursor[source] = latest
            await self._send(response, "traces", f'{{"now":{self._now_ms()},"sources":{_dumps(traces)}}}')
            parts = {"marks": self.marks()}
            if self._mono() >= next_state:
                parts.update(await self.parts())
                next_state = self._mono() + self.state_every
            changed = {name: text for name, text in parts.items() if sent.get(name) != text}
            if changed:
                await self._send(
                    response, "state", "{" + ",".join(f'"{n}":{t}' for n, t in changed.items()) + "}"
                )
                sent.update(changed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.wake.wait(), self.push_every)
            # A storm of events (thousands of anomalies a second) wakes it at most this often.
            rest = MIN_GAP - (self._mono() - started)
            if rest > 0 and not stream.stopped:
                await asyncio.sleep(rest)

    async def _send(self, response: web.StreamResponse, event: str, data: str) -> None:
        chunk = f"event: {event}\ndata: {data}\n\n".encode()
        self.counters["bytes_sent"] += len(chunk)
        await response.write(chunk)

    def _wake_all(self) -> None:
        for stream in self._streams:
            stream.wake.set()

    async def _close_streams(self, app: web.Application) -> None:
        for stream in list(self._streams):
            stream.stopped = True
            stream.wake.set()


class _Stream:
    """One open page: woken early by a change on the board, or for good when the server stops."""

    __slots__ = ("stopped", "wake")

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.stopped = False
