"""The `fd` way of reading a port (edge_agent/serial/reader.py): a thread of its own reads the
descriptor; the event loop decodes.

After each read the next one is paced by ReadPacer, so a fast stream is taken in ~2 KiB batches (half
the tty buffer, which so never fills) instead of one wake-up per USB packet; a port gone quiet is
waited on with poll(2). The bytes of consecutive reads are held and handed to the loop together
(ReadHold: within MAX_HOLD of being read), so decoding and the consumers run a few times a second
while the ~140 reads a second at 3 Mbaud cost the loop nothing: it was they that woke it (a timer, a
pass of the loop, an os.read each), and side by side the whole agent at 3 Mbaud took 0.35 point of a
core less with the reads here (bench/cpu_side_by_side.py, bench/RESULTS.md). The thread takes the GIL
only between its waits, for a few microseconds a read.

The thread reads straight into a fixed buffer of the port's (ReadBuffer, THREAD_MAX_IN_FLIGHT), and
the loop takes what it publishes as one `bytes`: the thread allocates nothing per read (why: see
edge_agent/serial/read_buffer.py), and what it read and the loop has not decoded is bounded by the
buffer: a loop held up leaves the bytes in the driver, as a loop reading for itself would. The loop
takes the bytes in the order read, and when the pump stops (the port failed, or it is cancelled) the
thread is joined and everything it read, held or published, is handed on before the pump returns:
before the reader marks the link down. Every wait of the thread (the pacing, poll, a full buffer) is
woken by the stop, so the join is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import threading
import time
from collections.abc import Callable

import serial

from edge_agent.serial.pacing import THREAD_MAX_IN_FLIGHT, HandoffStats, ReadHold, ReadPacer, report_handoffs
from edge_agent.serial.read_buffer import ReadBuffer, copy_into

# What a failing or vanished port raises. pyserial wraps most errors in SerialException, but not a
# tcsetattr that fails on a reconfigure (termios.error), nor every OSError of a dying USB device.
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
if os.name == "posix":
    import termios

    PORT_ERRORS += (termios.error,)

# Bytes per read: large enough that whatever has queued up since the last read is taken in one go.
READ_SIZE = 65536
# How long the thread waits for the loop to make room in its buffer before it looks at its stop flag
# again; the stop wakes it anyway (ReadBuffer.wake).
BUFFER_POLL = 0.25
# The most the loop waits for the thread to end when the pump stops (it ends within microseconds).
JOIN_TIMEOUT = 1.0


class _NoStats:
    handoff_peak_bytes = 0
    handoff_waits = 0


async def pump_fd(
    loop: asyncio.AbstractEventLoop,
    port: serial.Serial,
    on_bytes: Callable[[bytes], None],
    hold: ReadHold | None = None,
    *,
    stats: HandoffStats | None = None,
    max_in_flight: int = THREAD_MAX_IN_FLIGHT,
    name: str = "serial-fd",
) -> str:
    """Read `port` in a thread (`name`) until it fails; every read's bytes to `on_bytes` on the loop, a
    few reads at a time (`hold`, by default a ReadHold of MAX_HOLD); returns why it stopped. At most
    `max_in_flight` bytes are read ahead of the loop; `stats` gets the most that were and the times the
    thread waited for the loop."""
    fd = port.fileno()
    read_into = _raw_reader(port, fd)
    hold = hold if hold is not None else ReadHold()
    stats = stats if stats is not None else _NoStats()
    buffer = ReadBuffer(max_in_flight)
    stop = threading.Event()
    wake_r, wake_w = os.pipe()

    def hand_on() -> None:  # on the loop
        data = buffer.take()
        if data:  # a call queued behind one that took everything finds nothing
            on_bytes(data)
        report_handoffs(stats, buffer.peak, buffer.waits)

    def hand_on_from_thread() -> None:
        buffer.publish()
        loop.call_soon_threadsafe(hand_on)

    def run() -> None:  # the thread
        pacer = ReadPacer()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        wake_only = select.poll()
        wake_only.register(wake_r, select.POLLIN)
        wait_for_data = True  # a quiet port (and the first read) is waited on with poll
        try:
            while not stop.is_set():
                if wait_for_data:
                    events = poller.poll()
                    if stop.is_set():
                        break
                    if any(what & select.POLLNVAL for _, what in events):
                        raise serial.SerialException("read failed: the descriptor was closed")
                if buffer.full and hold.take():
                    hand_on_from_thread()  # all of it held: the loop could not make room
                space = buffer.free_space(READ_SIZE, stop, BUFFER_POLL)
                if not space:
                    return  # stopping while the loop had not made room
                nbytes = read_into(space, wait_for_data)
                buffer.wrote(nbytes)
                now = time.monotonic()
                delay = pacer.after_read(nbytes, now)
                timed = delay > 0 and nbytes > 0  # the next read is the pacer's, not poll's
                if hold.add(nbytes, now, now + delay if timed else None):
                    hand_on_from_thread()
                if timed:
                    wake_only.poll(math.ceil(delay * 1000))  # the pacing wait, ended by the stop
                # Nothing read: wait for the port; a backlog just read: read again at once.
                wait_for_data = not nbytes
        except PORT_ERRORS as exc:
            reason = describe(exc)
        except Exception as exc:  # a bug must end the pump with its reason, not leave it waiting
            reason = f"reader thread failed: {describe(exc)}"
        else:
            return  # stopped: the pump is already on its way out
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(resolve, done, reason)

    done: asyncio.Future[str] = loop.create_future()
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        return await done
    finally:
        stop.set()
        os.write(wake_w, b"x")
        buffer.wake()
        # At once: every wait of the thread ends on the stop (see the module's text). The bound is for
        # a read wedged in a driver: then what the thread read stays its own, and closing the port
        # (below) ends the read.
        thread.join(JOIN_TIMEOUT)
        if not thread.is_alive():
            os.close(wake_r)
            os.close(wake_w)
            # Read, so decoded (a stop mid-stream, a cancel), held reads too, in the order read: before
            # the link is reset.
            buffer.publish()
            hand_on()
        loop.run_in_executor(None, port.close)  # a wedged USB driver must not block the loop


def _raw_reader(port: serial.Serial, fd: int) -> Callable[[list[memoryview], bool], int]:
    """`read_into(space, ready)`: what is waiting on the port read into `space` (views of the read
    buffer, in order), how many bytes; 0 if nothing (`ready`: poll said it is readable).

    A plain posix port (a tty, a pty) is read with one `os.readv` of its descriptor, with pyserial's
    meanings: an error is a `SerialException` "read failed", and nothing from a descriptor that poll
    said was readable is a vanished device ("device reports readiness to read but returned no data").
    Nothing from a timer's read is just nothing yet: pyserial's non-blocking tty (VMIN = VTIME = 0)
    reads 0 bytes when none wait. Other ports (URL handlers with a descriptor) keep pyserial's `read`,
    which may do more than read the descriptor; its bytes are copied in."""
    if type(port) is not serial.Serial or os.name != "posix":
        return lambda space, ready: copy_into(space, port.read(sum(map(len, space))))

    def read_into(space: list[memoryview], ready: bool) -> int:
        try:
            nbytes = os.readv(fd, space)
        except (BlockingIOError, InterruptedError):
            return 0  # a wake-up without data
        except OSError as exc:
            raise serial.SerialException(f"read failed: {exc}") from exc
        if not nbytes and ready:
            raise serial.SerialException(
                "device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)"
            )
        return nbytes

    return read_into


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    return f"{type(exc).__name__}: {exc}"


def resolve(future: asyncio.Future[str], reason: str) -> None:
    if not future.done():
        future.set_result(reason)
