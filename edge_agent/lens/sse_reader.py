"""Lens outputs from the SSE consumer (`reader = "sse"`), resuming with `Last-Event-ID` after a
drop so that nothing is read twice or skipped (within what the service retains).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from edge_agent.backoff import Backoff
from edge_agent.lens.client import LensClient
from edge_agent.lens.errors import LensAuthError, LensError, LensNotFound
from edge_agent.lens.outputs import OutputHandler
from edge_agent.logs import get_logger

log = get_logger(__name__)


class SseReader:
    def __init__(
        self,
        client: LensClient,
        outputs: OutputHandler,
        *,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.outputs = outputs
        self.last_event_id: str | None = None
        self.connects = 0
        self.bad_events = 0
        self._wall = wall_clock
        self._sleep = sleep

    async def run(self, session_id: str) -> None:
        """Read until cancelled or the session is gone (404). Auth failures propagate."""
        self.last_event_id = None
        backoff = Backoff(base=0.5, cap=15.0, jitter=1.0)
        while True:
            try:
                self.connects += 1
                async for event in self.client.sse_events(session_id, self.last_event_id):
                    backoff.reset()
                    if event.id is not None:
                        self.last_event_id = event.id
                    try:
                        message = json.loads(event.data)
                    except ValueError:
                        self.bad_events += 1
                        continue
                    if isinstance(message, dict):
                        self.outputs.handle(message, session_id, self._wall())
                # sse.stream.end / idle close: the session may still be producing; reconnect.
            except LensNotFound:
                log.info("lens_sse_session_gone", session_id=session_id)
                return
            except LensAuthError:
                raise
            except LensError as exc:
                log.warning("lens_sse_dropped", session_id=session_id, error=str(exc))
            await self._sleep(backoff.next_delay())
