"""Periodic tasks on one grid of times share the process's wake-ups (edge_agent/grid.py): counted on an
event loop whose selector counts the waits that could sleep. Its clock is virtual (a wait that could
sleep moves it on by its timeout at once), so the count is the schedule's, whatever the machine's load:
on a real clock a starved process wakes late and finds several timers due at once (a loaded run counted
13 wake-ups where the schedule has 18)."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

from edge_agent.grid import next_multiple, sleep_to_next
from edge_agent.service.looplag import LoopLagMonitor

PERIOD = 0.05
ROUNDS = 6


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.003  # on no multiple of PERIOD


class CountingSelector(selectors.DefaultSelector):
    """The loop's selector, counting the selects that may block (a wake-up each); such a select moves
    the virtual clock on by its timeout instead of sleeping (nothing else is watched here)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.blocking = 0
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            self.blocking += 1
            assert timeout is not None, "a wait with no timer due: nothing would ever wake it"
            self.clock.now += timeout
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, selector: CountingSelector) -> None:
        super().__init__(selector)
        self._virtual = selector.clock

    def time(self) -> float:
        return self._virtual.now


def wake_ups(sleep: Callable[[], Awaitable[Any]], tasks: int = 3) -> int:
    """Blocking selects while `tasks` tasks, started a few ms apart, each sleep ROUNDS times."""
    selector = CountingSelector(VirtualClock())
    loop = VirtualTimeLoop(selector)

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
    # Plain sleeps: one wake-up per task per round, plus the two start-up offsets (the first is 0). On
    # the grid: one per round for all three, plus the offsets.
    assert apart == 3 * ROUNDS + 2
    assert together == ROUNDS + 2


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
