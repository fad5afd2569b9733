"""The port reader over real pseudo-terminals, a real TCP socket and pyserial's loop://."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import SerialPort
from edge_agent.frames import (
    Frame,
    FrameBatch,
    LinkEvent,
    LinkState,
    PackedEvent,
    SerialEvent,
    StepEdge,
    StepMarker,
    Verdict,
)
from edge_agent.serial.decoders import CsvDecoder
from edge_agent.serial.fd_pump import READ_SIZE
from edge_agent.serial.reader import SerialReader

Until = Callable[..., Coroutine[Any, Any, None]]


def port(url: str, **overrides: Any) -> SerialPort:
    settings: dict[str, Any] = {"name": "bench", "url": url, "reconnect_min": 0.05, "reconnect_max": 0.2}
    return SerialPort(**{**settings, **overrides})


def frames(events: list[SerialEvent]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def links(events: list[SerialEvent]) -> list[LinkState]:
    return [e.state for e in events if isinstance(e, LinkEvent)]


@contextlib.asynccontextmanager
async def running(reader: SerialReader) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reader.run())
    try:
        yield task
    finally:
        task.cancel()
        # Bounded: stopping must not hang on a port close.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 2.0)


@pytest.mark.parametrize("io_mode", ["fd", "thread", "asyncio_fast"])
async def test_frames_and_markers_arrive_from_a_pty(make_pty: Any, until: Until, io_mode: str) -> None:
    pty = make_pty()
    events: list[SerialEvent] = []
    reader = SerialReader(
        port(pty.path, device_time="t", device_time_unit="s"), events.append, io_mode=io_mode
    )  # type: ignore[arg-type]
    async with running(reader):
        await until(lambda: links(events) == [LinkState.UP])
        await pty.write(b"t,v,i\r\n1,12.0,0.5\r\n#STEP START flash\r\n2,12.1,0.6\r\n#STEP END flash PASS\r\n")
        await until(lambda: reader.decoder.stats.lines == 5)
    assert reader.stats.mode == io_mode
    data = [e for e in events if not isinstance(e, LinkEvent)]
    assert [type(e) for e in data] == [Frame, StepMarker, Frame, StepMarker]
    assert data[0].values == {"v": 12.0, "i": 0.5} and data[0].device_time == 1.0  # type: ignore[union-attr]
    assert data[1] == StepMarker("bench", StepEdge.START, "flash", data[1].mono, data[1].wall)
    assert data[3].verdict is Verdict.PASS  # type: ignore[union-attr]
    assert all(e.source == "bench" for e in events)


async def test_thousands_of_lines_in_bursts_lose_nothing(make_pty: Any, until: Until) -> None:
    pty = make_pty()
    events: list[SerialEvent] = []
    reader = SerialReader(port(pty.path, columns=["n", "v"]), events.append)
    async with running(reader):
        await until(lambda: reader.is_up)
        await pty.write(b"".join(b"%d,%d.5\n" % (n, n) for n in range(5000)))
        await until(lambda: len(frames(events)) == 5000)
    assert [f.values["n"] for f in frames(events)] == [float(n) for n in range(5000)]
    assert reader.decoder.stats.skipped == {}


async def test_bad_input_over_the_wire_is_counted_and_skipped(make_pty: Any, until: Until) -> None:
    pty = make_pty()
    events: list[SerialEvent] = []
    reader = SerialReader(port(pty.path, columns=["a", "b"], max_line_bytes=64), events.append)
    async with running(reader):
        await until(lambda: reader.is_up)
        await pty.write(b"1,2\n\xff\xfe,1\n1,2,3\nx,1\n" + b"7" * 5000 + b"\n\n3,4\n")
        await until(lambda: reader.decoder.stats.lines == 7)
    assert [f.values for f in frames(events)] == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]
    assert reader.decoder.stats.skipped == {
        "not_utf8": 1,
        "wrong_columns": 1,
        "not_numeric": 1,
        "too_long": 1,
        "empty": 1,
    }


async def test_unplug_and_replug_behind_the_same_symlink(
    make_pty: Any, until: Until, tmp_path: Path, captured_logs: Any
) -> None:
    link = tmp_path / "ttyBENCH0"
    first = make_pty()
    link.symlink_to(first.path)
    events: list[SerialEvent] = []
    reader = SerialReader(port(str(link), columns=["v"]), events.append)
    async with running(reader):
        await until(lambda: reader.is_up)
        await first.write(b"1\n2\n3")  # "3" is cut off by the unplug
        await until(lambda: len(frames(events)) == 2)

        second = make_pty()  # opened while the first exists: a different device node, like ttyUSB1
        assert second.path != first.path
        first.close()
        await until(lambda: links(events) == [LinkState.UP, LinkState.DOWN])
        failures_before = reader.stats.open_failures
        await until(lambda: reader.stats.open_failures >= failures_before + 3)  # retrying, quietly
        link.unlink()
        link.symlink_to(second.path)
        await until(lambda: links(events) == [LinkState.UP, LinkState.DOWN, LinkState.UP])
        await second.write(b"4\n5\n")
        await until(lambda: len(frames(events)) == 4)

    assert [f.values["v"] for f in frames(events)] == [1.0, 2.0, 4.0, 5.0]
    up_again = [e for e in events if isinstance(e, LinkEvent)][-1]
    assert up_again.reason == second.device  # the new node behind the same name
    assert reader.decoder.stats.skipped == {"partial": 1}
    assert reader.stats.losses == 1
    logged = [r["event"] for r in captured_logs() if r["event"].startswith("serial.")]
    assert logged == ["serial.port_opened", "serial.port_lost", "serial.port_recovered"]


async def test_port_absent_at_start_is_one_dropout_until_it_appears(
    make_pty: Any, until: Until, tmp_path: Path, captured_logs: Any
) -> None:
    link = tmp_path / "ttyLATE"
    events: list[SerialEvent] = []
    reader = SerialReader(port(str(link), columns=["v"]), events.append)
    async with running(reader):
        await until(lambda: reader.stats.open_failures >= 3)
        assert links(events) == [LinkState.DOWN]
        pty = make_pty()
        link.symlink_to(pty.path)
        await until(lambda: reader.is_up)
        await pty.write(b"9\n")
        await until(lambda: len(frames(events)) == 1)
    assert links(events) == [LinkState.DOWN, LinkState.UP]
    logged = [r["event"] for r in captured_logs() if r["event"].startswith("serial.")]
    assert logged == ["serial.port_unavailable", "serial.port_recovered"]


async def test_socket_url_reads_a_tcp_device_and_survives_its_restart(until: Until) -> None:
    clients: list[asyncio.StreamWriter] = []

    async def device(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)

    async def send_once_up(expected_links: list[LinkState]) -> None:
        # pyserial drains the input when an open completes: a device greeting sent before is stale.
        await until(lambda: links(events) == expected_links and len(clients) == len(expected_links) // 2 + 1)
        clients[-1].write(b"temp=20.5 rh=41\n#STEP START soak\n")
        await clients[-1].drain()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    host, tcp_port = server.sockets[0].getsockname()[:2]
    events: list[SerialEvent] = []
    reader = SerialReader(port(f"socket://{host}:{tcp_port}", format="kv"), events.append)
    try:
        async with running(reader):
            await send_once_up([LinkState.UP])
            await until(lambda: reader.decoder.stats.lines == 2)
            assert reader.stats.mode == "fd"
            clients[0].close()  # the device drops the connection: a loss, then a reconnect
            await send_once_up([LinkState.UP, LinkState.DOWN, LinkState.UP])
            await until(lambda: reader.decoder.stats.lines == 4)
    finally:
        server.close()
        for writer in clients:
            writer.close()
        await server.wait_closed()
    assert [f.values for f in frames(events)] == [{"temp": 20.5, "rh": 41.0}] * 2
    assert reader.decoder.stats.markers == 2


async def test_loop_url_opens_in_thread_mode_and_stops_promptly(until: Until) -> None:
    events: list[SerialEvent] = []
    reader = SerialReader(port("loop://"), events.append)
    async with running(reader):
        await until(lambda: reader.is_up)
    assert reader.stats.mode == "thread"
    assert links(events) == [LinkState.UP]


def _write_all(fd: int, data: bytes, within: float) -> None:
    """Write `data` to a non-blocking pty master from a thread, waiting (boundedly) while it is full."""
    deadline = time.monotonic() + within
    view = memoryview(data)
    while view and time.monotonic() < deadline:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            time.sleep(0.001)


@pytest.mark.parametrize("limit", [16 * 1024, 64 * 1024 * 1024], ids=["bounded", "unbounded"])
async def test_thread_mode_stops_reading_while_the_loop_is_behind(
    make_pty: Any, until: Until, limit: int
) -> None:
    """The event loop held up for a second while the device sends ~500 kB: the reader thread hands over
    at most `limit` bytes (plus the read that found none in flight) and reads the rest once the loop
    caught up, losing nothing. With a limit too large to matter, the same second piles up the whole
    stream: what the bound prevents."""
    pty = make_pty()
    events: list[SerialEvent] = []
    reader = SerialReader(
        port(pty.path, columns=["n", "v"]), events.append, io_mode="thread", thread_max_in_flight=limit
    )
    count = 40_000
    data = b"".join(b"%d,%d.5\n" % (n, n) for n in range(count))
    async with running(reader):
        await until(lambda: reader.is_up)
        writer = threading.Thread(target=_write_all, args=(pty.master, data, 20.0), daemon=True)
        writer.start()
        time.sleep(1.0)  # noqa: ASYNC251 (the loop is held up on purpose)
        await until(lambda: len(frames(events)) == count, within=20.0)
        writer.join(5.0)
    assert [f.values["n"] for f in frames(events)] == [float(n) for n in range(count)]
    peak = reader.stats.handoff_peak_bytes
    if limit < len(data):
        assert peak <= limit + READ_SIZE + 1
        assert reader.stats.handoff_waits > 0
    else:  # the same scenario without the bound: several times what the bounded run allows
        assert peak > 4 * (16 * 1024 + READ_SIZE + 1)


async def test_no_matching_usb_device_is_a_dropout_with_retries(until: Until) -> None:
    events: list[SerialEvent] = []
    reader = SerialReader(port("hwgrep://^NO-SUCH-DEVICE-ffff$"), events.append)
    async with running(reader):
        await until(lambda: reader.stats.open_failures >= 2)
    assert links(events) == [LinkState.DOWN]
    down = events[0]
    assert isinstance(down, LinkEvent) and "no ports found" in down.reason


async def test_full_queue_sink_drops_and_counts_without_blocking(make_pty: Any, until: Until) -> None:
    pty = make_pty()
    queue: asyncio.Queue[SerialEvent] = asyncio.Queue(maxsize=5)
    reader = SerialReader(port(pty.path, columns=["v"]), queue)
    async with running(reader):
        await until(lambda: reader.is_up)
        await pty.write(b"".join(b"%d\n" % n for n in range(20)))
        await until(lambda: reader.decoder.stats.frames == 20)
    assert queue.qsize() == 5
    assert reader.stats.dropped == 20 + 1 - 5  # 20 frames + the UP event, 5 fitted
    assert isinstance(queue.get_nowait(), LinkEvent)


async def test_a_second_reader_cannot_share_the_port(make_pty: Any, until: Until) -> None:
    pty = make_pty()
    first_events: list[SerialEvent] = []
    second_events: list[SerialEvent] = []
    first = SerialReader(port(pty.path, columns=["v"]), first_events.append)
    second = SerialReader(port(pty.path, columns=["v"]), second_events.append)
    async with running(first):
        await until(lambda: first.is_up)
        async with running(second):
            await until(lambda: second.stats.open_failures >= 1)
        await pty.write(b"1\n")
        await until(lambda: len(frames(first_events)) == 1)
    assert links(second_events) == [LinkState.DOWN]
    assert "exclusively lock" in second_events[0].reason  # type: ignore[union-attr]


async def test_line_settings_from_config_reach_the_tty(make_pty: Any, until: Until) -> None:
    pty = make_pty()
    settings = {"baudrate": 921_600, "bytesize": 7, "parity": "O", "stopbits": 2, "rtscts": True}
    reader = SerialReader(port(pty.path, **settings), lambda _: None)
    async with running(reader):
        await until(lambda: reader.is_up)
        _, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(pty.slave)
    assert ispeed == ospeed == termios.B921600
    assert cflag & termios.CSTOPB
    assert cflag & termios.CRTSCTS
    # Linux ptys force CS8 and clear PARENB whatever is asked; PARODD survives and shows parity "O"
    # was applied (on a real UART all of them stick).
    assert cflag & termios.PARODD


async def test_joined_mid_stream_rows_wait_for_the_header_with_one_warning(
    make_pty: Any, until: Until, captured_logs: Any
) -> None:
    """No `columns`: the device's header names the channels. Rows read before it (the agent started
    while the device streamed) are skipped and counted, one warning says why, and the header starts the
    decoding; a row is never taken for the header."""
    pty = make_pty()
    events: list[SerialEvent] = []
    reader = SerialReader(port(pty.path), events.append)
    skipped = reader.decoder.stats.skipped
    async with running(reader):
        await until(lambda: reader.is_up)
        for first in (0, 3, 6):  # three reads: still one warning
            await pty.write(b"".join(b"%d,12.0%d,1.5\n" % (4400 + n, n) for n in range(first, first + 3)))
            await until(lambda: skipped.get("before_header") == first + 3)  # noqa: B023
        assert frames(events) == []
        await pty.write(b"t_ms,supply_v,current_a\n4409,12.09,1.5\n4410,12.1,1.5\n")
        await until(lambda: len(frames(events)) == 2)
    assert [f.values for f in frames(events)] == [
        {"t_ms": 4409.0, "supply_v": 12.09, "current_a": 1.5},
        {"t_ms": 4410.0, "supply_v": 12.1, "current_a": 1.5},
    ]
    assert reader.decoder.stats.as_dict()["skipped_before_header"] == 9
    assert reader.decoder.stats.headers == 1
    logged = [r for r in captured_logs() if r["event"] in ("serial.waiting_for_header", "serial.header_read")]
    assert [(r["event"], r["level"], r["skipped_rows"]) for r in logged] == [
        ("serial.waiting_for_header", "warning", 3),
        ("serial.header_read", "info", 9),
    ]
    assert "columns" in logged[0]["meaning"] and logged[0]["source"] == "bench"


async def test_joined_mid_stream_a_fast_read_of_rows_is_skipped_until_the_header(
    make_pty: Any, until: Until
) -> None:
    """The agent's packed path (whole reads as one batch) decodes no row while no header is known, then
    packs the rows under the header's names."""
    pty = make_pty()
    events: list[PackedEvent] = []
    reader = SerialReader(port(pty.path), packed_sink=events.append)
    assert isinstance(reader.decoder, CsvDecoder) and reader.decoder.batch_enabled
    rows = b"".join(b"%d,%d.5\n" % (n, n) for n in range(3000))
    async with running(reader):
        await until(lambda: reader.is_up)
        await pty.write(rows)
        await until(lambda: reader.decoder.stats.skipped.get("before_header") == 3000)
        await pty.write(b"n,v\n" + rows)
        await until(lambda: reader.decoder.stats.frames == 3000)
    batches = [e for e in events if isinstance(e, FrameBatch)]
    decoded = [f for e in events for f in (e.frames() if isinstance(e, FrameBatch) else [e])]
    assert batches and all(batch.names == ("n", "v") for batch in batches)
    assert [f.values for f in frames(decoded)] == [{"n": float(n), "v": n + 0.5} for n in range(3000)]
    assert reader.decoder.stats.skipped == {"before_header": 3000}
