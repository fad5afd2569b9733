"""The fd pump on a real pseudo-terminal: a fast stream's reads (the pump's thread's) handed to the loop a
few at a time, every byte in the order written, nothing read lost when the pump is stopped mid-stream,
the bytes in flight bounded while the loop is held up, and a stop that does not wait for data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import serial

from edge_agent.serial import fd_pump
from edge_agent.serial.fd_pump import pump_fd
from edge_agent.serial.pacing import ReadHold

LINE = b"0001234,1.0000,1.1000,1.2000,1.3000,1.4000,1.5000,1.6000,1.7000\n"  # 65 bytes
RATE = 300_000  # bytes a second: 3 Mbaud


async def _stream(pty: Any, seconds: float) -> bytes:
    """Write RATE bytes a second for `seconds`, a burst every millisecond (a USB UART's frame)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    written = bytearray()
    while (now := loop.time()) - start < seconds:
        due = int((now - start) * RATE) // len(LINE) - len(written) // len(LINE)
        if due:
            chunk = LINE * due
            await pty.write(chunk)
            written += chunk
        await asyncio.sleep(0.001)
    return bytes(written)


def _open(path: str) -> serial.Serial:
    port = serial.serial_for_url(path, timeout=0, do_not_open=True)
    port.open()
    return port


async def _stop_once_all_arrived(
    pump: asyncio.Task[str], chunks: list[bytes], size: int, polls: int = 500
) -> None:
    """Wait (bounded: `polls` of 10 ms) until `size` bytes have arrived in `chunks`, then stop the pump."""
    for _ in range(polls):
        if sum(map(len, chunks)) >= size:
            break
        await asyncio.sleep(0.01)
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(pump, 2.0)


class CountedHold(ReadHold):
    """The pump's ReadHold, counting the reads that brought bytes."""

    __slots__ = ("reads",)

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def add(self, nbytes: int, now: float, next_read: float | None) -> bool:
        self.reads += bool(nbytes)
        return super().add(nbytes, now, next_read)


async def test_a_fast_stream_is_handed_on_in_chunks_of_several_reads_losing_nothing(make_pty: Any) -> None:
    pty = make_pty()
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    hold = CountedHold()
    pump = asyncio.create_task(pump_fd(loop, _open(pty.path), chunks.append, hold))
    written = await _stream(pty, 1.0)
    await _stop_once_all_arrived(pump, chunks, len(written))  # the last reads come within a pacer delay
    assert b"".join(chunks) == written
    # About 3 reads a hand-on at this rate on a quiet machine; a loaded one reads late, finds backlogs
    # and hands those on at once, so only "fewer hand-ons than reads" is asserted.
    assert len(chunks) < hold.reads, (len(chunks), hold.reads)


async def test_what_is_read_and_held_is_handed_on_when_the_pump_is_stopped(make_pty: Any) -> None:
    pty = make_pty()
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    hold = ReadHold(max_hold=60.0)  # a timed read is held until a backlog or a quiet port hands it on
    pump = asyncio.create_task(pump_fd(loop, _open(pty.path), chunks.append, hold))
    written = await _stream(pty, 0.5)
    for _ in range(200):  # bounded: a read that found a backlog may just have handed everything on
        if hold.held_bytes:
            break
        await pty.write(LINE)
        written += LINE
        await asyncio.sleep(0.002)
    held = hold.held_bytes
    assert held > 0
    pump.cancel()  # mid-stream: reads held, bytes still in the tty buffer
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(pump, 2.0)
    os.set_blocking(pty.slave, False)
    rest = bytearray()
    with contextlib.suppress(BlockingIOError):
        while data := os.read(pty.slave, 65536):
            rest += data
    # What the pump read is all handed on: with what is left in the tty buffer, exactly what was written.
    assert b"".join(chunks) + rest == written
    assert len(b"".join(chunks)) >= held


class Handoffs:
    handoff_peak_bytes = 0
    handoff_waits = 0


def _write_all(fd: int, data: bytes, within: float) -> None:
    """Write `data` to the pty master from a thread of its own (the loop may be held up), bounded."""
    deadline = time.monotonic() + within
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError("the pump did not drain the pty") from None
            time.sleep(0.002)


async def _flood(
    pty: Any, on_bytes: Callable[[bytes], None], chunks: list[bytes], limit: int, stats: Handoffs
) -> bytes:
    """400 kB written to the pty as fast as it takes them, read by a pump of `limit` bytes in flight
    into `on_bytes` (which appends to `chunks`) until all arrived; the pump stopped; what was written."""
    loop = asyncio.get_running_loop()
    pump = asyncio.create_task(pump_fd(loop, _open(pty.path), on_bytes, stats=stats, max_in_flight=limit))
    data = b"".join(b"%07d,1.0000,2.0000\n" % i for i in range(20_000))
    writer = asyncio.create_task(asyncio.to_thread(_write_all, pty.master, data, 20.0))
    await _stop_once_all_arrived(pump, chunks, len(data), polls=2000)  # the loop's pace once it is free
    await writer
    return data


async def test_a_held_up_loop_bounds_the_bytes_in_flight_and_loses_nothing(make_pty: Any) -> None:
    """The reads are the thread's: while the loop is held up (a consumer blocking it), the thread
    reads only up to the bytes-in-flight bound and then leaves the rest in the tty, which the writer
    waits on; once the loop is back every byte arrives, in order."""
    pty = make_pty()
    chunks: list[bytes] = []
    blocked = 0

    def on_bytes(chunk: bytes) -> None:
        nonlocal blocked
        chunks.append(chunk)
        if blocked < 3:
            blocked += 1
            time.sleep(0.3)  # the loop held up: nothing is decoded meanwhile

    limit = 16 * 1024
    stats = Handoffs()
    data = await _flood(pty, on_bytes, chunks, limit, stats)
    assert b"".join(chunks) == data
    assert stats.handoff_waits >= 1  # the thread did wait for the loop
    assert limit // 2 <= stats.handoff_peak_bytes <= limit


async def test_a_pump_waiting_on_a_quiet_port_stops_at_once_and_closes_it(make_pty: Any) -> None:
    pty = make_pty()
    loop = asyncio.get_running_loop()
    port = _open(pty.path)
    chunks: list[bytes] = []
    pump = asyncio.create_task(pump_fd(loop, port, chunks.append))
    await pty.write(LINE)
    for _ in range(500):  # bounded: the line comes within a read
        if chunks:
            break
        await asyncio.sleep(0.01)
    assert b"".join(chunks) == LINE
    await asyncio.sleep(0.1)  # the port quiet: the thread waits in poll
    threads = {thread.name for thread in threading.enumerate()}
    assert "serial-fd" in threads
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(pump, 2.0)  # the stop wakes the thread's poll: no wait for data
    assert "serial-fd" not in {thread.name for thread in threading.enumerate()}
    for _ in range(200):  # bounded: the port is closed in the executor
        if not port.is_open:
            break
        await asyncio.sleep(0.01)
    assert not port.is_open


async def test_a_vanished_device_ends_the_pump_with_its_reason(make_pty: Any) -> None:
    pty = make_pty()
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    pump = asyncio.create_task(pump_fd(loop, _open(pty.path), chunks.append))
    await pty.write(LINE * 10)
    for _ in range(500):  # bounded
        if len(b"".join(chunks)) == len(LINE) * 10:
            break
        await asyncio.sleep(0.01)
    pty.close()  # unplugged: the device side goes away
    reason = await asyncio.wait_for(pump, 5.0)
    assert "SerialException" in reason, reason
    assert b"".join(chunks) == LINE * 10


async def test_reads_held_until_they_fill_the_buffer_are_handed_on_not_stuck(make_pty: Any) -> None:
    """A hold that would wait for ever (no read due off a timer) and a buffer smaller than what it
    holds: once the held reads fill the buffer they go to the loop, which makes room for more."""
    pty = make_pty()
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    limit = 4096
    pump = asyncio.create_task(
        pump_fd(loop, _open(pty.path), chunks.append, ReadHold(max_hold=60.0), max_in_flight=limit)
    )
    written = await _stream(pty, 0.3)  # ~90 kB: ~22 buffers' worth
    await _stop_once_all_arrived(pump, chunks, len(written))  # the last reads: an empty read hands them on
    assert b"".join(chunks) == written
    assert max(map(len, chunks)) <= limit


async def test_the_thread_reads_ahead_into_the_ports_buffer_allocating_nothing_per_read(
    make_pty: Any,
) -> None:
    """While the loop is held up the thread fills the port's buffer and no more: the bytes it read ahead
    are in that buffer, not in `bytes` of its own (those, made in the thread and freed on the loop, kept
    ~3 MB of the threads' malloc arena resident under wide JSON lines: read_buffer.py). tracemalloc
    counts what is allocated from the pump's module while the thread is ahead of the loop."""
    pty = make_pty()
    limit = 64 * 1024
    stats = Handoffs()
    chunks: list[bytes] = []
    traced: list[int] = []

    def on_bytes(chunk: bytes) -> None:
        chunks.append(chunk)
        if not traced:
            time.sleep(0.5)  # the loop held up: the thread fills the buffer meanwhile
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, fd_pump.__file__)])
            traced.append(sum(stat.size for stat in snapshot.statistics("filename")))

    tracemalloc.start()
    try:
        data = await _flood(pty, on_bytes, chunks, limit, stats)
    finally:
        tracemalloc.stop()
    assert b"".join(chunks) == data
    # The buffer was full while the loop was held up (the thread waited for room): `limit` bytes read
    # ahead, of which at most a few hundred bytes of Python objects were allocated by the pump's code.
    assert stats.handoff_waits >= 1 and stats.handoff_peak_bytes == limit
    assert traced and traced[0] < 4096, traced
