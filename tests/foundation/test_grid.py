"""Periodic tasks on one grid of times share the process's wake-ups (edge_agent/grid.py): counted on a
real event loop whose selector counts the waits that could sleep."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

from edge_agent.grid import next_multiple, sleep_to_next
from edge_agent.service.looplag import LoopLagMonitor

PERIOD = 0.05
ROUNDS = 6


class CountingSelector(selectors.DefaultSelector):
    """The loop's selector, counting the selects that may block (a wake-up each)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocking = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            self.blocking += 1
        return super().select(timeout)


def wake_ups(sleep: Callable[[], Awaitable[Any]], tasks: int = 3) -> int:
    """Blocking selects while `tasks` tasks, started a few ms apart, each sleep ROUNDS times."""
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)

    async def periodic(offset: float) -> None:
        await asyncio.sleep(offset)
        for _ in range(ROUNDS):
            await sleep()

    async def main() -> None:
        selector.blocking = 0
        await asyncio.wait_for(asyncio.gather(*(periodic(0.011 * i) for i in range(tasks))), 5.0)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return selector.blocking


def test_the_next_multiple_is_the_same_for_every_time_within_a_period() -> None:
    assert next_multiple(10.01, 0.25) == next_multiple(10.24, 0.25) == 10.25
    assert next_multiple(10.25, 0.25) == 10.5  # at a multiple: the next one, never now
    assert next_multiple(0.0, 0.1) == 0.1


def test_tasks_on_the_grid_wake_together_where_plain_sleeps_wake_apart() -> None:
    apart = wake_ups(lambda: asyncio.sleep(PERIOD))
    together = wake_ups(lambda: sleep_to_next(PERIOD))
    # Plain sleeps: one wake-up per task per round (plus the start-up offsets). On the grid: one per
    # round for all three, and the offsets.
    assert apart >= 3 * ROUNDS
    assert together <= ROUNDS + 4


async def test_the_loop_lag_monitor_expects_its_tick_at_the_grid_time() -> None:
    loop = asyncio.get_running_loop()
    monitor = LoopLagMonitor(period=PERIOD, clock=loop.time)
    task = asyncio.create_task(monitor.run())
    try:
        for _ in range(200):  # bounded: until three ticks were recorded (~0.15 s)
            if monitor.tracker.ticks >= 3:
                break
            await asyncio.sleep(0.01)
        deadline = await sleep_to_next(PERIOD)
        # The monitor's own tick was due at the same grid time: the lag it measured is how late that
        # turn of the loop came, never a period's worth.
        assert monitor.tracker.ticks >= 3
        assert 0.0 <= monitor.tracker.last < PERIOD / 2
        assert abs(loop.time() - deadline) < PERIOD / 2
    finally:
        task.cancel()
