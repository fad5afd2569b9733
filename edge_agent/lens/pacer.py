"""Sans-I/O send pacing for windows: what the lens can take, without ever blocking the producer.

The lens runs about one inference a second and buffers about 20 windows; pushing faster only
fills its buffer and then its silence. So windows wait here in a queue bounded in windows and in
bytes (`queue_bytes`, each window's `cost`; the newest window is always kept); a window may leave
when (a) at least 1/`max_per_second` s passed since the previous one left and (b) fewer than
`max_in_flight` sent windows are still unacknowledged. When the queue is full the *oldest* waiting
window is dropped (and counted): the lens is better served by what is happening now.

For the same reason, under a rate limit the window that leaves is the *newest* waiting one, and the
older ones are dropped with it (`superseded`): windows that come faster than the lens takes them
would otherwise each wait the queue's length (20 windows at 1.5 a second: 13 s) before the lens saw
them. Only an unlimited rate (`max_per_second` inf: as fast as the lens acknowledges) sends every
window in order. `slot_at` says when a window offered now could leave, so the producer need not make
windows that would only be superseded (edge_agent/lens/service.py).

The caller passes the time in and does the sending; this class only decides.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class PacerStats:
    offered: int = 0
    sent: int = 0
    acked: int = 0
    dropped_queue_full: int = 0  # oldest waiting windows pushed out by newer ones (count or bytes)
    superseded: int = 0  # waiting windows dropped because a newer one was sent in their place
    dropped_reconnect: int = 0  # waiting windows discarded when the connection was replaced
    lost_in_flight: int = 0  # sent but never acknowledged (the connection dropped)
    peak_queued_bytes: int = 0  # the most bytes (by `cost`) waiting at once


class WindowPacer(Generic[T]):
    def __init__(
        self,
        max_per_second: float,
        max_in_flight: int,
        queue_limit: int,
        *,
        queue_bytes: int | None = None,
        cost: Callable[[T], int] | None = None,
    ) -> None:
        if max_per_second <= 0 or max_in_flight < 1 or queue_limit < 1:
            raise ValueError("pacing limits must be positive")
        if (queue_bytes is None) != (cost is None) or (queue_bytes is not None and queue_bytes < 1):
            raise ValueError("a byte bound needs a positive queue_bytes and a cost")
        self.interval = 0.0 if math.isinf(max_per_second) else 1.0 / max_per_second
        self.max_in_flight = max_in_flight
        self._queue: deque[T] = deque()
        self._costs: deque[int] = deque()
        self.queued_bytes = 0
        self._queue_bytes = queue_bytes if queue_bytes is not None else math.inf
        self._cost = cost
        self._queue_limit = queue_limit
        self._in_flight = 0
        self._last_sent: float | None = None
        self.stats = PacerStats()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def offer(self, item: T) -> None:
        """Queue an item; never blocks. Full queue (count or bytes): the oldest waiting items are
        dropped; the newest is kept whatever it costs."""
        self.stats.offered += 1
        cost = self._cost(item) if self._cost is not None else 0
        queue, costs = self._queue, self._costs
        queue.append(item)
        costs.append(cost)
        self.queued_bytes += cost
        while len(queue) > self._queue_limit or (self.queued_bytes > self._queue_bytes and len(queue) > 1):
            queue.popleft()
            self.queued_bytes -= costs.popleft()
            self.stats.dropped_queue_full += 1
        if self.queued_bytes > self.stats.peak_queued_bytes:
            self.stats.peak_queued_bytes = self.queued_bytes

    def ready_at(self, now: float) -> float | None:
        """When the next item may be sent (<= now: at once); None while nothing can be (empty queue
        or the in-flight window is full: only an acknowledgement can change that)."""
        if not self._queue:
            return None
        return self.slot_at(now)

    def slot_at(self, now: float) -> float | None:
        """When an item offered now could leave (<= now: at once); None while the in-flight window
        is full (only an acknowledgement can open it)."""
        if self._in_flight >= self.max_in_flight:
            return None
        if self._last_sent is None:
            return now
        return max(now, self._last_sent + self.interval)

    def take(self, now: float) -> T:
        """The item to send now (the caller checked `ready_at`): the newest waiting under a rate
        limit, the older ones dropped as superseded; the oldest with an unlimited rate."""
        if self.interval > 0.0 and len(self._queue) > 1:
            self.stats.superseded += len(self._queue) - 1
            item = self._queue.pop()
            self._queue.clear()
            self._costs.clear()
            self.queued_bytes = 0
        else:
            item = self._queue.popleft()
            self.queued_bytes -= self._costs.popleft()
        self._in_flight += 1
        self._last_sent = now
        self.stats.sent += 1
        return item

    def acked(self) -> None:
        if self._in_flight > 0:
            self._in_flight -= 1
            self.stats.acked += 1

    def new_connection(self) -> None:
        """The connection was replaced: unacknowledged items are lost with it, and waiting ones are
        stale (streaming resumes with fresh windows)."""
        self.stats.lost_in_flight += self._in_flight
        self.stats.dropped_reconnect += len(self._queue)
        self._in_flight = 0
        self._queue.clear()
        self._costs.clear()
        self.queued_bytes = 0
