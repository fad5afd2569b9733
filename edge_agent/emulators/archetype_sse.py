"""The SSE consumer of the Archetype lens emulator (`GET /v0.5/lens/sessions/consumer/{id}`): one
reader per open stream, fed the session's outputs as the runner produces them; `sse.stream.start`,
heartbeats while nothing comes, a resume after `Last-Event-ID` from the retained outputs, and
`sse.stream.end` when the session ends or the stream stays idle past its timeout."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

from edge_agent.emulators.archetype_core import LensService, RequestError
from edge_agent.emulators.archetype_session import SESSION_READ, Event, Output
from edge_agent.emulators.faults import FaultInjector

SSE_QUEUE_MAX = 1000


@dataclass(eq=False)
class SseReader:
    queue: asyncio.Queue[Output | None] = field(default_factory=lambda: asyncio.Queue(SSE_QUEUE_MAX))
    overflow: int = 0


def offer(reader: SseReader, item: Output | None) -> None:
    try:
        reader.queue.put_nowait(item)
    except asyncio.QueueFull:
        reader.overflow += 1


def parse_last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class SseConsumers:
    def __init__(
        self, service: LensService, faults: FaultInjector, *, heartbeat: float, idle_timeout: float
    ) -> None:
        self.service = service
        self.faults = faults
        self.heartbeat = heartbeat
        self.idle_timeout = idle_timeout
        self.readers: dict[str, set[SseReader]] = {}

    def count(self) -> int:
        return sum(len(readers) for readers in self.readers.values())

    def publish(self, session_id: str, output: Output) -> None:
        for reader in self.readers.get(session_id, set()):
            offer(reader, output)

    def end(self, session_id: str) -> None:
        """The session ended: its streams send `sse.stream.end` and close."""
        for reader in self.readers.get(session_id, set()):
            offer(reader, None)

    def end_all(self) -> None:
        for readers in self.readers.values():
            for reader in readers:
                offer(reader, None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        session = self.service.live_session(session_id, self.faults.now())
        if session is None:
            missing = RequestError(404, "session_not_found", f"Unknown session id: {session_id}")
            return web.json_response(missing.body(), status=missing.status)
        after = parse_last_event_id(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
            }
        )
        await response.prepare(request)
        reader = SseReader()
        self.readers.setdefault(session_id, set()).add(reader)
        sent_messages = sent_bytes = 0
        loop = asyncio.get_running_loop()

        async def send(event: Event, event_id: int) -> None:
            nonlocal sent_bytes
            frame = f"id: {event_id}\nevent: message\ndata: {json.dumps(event)}\n\n".encode()
            sent_bytes += len(frame)
            await response.write(frame)

        try:
            reader_id = f"{id(reader) & 0xFFFFFFFFFFFFFFFF:016x}"
            start = {
                "type": "sse.stream.start",
                "event_data": {"session_id": session_id, "reader_id": reader_id},
            }
            await send(start, session.next_frame_id())
            if after is not None and session.route() != SESSION_READ:
                # Resume: what was produced after the client's last id (retained outputs only).
                for output in list(session.outputs):
                    if output.event_id > after:
                        await send(output.event, output.event_id)
                        sent_messages += 1
            last_output = next_heartbeat = loop.time()
            next_heartbeat += self.heartbeat
            while True:
                deadline = min(next_heartbeat, last_output + self.idle_timeout)
                try:
                    item = await asyncio.wait_for(
                        reader.queue.get(), timeout=max(0.0, deadline - loop.time())
                    )
                except TimeoutError:
                    if loop.time() >= last_output + self.idle_timeout:
                        break
                    heartbeat = {
                        "type": "sse.stream.heartbeat",
                        "event_data": {
                            "session_id": session_id,
                            "session_status": session.status,
                            "num_messages": sent_messages,
                            "num_bytes": sent_bytes,
                            "message_timeout": self.heartbeat,
                        },
                    }
                    await send(heartbeat, session.next_frame_id())
                    next_heartbeat = loop.time() + self.heartbeat
                    continue
                if item is None:
                    break
                await send(item.event, item.event_id)
                sent_messages += 1
                last_output = loop.time()
            await send({"type": "sse.stream.end"}, session.next_frame_id())
        except ConnectionError:
            pass  # the consumer went away; nothing to tell it
        finally:
            self.readers.get(session_id, set()).discard(reader)
        return response
