"""Watchdog: pings arrive on a real datagram socket only while the loop answers and progress() holds."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.service.looplag import LagTracker, LoopLagMonitor
from edge_agent.service.notify import SystemdNotifier
from edge_agent.service.watchdog import Watchdog, WatchdogGate

INTERVAL = 0.4  # pings every 0.2 s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    out: list[str] = []
    for _ in range(10_000):
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    return out


class Harness:
    def __init__(self, listener: socket.socket, progress: list[bool]) -> None:
        self.listener = listener
        self.progress = progress
        self.monitor = LoopLagMonitor(period=0.02)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": listener.getsockname()})
        self.watchdog = Watchdog(notifier, INTERVAL, self.monitor, lambda: self.progress[0], max_lag=0.15)
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Harness:
        self.tasks = [asyncio.create_task(self.monitor.run()), asyncio.create_task(self.watchdog.run())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def until_checks(self, n: int) -> None:
        """Until the watchdog has made `n` more checks (bounded)."""
        target = self.watchdog.gate.pings + self.watchdog.gate.withheld + n
        for _ in range(200):
            if self.watchdog.gate.pings + self.watchdog.gate.withheld >= target:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("watchdog made no checks")

    async def until_pings(self, n: int) -> None:
        for _ in range(300):
            if self.watchdog.gate.pings >= n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"fewer than {n} pings")


async def test_pings_while_healthy(listener: socket.socket) -> None:
    async with Harness(listener, [True]) as h:
        await h.until_pings(3)
    messages = drain(listener)
    assert set(messages) == {"WATCHDOG=1"}
    assert len(messages) == h.watchdog.gate.pings >= 3


async def test_withholds_while_no_progress_and_resumes(listener: socket.socket) -> None:
    progress = [False]
    async with Harness(listener, progress) as h:
        await h.until_checks(3)
        assert drain(listener) == []
        assert h.watchdog.gate.withheld >= 3 and h.watchdog.gate.pings == 0
        assert h.watchdog.gate.reason == "pipeline made no progress"
        progress[0] = True
        await h.until_pings(1)
    assert "WATCHDOG=1" in drain(listener)
    assert h.watchdog.healthy


async def test_withholds_when_the_loop_is_blocked(listener: socket.socket) -> None:
    async with Harness(listener, [True]) as h:
        await h.until_pings(2)
        assert drain(listener)  # healthy so far
        withheld_before = h.watchdog.gate.withheld
        time.sleep(2 * INTERVAL)  # noqa: ASYNC251 - wedging the loop on purpose, for two intervals
        await h.until_checks(1)
        # The first check after the stall sees the lag and withholds; none were sent during it.
        assert h.watchdog.gate.withheld > withheld_before
        assert h.watchdog.gate.reason is not None and "event loop lagged" in h.watchdog.gate.reason
        assert drain(listener) == []
        pings = h.watchdog.gate.pings
        await h.until_pings(pings + 1)
    assert "WATCHDOG=1" in drain(listener)  # the loop answers again: pings resume


async def test_a_raising_progress_check_withholds(listener: socket.socket) -> None:
    def broken() -> bool:
        raise RuntimeError("tracker gone")

    monitor = LoopLagMonitor(period=0.02)
    watchdog = Watchdog(SystemdNotifier({"NOTIFY_SOCKET": listener.getsockname()}), 1.0, monitor, broken)
    assert not watchdog.check()
    assert watchdog.gate.reason == "progress check failed: RuntimeError: tracker gone"
    assert drain(listener) == []


def test_gate_decisions() -> None:
    gate = WatchdogGate(max_lag=0.5)
    assert gate.decide(0.1, True) is None
    assert gate.decide(0.6, True) == "event loop lagged 0.600s (limit 0.500s)"
    assert gate.decide(0.1, False) == "pipeline made no progress"
    assert gate.decide(0.1, None, "boom") == "progress check failed: boom"
    for verdict in ("x", "x", None, "y"):
        gate.observe(verdict)
    assert (gate.pings, gate.withheld, gate.reason) == (1, 3, "y")


def test_lag_tracker_counts_the_pending_tick_and_resets_the_peak() -> None:
    tracker = LagTracker()
    tracker.expect(10.0)
    assert tracker.overdue(9.0) == 0.0
    assert tracker.overdue(12.0) == 2.0  # blocked right now, no tick recorded yet
    assert tracker.take_peak(12.0) == 2.0
    assert tracker.record(12.5) == 2.5
    tracker.expect(12.6)
    assert tracker.record(12.61) == pytest.approx(0.01)
    assert tracker.take_peak(12.62) == 2.5  # the stall between two checks is not lost
    assert tracker.take_peak(12.63) == 0.0
    assert tracker.recent_max == 2.5
    assert tracker.ticks == 2


def test_from_environment() -> None:
    monitor, notifier = LoopLagMonitor(), SystemdNotifier({})
    assert Watchdog.from_environment(notifier, monitor, lambda: True, {}) is None
    watchdog = Watchdog.from_environment(notifier, monitor, lambda: True, {"WATCHDOG_USEC": "30000000"})
    assert watchdog is not None and watchdog.interval == 30.0 and watchdog.gate.max_lag == 7.5
