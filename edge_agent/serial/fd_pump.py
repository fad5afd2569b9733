"""The `fd` way of reading a port (edge_agent/serial/reader.py): on the event loop, no thread.

The loop watches the descriptor (epoll) and reads when it is readable; after each read the next one is
paced by ReadPacer, so a fast stream is taken in ~2 KiB batches instead of one wake-up per USB packet.
While the stream keeps the pacer waiting between reads, the next read is simply a timer (the descriptor
stays out of epoll); only a timer that finds nothing goes back to waiting on epoll. So a steady stream
costs a timer per read, not two epoll_ctl calls and their bookkeeping. The bytes of consecutive reads
are handed on together (ReadHold: within MAX_HOLD of being read), so decoding and the consumers run
once for a few reads; what is held when the port fails or the pump stops is handed on before it returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import serial

from edge_agent.serial.pacing import ReadHold, ReadPacer

# What a failing or vanished port raises. pyserial wraps most errors in SerialException, but not a
# tcsetattr that fails on a reconfigure (termios.error), nor every OSError of a dying USB device.
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
if os.name == "posix":
    import termios

    PORT_ERRORS += (termios.error,)

# Bytes per read: large enough that whatever has queued up since the last read is taken in one go.
READ_SIZE = 65536


async def pump_fd(
    loop: asyncio.AbstractEventLoop,
    port: serial.Serial,
    on_bytes: Callable[[bytes], None],
    hold: ReadHold | None = None,
) -> str:
    """Read `port` until it fails; every read's bytes to `on_bytes` (a few reads at a time: `hold`, by
    default a ReadHold of MAX_HOLD); returns why it stopped."""
    lost: asyncio.Future[str] = loop.create_future()
    fd = port.fileno()
    read = _raw_reader(port, fd)
    rearm: asyncio.TimerHandle | None = None
    watching = False
    pacer = ReadPacer()
    hold = hold if hold is not None else ReadHold()

    def take(data: bytes) -> None:
        nonlocal rearm, watching
        now = loop.time()
        delay = pacer.after_read(len(data), now)
        timed = delay > 0 and bool(data)  # the next read is a timer's, not epoll's
        chunk = hold.add(data, now, now + delay if timed else None)
        if chunk:
            on_bytes(chunk)
        if timed:
            if watching:
                loop.remove_reader(fd)
                watching = False
            rearm = loop.call_later(delay, on_timer)
        elif not watching:
            loop.add_reader(fd, on_readable)
            watching = True

    def hand_on_held() -> None:
        chunk = hold.take()
        if chunk:
            on_bytes(chunk)

    def on_readable() -> None:
        nonlocal watching
        try:
            data = read(True)
        except PORT_ERRORS as exc:
            loop.remove_reader(fd)
            watching = False
            resolve(lost, describe(exc))
            hand_on_held()
            return
        take(data)

    def on_timer() -> None:
        try:
            data = read(False)
        except PORT_ERRORS as exc:
            resolve(lost, describe(exc))
            hand_on_held()
            return
        take(data)

    loop.add_reader(fd, on_readable)
    watching = True
    try:
        return await lost
    finally:
        if rearm is not None:
            rearm.cancel()
        loop.remove_reader(fd)
        hand_on_held()  # read, so decoded (a stop mid-stream, a cancel): before the link is reset
        loop.run_in_executor(None, port.close)  # a wedged USB driver must not block the loop


def _raw_reader(port: serial.Serial, fd: int) -> Callable[[bool], bytes]:
    """`read(ready)`: what is waiting on the port, b"" if nothing (`ready`: epoll said it is readable).

    A plain posix port (a tty, a pty) is read with one `os.read` of its descriptor, with pyserial's
    meanings: an error is a `SerialException` "read failed", and nothing from a descriptor that epoll
    said was readable is a vanished device ("device reports readiness to read but returned no data").
    Nothing from a timer's read is just nothing yet: pyserial's non-blocking tty (VMIN = VTIME = 0)
    reads 0 bytes when none wait. Other ports (URL handlers with a descriptor) keep pyserial's `read`,
    which may do more than read the descriptor."""
    if type(port) is not serial.Serial or os.name != "posix":
        return lambda ready: bytes(port.read(READ_SIZE))

    def read(ready: bool) -> bytes:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return b""  # a wake-up without data
        except OSError as exc:
            raise serial.SerialException(f"read failed: {exc}") from exc
        if not data and ready:
            raise serial.SerialException(
                "device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)"
            )
        return data

    return read


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    return f"{type(exc).__name__}: {exc}"


def resolve(future: asyncio.Future[str], reason: str) -> None:
    if not future.done():
        future.set_result(reason)
