"""The session websockets of the Archetype lens emulator (`GET /v0.5/lens/sessions/{id}`): each text
or binary frame is one event, answered by exactly one reply (the dispatcher of the emulator); the
`latency` fault delays replies, and a socket can be dropped (aborted, as a dead network or node
would) by the admin call or every `ws_drop_every` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from edge_agent.emulators.archetype_core import LensService
from edge_agent.emulators.archetype_session import Event, error_event
from edge_agent.emulators.faults import FaultInjector

EVENT_PROTOCOL = "event-protocol-v1"


@dataclass(eq=False)
class SocketConn:
    session_id: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    opened_at: float  # loop time
    dropped: bool = False


class SessionSockets:
    def __init__(
        self, service: LensService, faults: FaultInjector, dispatch: Callable[[str, Any], Event]
    ) -> None:
        self.service = service
        self.faults = faults
        self._dispatch = dispatch
        self._open: set[SocketConn] = set()
        self._background: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._open)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        ws = web.WebSocketResponse(protocols=(EVENT_PROTOCOL,))
        await ws.prepare(request)
        conn = SocketConn(session_id, ws, request.transport, asyncio.get_running_loop().time())
        self._open.add(conn)
        session = self.service.sessions.get(session_id)
        if session is not None:
            session.active_connections += 1
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    reply = self._socket_event(session_id, message.data)
                elif message.type == WSMsgType.BINARY:
                    # The official client sends its JSON as binary frames (§3.2).
                    reply = self._socket_event(session_id, message.data)
                else:
                    continue
                latency = self.faults.settings.latency
                if latency > 0 and request.path.startswith(self.faults.settings.path_prefix):
                    self.faults.injected["latency"] += 1
                    await asyncio.sleep(latency)
                await ws.send_str(json.dumps(reply))
        except ConnectionError:
            pass
        finally:
            self._open.discard(conn)
            if session is not None:
                session.active_connections -= 1
        return ws

    def _socket_event(self, session_id: str, raw: str | bytes) -> Event:
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_event(f"Malformed JSON event: {exc}")
        return self._dispatch(session_id, event)

    def drop_session(self, session_id: str | None = None) -> int:
        """Drop the sockets of `session_id` (every socket for None); how many were dropped."""
        dropped = 0
        for conn in list(self._open):
            if session_id is None or conn.session_id == session_id:
                dropped += self._drop(conn)
        return dropped

    def drop_older_than(self, age: float) -> None:
        loop = asyncio.get_running_loop()
        for conn in list(self._open):
            if loop.time() - conn.opened_at >= age:
                self._drop(conn)

    def _drop(self, conn: SocketConn) -> int:
        if conn.dropped:
            return 0
        conn.dropped = True
        self.faults.injected["ws_drop"] += 1
        # An abort, not a close handshake: what a client sees when the network or a node dies.
        if conn.transport is not None:
            conn.transport.abort()
        else:
            task = asyncio.create_task(conn.ws.close())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return 1

    async def close_all(self) -> None:
        for conn in list(self._open):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), timeout=1.0)
