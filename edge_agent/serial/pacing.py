"""When to read next: batch the bytes of a fast stream without ever letting the kernel buffer fill.

Each read costs a wake-up, and on a busy bench PC (or a VM) a wake-up costs more than decoding the
handful of lines a USB UART delivers per millisecond. So after a read the reader waits a little before
the next one, sized from the rate just seen so that the next batch is about `target_bytes`. That target
is half of Linux's 4 KiB n_tty buffer: past it the tty throttles, and a UART without flow control
loses bytes. A slow stream waits `max_delay` at most, a very fast one not at all; the first byte
after a quiet spell is read at once (the wait applies only between reads), and a read that found a
backlog (well over the target: the reader fell behind) is followed by the next one at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

MAX_DELAY = 0.02  # the longest wait between two reads of a slow stream (a sparse line waits no more)
# The most a byte read waits before it is decoded and handed on (ReadHold). What a hand-on costs is
# mostly fixed (cold caches: ~220 us against ~60 warm, bench/RESULTS.md), so fewer hand-ons of more
# lines each cost less: at 3 Mbaud 20 a second of ~250 lines instead of 50 of ~100 (whole-agent CPU
# ~1 point of a core less, bench/RESULTS.md). What waits is latency only: every frame keeps the
# time of its read, and nothing downstream acts within 50 ms (the lens is sent ~1 window a second, a
# rule's `hold` is counted on the frames' times, an issue takes ~100 ms to file).
MAX_HOLD = 0.05
TARGET_BYTES = 2048
MIN_DELAY = 0.001  # the event loop cannot wait less (epoll counts in ms): shorter means "read now"


@dataclass(slots=True)
class ReadPacer:
    max_delay: float = MAX_DELAY
    target_bytes: int = TARGET_BYTES
    _last_read: float | None = None

    def after_read(self, nbytes: int, now: float) -> float:
        """Seconds to wait before the next read, given what this read got and when."""
        last, self._last_read = self._last_read, now
        if last is None or nbytes <= 0:
            return self.max_delay
        if 2 * nbytes >= 3 * self.target_bytes:
            return 0.0  # behind: drain the kernel buffer before it fills and throttles
        delay = min(self.max_delay, self.target_bytes * (now - last) / nbytes)
        return delay if delay >= MIN_DELAY else 0.0


class ReadHold:
    """When the reads of a fast stream are handed on together (sans-I/O: it counts, the bytes stay
    where they were read). The pacer keeps each read near `target_bytes` so that the kernel buffer
    never fills, which at 3 Mbaud is ~140 reads a second; but what follows a read (decoding, the
    detector, the ring, the lens, the live page, the recorder) costs about as much per hand-on as for
    its lines, so the bytes of consecutive reads are held and handed on as one chunk: a read is held
    only while the next one is on a timer and the oldest byte held would still be handed on within
    `max_hold` of its read (~7 reads at 3 Mbaud). A chunk of several reads decodes as one larger read
    would: its lines are timed back from the last read's time (edge_agent.serial.clock). Nothing waits
    for a read that may not come: an empty read, a read with the next one not on a timer (the port went
    quiet, or a backlog is being drained) hands on at once, and what is held is handed on when the port
    fails or the pump stops."""

    __slots__ = ("_since", "held_bytes", "max_hold")

    def __init__(self, max_hold: float = MAX_HOLD) -> None:
        self.max_hold = max_hold
        self.held_bytes = 0
        self._since = 0.0  # when the oldest held bytes were read

    def add(self, nbytes: int, now: float, next_read: float | None) -> bool:
        """`nbytes` were read at `now` and the next read is due at `next_read` (None: not on a timer):
        True when everything held, these included, is to be handed on now (nothing is held after)."""
        if nbytes:
            if not self.held_bytes:
                self._since = now
            self.held_bytes += nbytes
        # Held only when the next read comes a clear millisecond (the loop's resolution) within the
        # bound: a slow stream's next read, max_delay away, hands on now whatever the float rounding.
        if not self.held_bytes or (
            next_read is not None and next_read + MIN_DELAY <= self._since + self.max_hold
        ):
            return False
        self.held_bytes = 0
        return True

    def take(self) -> int:
        """Hand on what is held now, whatever the next read (the buffer it is held in is full)."""
        held, self.held_bytes = self.held_bytes, 0
        return held


# Bytes a port's reader thread (either mode: fd_pump, thread_pump) may have handed to the event loop
# that the loop has not decoded yet. A loop held up (a slow consumer, a stalled disk write somewhere)
# would otherwise collect a 64 KiB read every few milliseconds without bound; past this the thread
# stops reading and the bytes wait in the driver. 256 KiB is 0.85 s at 3 Mbaud (2.8 s at 921,600
# baud): far more than a loop that is merely busy needs, while the thread reads on and the tty buffer
# does not fill. It is memory outside the data path's budget (README, memory), a bound a port, so it
# is kept small: under 270-field JSON lines at full speed (the loop the bottleneck) the thread is this
# far ahead all the time. In fd mode it is one buffer allocated when the port opens (ReadBuffer).
THREAD_MAX_IN_FLIGHT = 1 << 18


class ByteGate:
    """Bytes in flight from a reader thread to the event loop, bounded: `enter` (the thread) waits while
    taking `nbytes` more would pass `limit` (one read is always let through when nothing is in flight),
    `leave` (the loop, once it decoded them) gives them back."""

    def __init__(self, limit: int = THREAD_MAX_IN_FLIGHT) -> None:
        self.limit = limit
        self.bytes = 0
        self.peak = 0  # the most bytes in flight at once
        self.waits = 0  # times the thread waited for the loop
        self._cond = threading.Condition()

    def enter(self, nbytes: int, stop: threading.Event, poll: float) -> bool:
        """Take `nbytes`; False if `stop` was set while waiting (the bytes are not taken)."""
        with self._cond:
            if self.bytes and self.bytes + nbytes > self.limit:
                self.waits += 1
                while self.bytes and self.bytes + nbytes > self.limit:
                    if stop.is_set():
                        return False
                    self._cond.wait(poll)
            self.bytes += nbytes
            self.peak = max(self.peak, self.bytes)
            return True

    def leave(self, nbytes: int) -> None:
        with self._cond:
            self.bytes -= nbytes
            self._cond.notify()

    def report(self, stats: HandoffStats) -> None:
        """The most bytes in flight so far and the waits, to the reader's stats (on the loop)."""
        report_handoffs(stats, self.peak, self.waits)

    def wake(self) -> None:
        """Wake a thread waiting in `enter` (its stop flag was just set): it need not wait out `poll`."""
        with self._cond:
            self._cond.notify_all()


class HandoffStats(Protocol):
    """Where a reader thread's pump reports its hand-offs (edge_agent.serial.reader.ReaderStats)."""

    handoff_peak_bytes: int
    handoff_waits: int


def report_handoffs(stats: HandoffStats, peak: int, waits: int) -> None:
    """A reader thread's most bytes in flight so far and its waits for the loop, to the reader's stats
    (on the loop): ByteGate's (thread mode) and ReadBuffer's (fd mode)."""
    stats.handoff_peak_bytes = max(stats.handoff_peak_bytes, peak)
    stats.handoff_waits = waits
