"""The asyncio adapter: paces a Feed in real time onto a PtyPort and writes the oracle file.

Scenario time runs `speed` times faster than the host's monotonic clock. Oracle records carry the
scheduled host times of their scenario times (`*_mono`, `*_wall`): when the loop is late the line is
written late, so a harness matching anomalies against the oracle should allow for that lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import IO, Any, TextIO

from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.outputs import LinkChange, OracleEntry, Write
from edge_agent.bench_sim.pty_port import PtyPort

# Sleeping less than this per tick costs more in wake-ups than it buys in pacing: at high rates the
# lines due in one tick go out together.
MIN_TICK = 0.002
# At the end, how long to wait for a reader to take the last lines: closing the pty discards what
# is still queued, and a demo's last step END marker must not be lost to a quick exit.
LINGER = 2.0
# ... and how long its queue must stay empty before the pty is closed: the kernel moves written bytes
# to that queue in a worker of its own, which a loaded machine runs late (30 ms of an empty queue once
# closed the pty on 4 lines still on their way: a loaded test run read 146 of 150).
LINGER_QUIET = 0.15


class OracleWriter:
    """JSON lines, flushed one by one: a harness can tail the file and a crash loses nothing written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class BenchRunner:
    def __init__(
        self,
        feed: Feed,
        port: PtyPort,
        *,
        speed: float = 1.0,
        oracle: OracleWriter | None = None,
        run_info: dict[str, Any] | None = None,
        unplug_every: float | None = None,
        unplug_for: float = 2.0,
        status: TextIO | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.feed = feed
        self.port = port
        self.speed = speed
        self.oracle = oracle
        self.run_info = run_info or {}
        self.unplug_every = unplug_every
        self.unplug_for = unplug_for
        self.status = status
        self.ready = asyncio.Event()
        self.lines_written = 0
        self._stop = asyncio.Event()
        self._mono0 = 0.0
        self._wall0 = 0.0
        self._full_since: float | None = None
        self._dropped_at_full = 0

    def now(self) -> float:
        """Scenario time now."""
        return (time.monotonic() - self._mono0) * self.speed

    def stop(self) -> None:
        self._stop.set()

    def request_unplug(self, duration: float | None = None) -> None:
        """Unplug now for `duration` (default `unplug_for`) scenario seconds, then replug on a new pty."""
        self.feed.request_unplug(self.now(), self.unplug_for if duration is None else duration)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGUSR1, self.request_unplug)

    def remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            loop.remove_signal_handler(sig)

    def _times(self, t: float) -> tuple[float, float]:
        return self._mono0 + t / self.speed, self._wall0 + t / self.speed

    def _record(self, record: dict[str, Any], t: float) -> None:
        if self.oracle is None:
            return
        out = dict(record)
        for edge in ("start", "end"):
            if f"{edge}_s" in out:
                out[f"{edge}_mono"], out[f"{edge}_wall"] = self._times(out[f"{edge}_s"])
        out["t_s"] = t
        out["mono"], out["wall"] = self._times(t)
        self.oracle.write(out)

    def _say(self, text: str) -> None:
        if self.status is not None:
            print(text, file=self.status, flush=True)

    def _plugged(self, t: float) -> None:
        path = self.port.open()
        self._say(f"pty={path} link={self.port.link or ''}")
        self._record({"record": "link", "state": "up", "pty": path, "link": str(self.port.link or "")}, t)

    async def run(self) -> dict[str, Any]:
        """Run until the feed is exhausted or `stop()`; returns the summary (also the oracle's last line)."""
        self._mono0, self._wall0 = time.monotonic(), time.time()
        next_unplug = self.unplug_every
        try:
            self._plugged(0.0)
            self._record({"record": "run", **self.run_info, "speed": self.speed}, 0.0)
            self.ready.set()
            while not self._stop.is_set():
                now = self.now()
                if next_unplug is not None and now >= next_unplug:
                    self.feed.request_unplug(now, self.unplug_for)
                    next_unplug += self.unplug_every or 0.0
                self._handle(self.feed.advance(now))
                self.port.drain_input()
                due = self.feed.next_due()
                if due is None:
                    break
                if next_unplug is not None:
                    due = min(due, next_unplug)
                delay = max((due - self.now()) / self.speed, MIN_TICK)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            end = self.now()
            self._handle(self.feed.close(end))
            summary = self._finish(end)
            await self._linger()
            return summary
        finally:
            self.port.close()

    async def _linger(self) -> None:
        # The kernel hands written bytes to the reader's queue asynchronously (the tty flip buffer),
        # so an empty reading right after the last write proves nothing: wait for LINGER_QUIET of them.
        deadline = time.monotonic() + LINGER
        quiet_since: float | None = None
        while not self._stop.is_set() and (now := time.monotonic()) < deadline:
            if self.port.unread_bytes():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= LINGER_QUIET:
                return
            await asyncio.sleep(0.01)

    def _handle(self, outputs: list[Any]) -> None:
        for item in outputs:
            if isinstance(item, Write):
                if self.port.write(item.data):
                    self.lines_written += 1
                    if self._full_since is not None:
                        self._buffer_drained(item.t)
                elif self._full_since is None and self.port.is_open:
                    self._full_since = item.t
                    self._dropped_at_full = self.port.dropped_while_full - 1
            elif isinstance(item, LinkChange):
                if item.up:
                    self._plugged(item.t)
                else:
                    old = self.port.path
                    if self._full_since is not None:
                        self._buffer_drained(item.t)
                    self.port.unplug()
                    self._say(f"unplugged pty={old}")
                    self._record({"record": "link", "state": "down", "pty": old}, item.t)
            elif isinstance(item, OracleEntry):
                self._record(
                    {**item.record, "dropped_while_full_total": self.port.dropped_while_full}, item.t
                )

    def _buffer_drained(self, t: float) -> None:
        """Close a period of dropped lines (nobody read the pty) with one oracle record."""
        assert self._full_since is not None
        dropped = self.port.dropped_while_full - self._dropped_at_full
        self._record(
            {"record": "dropped_while_full", "start_s": self._full_since, "end_s": t, "lines": dropped}, t
        )
        self._full_since = None

    def _finish(self, end: float) -> dict[str, Any]:
        if self._full_since is not None:
            self._buffer_drained(end)
        summary = {
            "record": "summary",
            "lines_written": self.lines_written,
            "bytes_written": self.port.bytes_written,
            "dropped_while_full": self.port.dropped_while_full,
            "ptys_opened": self.port.ptys_opened,
            "stopped_early": self._stop.is_set(),
            **self.feed.stats(),
        }
        self._record(summary, end)
        return summary
