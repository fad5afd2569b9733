"""Isolated consumers: an event the agent took on reaches every consumer, whatever another one does.

The anomaly pump hands each batch of events to several consumers (the step tracker, the reporter).
Each sits behind an `IsolatedConsumer`: events are given to it one at a time, and one that fails
(disk full under its state file, the outbox refusing a job, a bug) is kept, in order, with every later
event for that consumer, and offered again with backoff until it is taken. The other consumers go on
getting events meanwhile; a consumer never sees events out of order, and never the same event twice
unless it failed on it (so a consumer must fail before its side effects, or be idempotent per event).

Memory is bounded in bytes (`budget_bytes`, each event's size estimated by the caller): an event
that does not fit is dropped, counted and logged (once per episode), the one loss this can make, and
it is on /status and in the metrics. The agent's default budget holds thousands of anomaly events.

Fatal errors (`fatal`: a refused credential) are not kept: they propagate to the supervisor.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from edge_agent.backoff import Backoff
from edge_agent.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

DEFAULT_BUDGET_BYTES = 8 * 1024 * 1024


class IsolatedConsumer(Generic[T]):
    def __init__(
        self,
        name: str,
        deliver: Callable[[Sequence[T]], Awaitable[None]],
        size_of: Callable[[T], int],
        *,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        fatal: tuple[type[BaseException], ...] = (),
        retry_base: float = 0.25,
        retry_cap: float = 5.0,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._deliver = deliver
        self._size_of = size_of
        self.budget_bytes = budget_bytes
        self._fatal = fatal
        self._mono = mono
        self._backoff = Backoff(retry_base, retry_cap, jitter=0.0)
        self._backlog: deque[tuple[T, int]] = deque()
        self.backlog_bytes = 0
        self._next_retry = 0.0
        self._since: float | None = None
        self.last_error: str | None = None
        self.delivered = 0
        self.failures = 0
        self.delivered_late = 0
        self.dropped = 0
        self._dropping = False

    @property
    def waiting(self) -> int:
        return len(self._backlog)

    def retry_in(self, now: float | None = None) -> float | None:
        """Seconds until the next retry is due; None when nothing waits."""
        if not self._backlog:
            return None
        return max(0.0, self._next_retry - (self._mono() if now is None else now))

    async def offer(self, events: Sequence[T]) -> None:
        for event in events:
            if self._backlog or not await self._try(event):
                self._keep(event)

    async def retry_due(self, *, force: bool = False) -> None:
        """Offer the kept events again, oldest first, if their retry is due (or `force`)."""
        if not self._backlog or (not force and self._mono() < self._next_retry):
            return
        while self._backlog:
            event, size = self._backlog[0]
            if not await self._try(event, retrying=True):
                return
            self._backlog.popleft()
            self.backlog_bytes -= size
            self.delivered_late += 1
        log.warning(
            "consumer_caught_up",
            consumer=self.name,
            waited_s=None if self._since is None else round(self._mono() - self._since, 3),
            delivered_late=self.delivered_late,
        )
        self._backoff.reset()
        self._since = None
        self._dropping = False
        self.last_error = None

    async def _try(self, event: T, *, retrying: bool = False) -> bool:
        try:
            await self._deliver([event])
        except self._fatal:
            raise
        except Exception as exc:
            self.failures += 1
            first = self.last_error is None
            self.last_error = f"{type(exc).__name__}: {exc}"
            delay = self._backoff.next_delay()
            self._next_retry = self._mono() + delay
            if first:
                self._since = self._mono()
                log.error(
                    "consumer_failed_event_kept",
                    consumer=self.name,
                    error=self.last_error,
                    retry_in_s=round(delay, 3),
                    retrying=retrying,
                )
            return False
        self.delivered += 1
        return True

    def _keep(self, event: T) -> None:
        size = max(1, self._size_of(event))
        if self.backlog_bytes + size > self.budget_bytes:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(
                    "consumer_backlog_full_event_dropped",
                    consumer=self.name,
                    budget_bytes=self.budget_bytes,
                    waiting=len(self._backlog),
                    error=self.last_error,
                )
            return
        self._backlog.append((event, size))
        self.backlog_bytes += size

    def status(self) -> dict[str, Any]:
        return {
            "waiting": len(self._backlog),
            "waiting_bytes": self.backlog_bytes,
            "budget_bytes": self.budget_bytes,
            "waiting_for_s": None if self._since is None else round(self._mono() - self._since, 3),
            "last_error": self.last_error,
            "retry_in_s": None if (due := self.retry_in()) is None else round(due, 3),
            "delivered": self.delivered,
            "delivered_late": self.delivered_late,
            "failures": self.failures,
            "dropped": self.dropped,
        }
