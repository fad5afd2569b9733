"""The `thread` way of reading a port (edge_agent/serial/reader.py): for URL handlers without a file
descriptor (`loop://`, `rfc2217://`, `spy://`). A thread blocks in `Serial.read` and hands paced batches
to the event loop, at most `max_in_flight` bytes not yet decoded (ByteGate): a loop that falls behind
leaves the bytes in the driver, as in `fd` mode (edge_agent/serial/fd_pump.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import suppress

import serial

from edge_agent.serial.fd_pump import READ_SIZE, describe, resolve
from edge_agent.serial.pacing import ByteGate, HandoffStats, ReadPacer

# How long the reader thread may block before it looks at its stop flag again. Only bounds how late a
# stop is noticed when `cancel_read` is unsupported (posix ports are woken at once): not a poll rate.
THREAD_READ_TIMEOUT = 0.25


async def pump_thread(
    loop: asyncio.AbstractEventLoop,
    port: serial.Serial,
    on_bytes: Callable[[bytes], None],
    stats: HandoffStats,
    name: str,
    max_in_flight: int,
) -> str:
    """Read `port` in a thread of its own (`name`) until it fails; every batch to `on_bytes` on the
    loop; returns why it stopped. The thread closes the port on its way out."""
    done: asyncio.Future[str] = loop.create_future()
    stop = threading.Event()
    gate = ByteGate(max_in_flight)
    thread = threading.Thread(
        target=_read_in_thread, args=(loop, port, on_bytes, stats, done, stop, gate), name=name, daemon=True
    )
    thread.start()
    try:
        return await done
    finally:
        stop.set()
        with suppress(Exception):
            port.cancel_read()  # wakes a blocked posix read at once; elsewhere the timeout does
        # The thread closes the port itself on its way out: nothing here waits for it.


def _read_in_thread(
    loop: asyncio.AbstractEventLoop,
    port: serial.Serial,
    on_bytes: Callable[[bytes], None],
    stats: HandoffStats,
    done: asyncio.Future[str],
    stop: threading.Event,
    gate: ByteGate,
) -> None:
    reason = "closed"

    def hand_on(data: bytes) -> None:  # on the loop
        try:
            on_bytes(data)
        finally:
            gate.leave(len(data))
            gate.report(stats)

    pacer = ReadPacer()
    delay = 0.0
    try:
        while not stop.is_set():
            # Block for the first byte, then take whatever else has arrived in one go.
            data = port.read(1)
            if data and not stop.is_set():
                stop.wait(delay)  # let a burst build up: one hop to the loop per batch
                waiting = port.in_waiting
                if waiting:
                    data += port.read(min(waiting, READ_SIZE))
                delay = pacer.after_read(len(data), time.monotonic())
                if gate.enter(len(data), stop, THREAD_READ_TIMEOUT):
                    loop.call_soon_threadsafe(hand_on, data)
    except Exception as exc:  # any failure of the port is a loss; the reason is reported
        reason = describe(exc)
    finally:
        with suppress(Exception):
            port.close()
        with suppress(RuntimeError):  # the loop may already be closed at shutdown
            loop.call_soon_threadsafe(resolve, done, reason)
