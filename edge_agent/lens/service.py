"""The lens side of the agent, assembled: frames in (`feed`, never blocks), inferences out
(`on_inference`), and one supervising coroutine (`run`) that keeps a session streaming.

`run` destroys the leftovers of an earlier run, then loops: open a session (create, record,
RUNNING), stream on its websocket until the connection ends, reconnect with backoff while the
session lives, replace it (with backoff) when the server destroyed, expired or failed it. On the
way out (cancel or `stop`) it destroys its session. 401/403 end `run` with `LensAuthError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.backoff import Backoff
from edge_agent.config import LensSection
from edge_agent.frames import Frame, FrameBatch, LinkEvent, SerialEvent
from edge_agent.lens.client import LensClient, SessionInfo
from edge_agent.lens.lifecycle import LifecycleSettings, SessionLifecycle
from edge_agent.lens.outputs import OutputHandler
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.routing import SESSION_READ, SSE, OutputRouting
from edge_agent.lens.sse_reader import SseReader
from edge_agent.lens.store import SessionStore
from edge_agent.lens.streamer import SessionGone, StreamDropped, Streamer, StreamSettings
from edge_agent.lens.windower import Scale, Window, Windower, window_bytes
from edge_agent.logs import get_logger
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)

MIB = 1024 * 1024

SHUTDOWN_DESTROY_TIMEOUT = 10.0
STABLE_CONNECTION_SECONDS = 10.0  # a connection that lasted this long resets the reconnect backoff
ORPHAN_SEARCH_INTERVAL = 5.0  # while a lost create's session may still appear in the org's list
ROUTING_CHECK_INTERVAL = 1.0  # how often reader = auto looks for outputs (a tenth of the wait if shorter)
# Windows are built from this many window periods before the send queue's next slot (edge_agent/lens/
# pacer.py sends the newest then): the newest is at most about a period old when the slot comes, as
# the reads come in batches, and a window built after the slot opened leaves at once.
SLOT_LEAD_WINDOWS = 2.0


class LensService:
    def __init__(
        self,
        config: LensSection,
        state_dir: Path,
        on_inference: Callable[[LensInference], None],
        *,
        source: str,
        max_gap: float | None = None,
        record_latency: bool = False,
        health: StateFileHealth | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.channels:
            raise ValueError("lens.channels is empty: name the channels that make a window")
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        self.config = config
        self._clock = clock
        self._key = key
        self.client = LensClient(
            config.api_url, key, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout
        )
        self.store = SessionStore(state_dir, health=health)
        register = config.register_spec
        self.lifecycle = SessionLifecycle(
            self.client,
            self.store,
            LifecycleSettings(
                lens_id=config.lens_id,
                register_name=register.lens_name if register else "",
                register_config=dict(register.lens_config) if register else None,
                ready_timeout=config.ready_timeout,
                status_poll_interval=config.status_poll_interval,
                reap_unknown_creates=config.reap_unknown_creates,
                clock_skew=config.clock_skew,
                create_timeout=config.connect_timeout + config.read_timeout,
            ),
        )
        self.windower = Windower(
            source,
            config.channels,
            config.window_size,
            config.step_size,
            missing=config.missing,
            scaling={name: Scale(s.mean, s.std) for name, s in config.scaling.items()},
            max_gap=max_gap if max_gap is not None else config.max_gap,
            wanted=self._windows_wanted,
        )
        self.pacer: WindowPacer[Window] = WindowPacer(
            config.max_windows_per_second,
            config.max_in_flight,
            config.queue_windows,
            queue_bytes=int(config.queue_mb * MIB),
            cost=window_bytes,
        )
        self.outputs = OutputHandler(source, on_inference)
        self.routing = OutputRouting(config.reader, config.no_output_after)
        self.streamer = Streamer(
            self.pacer,
            self.outputs,
            StreamSettings(
                sensor_id=config.sensor_id or source,
                client_id=config.client_id,  # else the persisted one, read in run() (off the loop)
                poll_reads=self.routing.reader == SESSION_READ,
                read_interval=config.read_interval,
                heartbeat_interval=config.heartbeat_interval,
                connect_timeout=config.connect_timeout,
                reply_timeout=config.read_timeout,
                record_latency=record_latency,
            ),
            clock=clock,
        )
        self.sse = SseReader(self.client, self.outputs)
        self.session: SessionInfo | None = None
        self.sessions_opened = 0
        self.running = asyncio.Event()  # set while a session is streaming

    # -- frame path ---------------------------------------------------------------------------------

    def feed(self, event: SerialEvent) -> None:
        """One serial event in. Never blocks, never raises on data: the serial side must not wait."""
        if isinstance(event, Frame):
            window = self.windower.push(event)
            if window is not None:
                self.streamer.offer(window)
        elif isinstance(event, LinkEvent):
            self.windower.link(event)

    def feed_batch(self, batch: FrameBatch) -> None:
        """The frames of one read (never blocks, never raises on data)."""
        for window in self.windower.push_batch(batch):
            self.streamer.offer(window)

    def _windows_wanted(self) -> bool:
        """Whether the window just completed could be the one the lens gets: the send queue has a slot
        within the next SLOT_LEAD_WINDOWS windows. Otherwise a newer window would supersede it before
        it could leave, and building it is wasted (at 5,000 lines/s in windows of 128, 39 windows a
        second for the lens's one: 0.4 point of a core, issue 12 item 4)."""
        now = self._clock()
        slot = self.pacer.slot_at(now)
        return slot is not None and slot - now <= SLOT_LEAD_WINDOWS * self.windower.period

    # -- supervision --------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            client_id = await asyncio.to_thread(self.store.client_id, self.config.client_id)
            self.streamer.settings.client_id = client_id
            await self.lifecycle.destroy_leftovers()
            replace_backoff = Backoff(base=1.0, cap=60.0, jitter=1.0)
            while True:
                self.session = await self.lifecycle.open()
                self.sessions_opened += 1
                reaper = (
                    asyncio.create_task(self.lifecycle.reap_until_settled(ORPHAN_SEARCH_INTERVAL))
                    if self.lifecycle.unknown_creates_pending
                    else None
                )
                try:
                    gone = await self._stream_session(self.session)
                finally:
                    if reaper is not None:
                        reaper.cancel()
                        await asyncio.gather(reaper, return_exceptions=True)
                log.warning("lens_session_lost", session_id=self.session.session_id, reason=gone)
                self.running.clear()
                await self.lifecycle.close(self.session.session_id)
                self.lifecycle.stats.replaced += 1
                self.session = None
                await asyncio.sleep(replace_backoff.next_delay())
        finally:
            self.running.clear()
            await asyncio.shield(self._shutdown())

    async def _stream_session(self, session: SessionInfo) -> str:
        """Stream on the session until the server no longer has it; returns why."""
        reconnect = Backoff(base=0.2, cap=15.0, jitter=1.0)
        reader = _Reader(self, session.session_id)
        watcher = asyncio.create_task(self._watch_routing(reader))
        try:
            while True:
                started = time.monotonic()
                self.running.set()
                try:
                    await self.streamer.stream(session.endpoint, session.session_id, self._key)
                except SessionGone as exc:
                    return str(exc)
                except StreamDropped as exc:
                    self.running.clear()
                    if time.monotonic() - started >= STABLE_CONNECTION_SECONDS:
                        reconnect.reset()
                    status = await self.lifecycle.status(session.session_id)
                    if status is not None and status.is_terminal:
                        return f"session is {status.value}"
                    delay = reconnect.next_delay()
                    log.warning("lens_stream_dropped", session_id=session.session_id, error=str(exc),
                                retry_in=round(delay, 2))  # fmt: skip
                    await asyncio.sleep(delay)
        finally:
            watcher.cancel()
            # gather, not a suppress(CancelledError): our own cancellation must still propagate.
            await asyncio.gather(watcher, return_exceptions=True)
            await reader.stop()

    async def _watch_routing(self, reader: _Reader) -> None:
        """Feed the routing core the counters; switch readers when it says (reader = auto)."""
        reader.apply()
        interval = min(ROUTING_CHECK_INTERVAL, self.routing.no_output_after / 10)
        while not self.routing.settled:
            await asyncio.sleep(interval)
            switched = self.routing.observe(
                time.monotonic(), self.streamer.stats.updates_accepted, self.outputs.stats.messages
            )
            if switched is not None:
                reader.apply()

    async def _shutdown(self) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_DESTROY_TIMEOUT):
                # Stopped while the session was still starting: it holds a runner slot all the same.
                session_id = self.session.session_id if self.session is not None else self.lifecycle.opening
                if session_id is not None:
                    await self.lifecycle.close(session_id)
                    self.session = None
                    self.lifecycle.opening = None
                await self.lifecycle.delete_registered_lens()
        except Exception as exc:  # shutdown must finish; a failed destroy leaves the record for next start
            log.warning("lens_shutdown_incomplete", error=str(exc) or type(exc).__name__)
        finally:
            await self.client.close()

    def counters(self) -> dict[str, float]:
        """Every counter of the lens side, flat (for /status and metrics)."""
        out: dict[str, float] = {}
        for prefix, stats in (
            ("windower", self.windower.stats),
            ("pacer", self.pacer.stats),
            ("stream", self.streamer.stats),
            ("lifecycle", self.lifecycle.stats),
        ):
            for name in stats.__slots__:
                value = getattr(stats, name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"{prefix}_{name}"] = value
        out["outputs_results"] = self.outputs.stats.results
        out["outputs_unmatched"] = self.outputs.stats.unmatched
        for kind, count in self.outputs.stats.errors.items():
            out[f"outputs_error_{kind}"] = count
        out["outputs_messages"] = self.outputs.stats.messages
        out["routing_switches"] = len(self.routing.switches)
        return out


class _Reader:
    """The output reader of one session, as the routing says: `session.read` polls on the streamer's
    socket, or the SSE consumer task."""

    def __init__(self, service: LensService, session_id: str) -> None:
        self.service = service
        self.session_id = session_id
        self.sse_task: asyncio.Task[None] | None = None

    def apply(self) -> None:
        reader = self.service.routing.reader
        self.service.streamer.settings.poll_reads = reader == SESSION_READ
        self.service.streamer.wake()
        if reader == SSE and self.sse_task is None:
            self.sse_task = asyncio.create_task(self.service.sse.run(self.session_id))
        elif reader != SSE and self.sse_task is not None:
            self.sse_task.cancel()
            self.sse_task = None

    async def stop(self) -> None:
        if self.sse_task is not None:
            self.sse_task.cancel()
            await asyncio.gather(self.sse_task, return_exceptions=True)
            self.sse_task = None
