"""ReadBuffer: a port's fixed buffer between its reader thread and the loop. Reads go into its free
space (wrapping around its end), the loop takes only what was published, in the order written, and a
full buffer makes the writer wait until the loop makes room or the pump stops."""

from __future__ import annotations

import threading

import pytest

from edge_agent.serial.read_buffer import ReadBuffer, copy_into


def _write(buffer: ReadBuffer, data: bytes, stop: threading.Event | None = None) -> int:
    """What the reader thread does with one read of `data`: as much as fits, into the free space."""
    done = copy_into(buffer.free_space(len(data), stop or threading.Event(), 0.01), data)
    buffer.wrote(done)
    return done


def test_only_published_bytes_are_taken_in_the_order_written() -> None:
    buffer = ReadBuffer(16)
    assert _write(buffer, b"abc") == 3
    assert buffer.take() == b""  # held: not published yet
    assert buffer.in_flight == 3
    assert buffer.publish() == 3
    assert _write(buffer, b"de") == 2
    assert buffer.take() == b"abc"  # what was published; "de" is still held
    assert buffer.in_flight == 2
    buffer.publish()
    assert buffer.take() == b"de"
    assert buffer.take() == b"" and buffer.in_flight == 0


def test_reads_wrap_around_the_end_and_come_out_whole() -> None:
    buffer = ReadBuffer(8)
    _write(buffer, b"012345")
    buffer.publish()
    assert buffer.take() == b"012345"  # the free space now starts at 6 and wraps
    space = buffer.free_space(100, threading.Event(), 0.01)
    assert [len(view) for view in space] == [2, 6]  # the whole buffer, in two pieces, at most `most`
    assert _write(buffer, b"abcdefgh") == 8
    assert buffer.full
    buffer.publish()
    assert buffer.take() == b"abcdefgh"
    assert buffer.peak == 8


def test_a_full_buffer_takes_no_more_and_waits_until_the_loop_makes_room() -> None:
    buffer = ReadBuffer(4)
    assert _write(buffer, b"abcdef") == 4  # what fits; the rest stays in the driver
    buffer.publish()
    written: list[int] = []
    writer = threading.Thread(target=lambda: written.append(_write(buffer, b"xy")))
    writer.start()
    writer.join(0.2)
    assert writer.is_alive() and buffer.waits == 1  # waiting: no room
    assert buffer.take() == b"abcd"
    writer.join(5.0)
    assert written == [2]
    buffer.publish()
    assert buffer.take() == b"xy"


def test_a_stop_ends_the_wait_for_room() -> None:
    buffer = ReadBuffer(2)
    _write(buffer, b"ab")
    stop = threading.Event()
    got: list[list[memoryview]] = []
    waiter = threading.Thread(target=lambda: got.append(buffer.free_space(10, stop, 60.0)))
    waiter.start()
    waiter.join(0.1)
    assert waiter.is_alive()
    stop.set()
    buffer.wake()  # the poll is 60 s: only the wake ends it in time
    waiter.join(5.0)
    assert not waiter.is_alive() and got == [[]]
    buffer.publish()
    assert buffer.take() == b"ab"  # what was read before the stop is still there


def test_a_buffer_needs_a_size() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        ReadBuffer(0)
