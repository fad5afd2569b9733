"""The session websocket: paced `session.update` windows out, replies and outputs in.

One connection per session (`websockets` asyncio client), Bearer auth on the upgrade, protocol
pings for keepalive. The socket is request/response, so several requests may be outstanding; each
reply is matched to the oldest outstanding request *of its type* (`<type>.response`; the status
reply is the bare session record; an `error` answers the oldest request of any type).

Windows are offered without waiting (`offer`); `WindowPacer` decides when one may leave and drops
the oldest when the lens falls behind. `session.read` polls (when the reader is `session_read`)
and heartbeats (when nothing was written for `heartbeat_interval`) share the socket but not the
window pacing.

A connection ends by raising: `SessionGone` (the server no longer knows the session: replace it),
`LensAuthError` (stop), `StreamDropped` (anything else: reconnect with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from edge_agent.lens.errors import LensAuthError, is_unknown_session
from edge_agent.lens.outputs import OutputHandler
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.protocol import (
    HEARTBEAT,
    READ,
    STATUS,
    UPDATE,
    decode_reply,
    encode,
    heartbeat_event,
    read_event,
    read_messages,
    status_event,
    update_accepted,
    update_event,
)
from edge_agent.lens.status import status_of
from edge_agent.lens.windower import Window
from edge_agent.tls import client_context

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class StreamDropped(Exception):
    """The connection ended or could not be made; the session may still be fine."""


class SessionGone(Exception):
    """The server says the session is unknown, destroyed or failed: it must be replaced."""


@dataclass(slots=True)
class StreamStats:
    connects: int = 0
    drops: int = 0
    updates_sent: int = 0
    updates_accepted: int = 0
    updates_refused: int = 0  # answered, but the lens did not queue the window (its buffer was full)
    update_errors: int = 0
    reads_sent: int = 0
    status_checks: int = 0
    heartbeats_sent: int = 0
    replies: int = 0
    unmatched_replies: int = 0
    bad_replies: int = 0
    error_replies: int = 0
    # Seconds from a window's last sample (host receive time) to its update leaving the socket.
    send_latency: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


@dataclass(slots=True)
class StreamSettings:
    sensor_id: str = ""
    client_id: str = ""
    poll_reads: bool = True
    read_interval: float = 1.0
    heartbeat_interval: float = 30.0
    status_interval: float = 30.0  # ask for the session record this often (a FAILED session is silent)
    connect_timeout: float = 10.0
    reply_timeout: float = 30.0  # oldest outstanding request older than this: the link is dead
    ping_interval: float | None = 20.0
    record_latency: bool = False


@dataclass(slots=True)
class _Pending:
    kind: str
    sent_at: float
    seq: int = -1  # the window's seq, for session.update


@dataclass(slots=True)
class _Link:
    """What belongs to one connection; a new connection starts from a fresh one, so nothing of a
    dead socket (its unanswered requests, its timers) can leak into the next."""

    ws: ClientConnection
    next_read: float
    next_status: float
    last_write: float
    pending: deque[_Pending] = field(default_factory=deque)  # outstanding requests, in send order

    def has_pending(self, kind: str) -> bool:
        return any(pending.kind == kind for pending in self.pending)

    def answered(self, kind: str) -> _Pending | None:
        for index, pending in enumerate(self.pending):
            if pending.kind == kind:
                del self.pending[index]
                return pending
        return None


class Streamer:
    def __init__(
        self,
        pacer: WindowPacer[Window],
        outputs: OutputHandler,
        settings: StreamSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.pacer = pacer
        self.outputs = outputs
        self.settings = settings
        self.stats = StreamStats()
        self._clock = clock
        self._wall = wall_clock
        self._wake = asyncio.Event()
        # While the send loop waits: when it wakes by itself (its clock). An offered window wakes it
        # only if the pacer would let it go sooner: at 3 Mbaud windows complete ~40 times a second and
        # the pacer sends about one, so most offers need no task switch (issue 12 item 4).
        self._wakes_at = -math.inf
        self._session_id = ""

    def offer(self, window: Window) -> None:
        """Queue a window for sending. Never blocks; called from the frame path."""
        self.pacer.offer(window)
        ready = self.pacer.ready_at(self._clock())
        if ready is not None and ready < self._wakes_at:
            self._wake.set()

    def wake(self) -> None:
        """Look at the settings again now (the output reader was switched)."""
        self._wake.set()

    async def stream(self, endpoint: str, session_id: str, api_key: str) -> None:
        """Run one websocket connection until it ends (always by an exception, see module doc)."""
        if session_id != self._session_id:
            self.outputs.ledger.clear()  # a new session answers nothing of the old one
        self._session_id = session_id
        self.pacer.new_connection()  # after a reconnect: fresh windows only
        ws = await self._connect(endpoint, api_key)
        self.stats.connects += 1
        now = self._clock()
        link = _Link(ws, next_read=now, next_status=now + self.settings.status_interval, last_write=now)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send_loop(link))
                group.create_task(self._receive_loop(link))
        except* (SessionGone, LensAuthError, StreamDropped) as failures:
            raise failures.exceptions[0] from None
        finally:
            self.stats.drops += 1
            # Unanswered windows may or may not have reached the lens: leave them out of the ledger
            # rather than shift every later inference onto the wrong window.
            for pending in link.pending:
                if pending.seq >= 0:
                    self.outputs.ledger.forget(pending.seq)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await ws.close()

    async def _connect(self, endpoint: str, api_key: str) -> ClientConnection:
        s = self.settings
        tls = await client_context() if endpoint.startswith("wss:") else None
        try:
            return await connect(
                endpoint,
                ssl=tls,
                additional_headers={"Authorization": f"Bearer {api_key}"},
                user_agent_header="edge-agent",
                open_timeout=s.connect_timeout,
                ping_interval=s.ping_interval,
                ping_timeout=s.reply_timeout if s.ping_interval else None,
                close_timeout=2.0,
                max_size=MAX_MESSAGE_BYTES,
                compression=None,  # small JSON windows; CPU on bench PCs is worth more than bytes
                proxy=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise LensAuthError(
                    f"websocket upgrade for {self._session_id} refused", status=status
                ) from None
            if status in (404, 410):
                raise SessionGone(f"websocket for {self._session_id}: HTTP {status}") from None
            raise StreamDropped(f"websocket upgrade answered HTTP {status}") from None
        except (OSError, TimeoutError, InvalidHandshake, websockets.exceptions.WebSocketException) as exc:
            raise StreamDropped(f"websocket connect failed: {type(exc).__name__}: {exc}") from None

    async def _send(self, link: _Link, pending: _Pending, event: dict[str, Any]) -> None:
        text = encode(event)
        link.pending.append(pending)
        link.last_write = pending.sent_at
        try:
            await link.ws.send(text)
        except ConnectionClosed as exc:
            raise StreamDropped(f"connection closed while sending ({exc})") from None

    async def _send_loop(self, link: _Link) -> None:
        s = self.settings
        pacer = self.pacer
        while True:
            now = self._clock()
            if link.pending and now - link.pending[0].sent_at > s.reply_timeout:
                raise StreamDropped(f"no reply to {link.pending[0].kind} for {s.reply_timeout:g}s")
            if s.poll_reads and now >= link.next_read and not link.has_pending(READ):
                link.next_read = now + s.read_interval
                self.stats.reads_sent += 1
                await self._send(link, _Pending(READ, now), read_event(s.client_id))
                continue
            if now >= link.next_status and not link.has_pending(STATUS):
                link.next_status = now + s.status_interval
                self.stats.status_checks += 1
                await self._send(link, _Pending(STATUS, now), status_event())
                continue
            ready = pacer.ready_at(now)
            if ready is not None and ready <= now:
                window = pacer.take(now)
                self.outputs.ledger.sent(window)
                await self._send(link, _Pending(UPDATE, now, window.seq), update_event(window, s.sensor_id))
                self.stats.updates_sent += 1
                if s.record_latency:
                    self.stats.send_latency.append(self._clock() - window.end_mono)
                continue
            if now - link.last_write >= s.heartbeat_interval:
                self.stats.heartbeats_sent += 1
                await self._send(link, _Pending(HEARTBEAT, now), heartbeat_event())
                continue
            deadline = min(link.last_write + s.heartbeat_interval, link.next_status)
            if s.poll_reads:
                deadline = min(deadline, link.next_read)
            if ready is not None:
                deadline = min(deadline, ready)
            if link.pending:
                deadline = min(deadline, link.pending[0].sent_at + s.reply_timeout + 0.01)
            self._wake.clear()
            self._wakes_at = deadline
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that races
            # with the event being set, and this event is set on replies and on windows ready sooner.
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, deadline - now)):
                        await self._wake.wait()
            finally:
                self._wakes_at = -math.inf  # not waiting: the loop looks at the pacer before it waits

    async def _receive_loop(self, link: _Link) -> None:
        try:
            async for raw in link.ws:
                self._on_message(link, raw)
        except ConnectionClosed as exc:
            raise StreamDropped(f"connection closed ({exc})") from None
        raise StreamDropped("connection closed by the server")

    def _on_message(self, link: _Link, raw: str | bytes) -> None:
        try:
            reply = decode_reply(raw)
        except ValueError:
            self.stats.bad_replies += 1
            return
        self.stats.replies += 1
        kind = reply.answers
        if reply.error is not None:
            self.stats.error_replies += 1
            if is_unknown_session(reply.error):
                raise SessionGone(f"session {self._session_id}: {reply.error}")
            if not kind and link.pending:
                kind = link.pending[0].kind  # an untyped error answers the oldest request
        pending = link.answered(kind) if kind else None
        if pending is None:
            self.stats.unmatched_replies += 1
            return
        self._wake.set()
        if kind == UPDATE:
            self.pacer.acked()
            if update_accepted(reply):
                self.stats.updates_accepted += 1
            else:
                self.outputs.ledger.forget(pending.seq)
                if reply.error is not None:
                    self.stats.update_errors += 1
                    link.next_status = self._clock()  # a refusal may mean a FAILED session: ask
                else:
                    self.stats.updates_refused += 1
        elif kind == READ:
            messages = read_messages(reply)
            now_wall = self._wall()
            for message in messages:
                self.outputs.handle(message, self._session_id, now_wall)
            if messages:
                link.next_read = self._clock()  # more may be queued: drain before waiting
        elif kind == STATUS and status_of(reply.body).is_terminal:
            raise SessionGone(f"session {self._session_id} is {status_of(reply.body).value}")
