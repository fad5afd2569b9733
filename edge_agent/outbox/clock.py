"""The outbox's own timeline: seconds the agent has spent running, carried across restarts.

Every time the outbox stores or compares (a job's creation, its next attempt, the queue-wide pause,
the age at which a job is given up) is on this clock, never on `time.time()`:

- Within a process it is the monotonic clock, so a wall-clock step (NTP correcting a bench PC that
  booted without a network, an operator setting the date) changes nothing: a +30-day step does not
  make fresh jobs "7 days old", a -1 h step does not park the queue for an hour.
- Across restarts it continues from the last value the database recorded (each transaction records
  it, `JobStore`), and the downtime is NOT counted. A wall-clock delta across a restart cannot be told
  apart from a step taken while the agent was down (a bench PC that boots with its clock a month off),
  and any cap on it would be a guess; counting no downtime is the one rule that no step can fool.

So a job's age is "how long the agent has been trying to deliver it", which is what `max_age` means
to bound (7 days of a service refusing), and a job kept through a long power-off is retried, not given
up. The cost: a `Retry-After` or a backoff pending at shutdown is served again in full after the
restart (it is at most `max_retry_after`), and times shown on /status are ages, not dates.

A database that never recorded the clock (created before it existed, or fresh) starts it at the wall
clock, so the times it already holds (written on the wall clock) stay on one continuous timeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class OutboxClock:
    def __init__(
        self, mono: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self._mono = mono
        self._wall = wall
        self._base = wall()
        self._mono0 = mono()

    def resume(self, saved: float | None) -> None:
        """Continue from `saved` (the last value the database recorded), or from the wall clock."""
        self._base = float(saved) if saved is not None else self._wall()
        self._mono0 = self._mono()

    def now(self) -> float:
        return self._base + (self._mono() - self._mono0)
