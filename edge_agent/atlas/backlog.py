"""What the reporter took on and could not act on yet: an incident event or an evidence window whose
handling failed for lack of disk or a full outbox stays at the head of this backlog, in order, and
every tick retries it, so it is delivered when space returns (counted, on /status). Nothing new
overtakes what waits: the events of one incident only make sense in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from edge_agent.evidence import EvidenceWindow
from edge_agent.incidents import IncidentEvent
from edge_agent.logs import get_logger
from edge_agent.outbox import OutboxError

log = get_logger(__name__)

# Incident events waiting while the disk (or the outbox quota) refuses them: each is a few kB, so this
# bounds the backlog to a few tens of MB; beyond it the oldest is dropped, counted and logged.
MAX_BACKLOG = 10_000

Backlogged = IncidentEvent | EvidenceWindow


class EventBacklog:
    def __init__(self, handle: Callable[[Backlogged], Awaitable[None]], counters: dict[str, int]) -> None:
        self._handle = handle
        self._counters = counters  # the reporter's: backlog_retries, backlog_dropped
        self._items: deque[Backlogged] = deque()
        self._error: str | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def run_or_keep(self, item: Backlogged) -> None:
        """Handle `item` now, or keep it behind what already waits (order per incident is kept)."""
        if self._items:
            self._keep(item)
            return
        try:
            await self._handle(item)
        except (OSError, OutboxError) as exc:
            self._keep(item)
            if self._error is None:
                log.error("reporter_backlog_waiting", error=str(exc), waiting=len(self._items))
            self._error = str(exc)

    def _keep(self, item: Backlogged) -> None:
        if len(self._items) >= MAX_BACKLOG:
            lost = self._items.popleft()
            self._counters["backlog_dropped"] += 1
            log.error("reporter_backlog_full_dropped", item=type(lost).__name__)
        self._items.append(item)

    async def work(self) -> None:
        """Retry what waits, oldest first, until it is empty or the first one fails again."""
        while self._items:
            self._counters["backlog_retries"] += 1
            try:
                await self._handle(self._items[0])
            except (OSError, OutboxError) as exc:
                self._error = str(exc)
                return
            self._items.popleft()
        if self._error is not None:
            log.info("reporter_backlog_delivered")
            self._error = None

    def status(self) -> dict[str, int | str | None]:
        return {"waiting": len(self._items), "error": self._error}
