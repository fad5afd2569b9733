"""Event-loop lag: how late a short timer fires. A loop blocked by a synchronous call (a slow disk,
a CPU-bound parse) shows up here before anything else notices, and it is what the watchdog checks
before it tells systemd that the process is alive.

`LagTracker` is the sans-I/O core (times passed in); `LoopLagMonitor` is its asyncio task.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from edge_agent.grid import next_multiple

# The data path's tick and the recorder's hand-off come round every 0.25 s too: on the same grid
# (edge_agent.grid) the three share one wake-up. A stall is measured whatever the period (a tick is
# always pending); the period only sets how soon a stall that is still going on shows.
DEFAULT_PERIOD = 0.25
RECENT_TICKS = 20  # the gauge shows the worst tick of the last ~5 s, so a short stall is not missed


class LagTracker:
    """Keeps the lag of each tick (actual minus expected wake-up time).

    The read-and-reset `take_peak` serves the watchdog: every stall between two of its checks counts,
    however short. `recent_max` serves the metrics gauge.
    """

    __slots__ = ("_expected", "_peak", "_recent", "last", "ticks")

    def __init__(self) -> None:
        self.last = 0.0
        self.ticks = 0
        self._peak = 0.0
        self._expected: float | None = None
        self._recent: deque[float] = deque(maxlen=RECENT_TICKS)

    def expect(self, at: float) -> None:
        """A tick is scheduled for `at`; until it fires, `overdue(now)` grows."""
        self._expected = at

    def record(self, now: float) -> float:
        """The scheduled tick fired at `now`; returns its lag."""
        lag = 0.0 if self._expected is None else max(0.0, now - self._expected)
        self._expected = None
        self.last = lag
        self.ticks += 1
        self._recent.append(lag)
        if lag > self._peak:
            self._peak = lag
        return lag

    def overdue(self, now: float) -> float:
        """How late the pending tick already is: a loop that is blocked right now has no tick yet."""
        return 0.0 if self._expected is None else max(0.0, now - self._expected)

    def take_peak(self, now: float) -> float:
        """The worst lag since the previous call, the pending tick's lateness included; resets."""
        peak = max(self._peak, self.overdue(now))
        self._peak = 0.0
        return peak

    @property
    def recent_max(self) -> float:
        return max(self._recent, default=0.0)


class LoopLagMonitor:
    """Wakes at every multiple of `period` (edge_agent.grid) and records how late each wake-up is."""

    def __init__(self, period: float = DEFAULT_PERIOD, clock: Callable[[], float] = time.monotonic) -> None:
        if period <= 0:
            raise ValueError("period must be positive")
        self.period = period
        self.tracker = LagTracker()
        self._clock = clock

    async def run(self) -> None:
        """Runs until cancelled."""
        while True:
            deadline = next_multiple(self._clock(), self.period)
            self.tracker.expect(deadline)
            await asyncio.sleep(deadline - self._clock())
            self.tracker.record(self._clock())

    def take_peak(self) -> float:
        return self.tracker.take_peak(self._clock())

    @property
    def lag(self) -> float:
        """For the gauge: the worst recent tick, or the current one if the loop is late right now."""
        return max(self.tracker.recent_max, self.tracker.overdue(self._clock()))
