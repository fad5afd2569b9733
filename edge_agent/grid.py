"""Periodic tasks wake at the multiples of their period on the monotonic clock, so that they share
wake-ups.

A wake-up of the process costs more than most of what a periodic task does once awake: on a bench PC,
and far more in a VM (bench/RESULTS.md: ~65-95 us of CPU for a bare one on the benchmark machine),
with cold caches after it. A task that sleeps `period` from whenever its work ended drifts, and each
such task wakes the process on its own: the data path's tick, the recorder's hand-off and the loop-lag
monitor were ~18 wake-ups a second between them. Waking at the multiples of the period instead, tasks
with the same period (or one a multiple of another) wake together, in one turn of the event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


def next_multiple(now: float, period: float) -> float:
    """The first multiple of `period` after `now` (the same float for every `now` within one period,
    so two tasks asking within it get the same deadline)."""
    return (math.floor(now / period) + 1) * period


async def sleep_to_next(period: float, clock: Callable[[], float] | None = None) -> float:
    """Sleep until the next multiple of `period` on `clock` (the running loop's, the monotonic clock,
    by default); returns that deadline."""
    now = clock() if clock is not None else asyncio.get_running_loop().time()
    deadline = next_multiple(now, period)
    await asyncio.sleep(deadline - now)
    return deadline
