"""The adapter on real pseudo-terminals: reading through the symlink, a full buffer, unplug/replug,
the oracle file, and the project's own SerialReader reading the simulator end to end."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.pty_port import LinkPathError, PtyPort
from edge_agent.bench_sim.runner import BenchRunner, OracleWriter
from edge_agent.bench_sim.scenario import FaultSpec, Scenario, StepSpec
from edge_agent.config import SerialPort
from edge_agent.frames import Frame, LinkEvent, LinkState, SerialEvent, StepEdge, StepMarker, Verdict
from edge_agent.serial.reader import SerialReader

pytestmark = pytest.mark.timeout(30)
COLUMNS = ["t_ms", "supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"]

SHORT = Scenario(
    name="short", duration=1.5,
    steps=[StepSpec(name="warm", start=0.2, duration=0.5), StepSpec(name="hot", start=0.8, duration=0.5)],
    faults=[FaultSpec(id="over", kind="step", channel="supply_v", start=0.9, duration=0.2, magnitude=2.0,
                      severity="high")],
)  # fmt: skip


def make_runner(
    tmp_path: Path, scenario: Scenario, rate: float = 100.0, oracle: bool = True, **kwargs: Any
) -> BenchRunner:
    model = BenchModel(1)
    player = ScenarioPlayer(scenario, model, rate, 1, duration=kwargs.pop("duration", None))
    writer = OracleWriter(tmp_path / "oracle.jsonl") if oracle else None
    return BenchRunner(Feed(player, model.header()), PtyPort(tmp_path / "sim" / "ttyBENCH0"), oracle=writer,
                       run_info={"scenario": scenario.name}, **kwargs)  # fmt: skip


@contextlib.asynccontextmanager
async def running(runner: BenchRunner) -> AsyncIterator[asyncio.Task[dict[str, Any]]]:
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.ready.wait(), 5)
    try:
        yield task
    finally:
        runner.stop()
        await asyncio.wait_for(task, 5)
        if runner.oracle is not None:
            runner.oracle.close()


async def read_until_closed(fd: int, stop: asyncio.Future[Any], limit: int = 1 << 22) -> bytes:
    """Everything readable from `fd` until hang-up (EOF or EIO: the runner closes its pty when it
    ends). `stop` done + 2 s of nothing is a safety net only: the kernel moves pty data to the reader
    asynchronously, so "task done and nothing readable" does not yet mean "everything read"."""
    loop = asyncio.get_running_loop()
    idle_after_stop = 0
    chunks: list[bytes] = []
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        for _ in range(100_000):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readable.wait(), 0.1)
            readable.clear()
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                idle_after_stop = idle_after_stop + 1 if stop.done() else 0
                if idle_after_stop > 20:
                    return b"".join(chunks)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return b"".join(chunks)
                raise
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            if sum(map(len, chunks)) > limit:
                raise AssertionError("read limit exceeded")
        raise AssertionError("reader loop bound reached")
    finally:
        loop.remove_reader(fd)


def open_link(link: Path) -> int:
    return os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def oracle_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "oracle.jsonl").read_text().splitlines()]


async def test_symlink_reads_header_samples_and_markers_and_oracle_is_written(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, SHORT)
    async with running(runner) as task:
        link = runner.port.link
        assert link is not None and os.readlink(link).startswith("/dev/pts/")
        fd = open_link(link)
        try:
            data = await read_until_closed(fd, task)
        finally:
            os.close(fd)
    lines = data.decode().splitlines()
    assert lines[0] == "t_ms,supply_v,current_a,temp_c,vibration_g,pressure_kpa"
    assert [line for line in lines if line.startswith("#")] == [
        "#STEP START warm", "#STEP END warm PASS", "#STEP START hot", "#STEP END hot FAIL",
    ]  # fmt: skip
    samples = [line for line in lines[1:] if not line.startswith("#")]
    assert len(samples) == 150 and samples[0].startswith("0,") and samples[-1].startswith("1490,")
    assert "\r" not in data.decode()  # raw pty: no CRLF translation
    records = oracle_lines(tmp_path)
    assert [r["record"] for r in records][:2] == ["link", "run"]
    fault = next(r for r in records if r["record"] == "fault")
    assert fault["id"] == "over" and fault["end_mono"] - fault["start_mono"] == pytest.approx(0.2)
    assert fault["start_wall"] > 1.6e9
    hot = next(r for r in records if r["record"] == "step" and r["name"] == "hot")
    assert hot["expected_verdict"] == "FAIL"
    summary = records[-1]
    assert (
        summary["record"] == "summary"
        and summary["lines_written"] == 155
        and summary["dropped_while_full"] == 0
    )


async def test_no_reader_fills_the_buffer_lines_are_dropped_and_counted(tmp_path: Path) -> None:
    scenario = Scenario(name="flood", duration=1.0)
    runner = make_runner(tmp_path, scenario, rate=5000.0)
    async with running(runner) as task:
        summary = await asyncio.wait_for(task, 10)
    assert summary["dropped_while_full"] > 0
    assert summary["lines_written"] + summary["dropped_while_full"] == 5001  # + the header
    periods = [r for r in oracle_lines(tmp_path) if r["record"] == "dropped_while_full"]
    assert sum(p["lines"] for p in periods) == summary["dropped_while_full"]


async def test_unplug_on_request_renumbers_the_pty_behind_the_same_link(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, Scenario(name="long", duration=3.0), unplug_for=0.3)
    link = tmp_path / "sim" / "ttyBENCH0"
    async with running(runner) as task:
        first = os.readlink(link)
        fd = open_link(link)
        try:
            runner.request_unplug()
            before = await read_until_closed(fd, task)  # ends with EIO: the cable is out
        finally:
            os.close(fd)
        for _ in range(200):
            if link.is_symlink() and os.readlink(link) != first:
                break
            await asyncio.sleep(0.01)
        second = os.readlink(link)
        assert second != first and second.startswith("/dev/pts/")
        fd = open_link(link)
        try:
            after = await read_until_closed(fd, task)
        finally:
            os.close(fd)
    assert before.startswith(b"t_ms,") and after.startswith(b"t_ms,")  # header again after the replug
    records = oracle_lines(tmp_path)
    links = [(r["state"], r["pty"]) for r in records if r["record"] == "link"]
    assert links == [("up", first), ("down", first), ("up", second)]
    unplug = next(r for r in records if r["record"] == "fault")
    assert unplug["kind"] == "unplug" and unplug["requested"] and unplug["lines_lost"] > 0


def test_link_path_that_is_a_real_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "ttyBENCH0"
    path.write_text("precious")
    with pytest.raises(LinkPathError):
        PtyPort(path).open()
    assert path.read_text() == "precious"


async def test_serial_reader_decodes_frames_markers_and_survives_an_unplug(tmp_path: Path) -> None:
    scenario = Scenario(
        name="e2e", duration=2.5,
        steps=[StepSpec(name="warm", start=0.1, duration=0.4), StepSpec(name="hot", start=1.6, duration=0.6)],
        faults=[FaultSpec(kind="garbage", start=0.3, size=100),
                FaultSpec(kind="step", channel="supply_v", start=1.8, duration=0.2, magnitude=2.0,
                          severity="high")],
    )  # fmt: skip
    runner = make_runner(tmp_path, scenario, unplug_for=0.3)
    link = tmp_path / "sim" / "ttyBENCH0"
    # pyserial flushes the input queue when it opens a port, so the header written before the reader
    # attached is gone: name the columns, as a bench config does for a device already streaming.
    port = SerialPort(
        name="bench",
        url=str(link),
        columns=COLUMNS,
        device_time="t_ms",
        reconnect_min=0.05,
        reconnect_max=0.1,
    )
    events: asyncio.Queue[SerialEvent] = asyncio.Queue()
    reader = SerialReader(port, events)
    async with running(runner) as sim:
        read_task = asyncio.create_task(reader.run())
        try:
            await asyncio.sleep(0.8)
            runner.request_unplug()  # scenario time ~0.8 s: back at ~1.1 s, before step "hot"
            await asyncio.wait_for(sim, 10)
            await asyncio.sleep(0.3)
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read_task
    got: list[SerialEvent] = []
    while not events.empty():
        got.append(events.get_nowait())
    links = [e.state for e in got if isinstance(e, LinkEvent)]
    assert links[:3] == [LinkState.UP, LinkState.DOWN, LinkState.UP]
    markers = [(m.edge, m.name, m.verdict) for m in got if isinstance(m, StepMarker)]
    assert markers == [
        (StepEdge.START, "warm", None), (StepEdge.END, "warm", Verdict.PASS),
        (StepEdge.START, "hot", None), (StepEdge.END, "hot", Verdict.FAIL),
    ]  # fmt: skip
    frames = [f for f in got if isinstance(f, Frame)]
    assert set(frames[0].values) == {"supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"}
    replug = next(i for i, e in enumerate(got) if isinstance(e, LinkEvent) and e.state is LinkState.DOWN)
    after = [f for f in got[replug:] if isinstance(f, Frame)]
    assert len(after) > 50 and all(f.device_time is not None and f.device_time > 900 for f in after)
    over = [f for f in frames if f.device_time is not None and 1800 <= f.device_time < 2000]
    assert over and all(f.values["supply_v"] > 13.5 for f in over)
    assert reader.decoder.stats.skipped_total > 0  # the garbage burst was counted, not decoded
    lost = next(r for r in oracle_lines(tmp_path) if r["record"] == "fault" and r["kind"] == "unplug")
    device_times = [f.device_time for f in frames]
    assert not [
        t for t in device_times if t is not None and lost["start_device_ms"] < t < lost["end_device_ms"]
    ]


def test_flow_control_waits_for_the_reader_instead_of_dropping(tmp_path: Path) -> None:
    """RTS/CTS on the simulated cable: with nobody reading, a write into the full buffer waits its
    bound and then drops; with a slow reader in another thread, every line arrives and none is dropped."""
    port = PtyPort(tmp_path / "ttyFLOW", flow_control_s=0.3)
    port.open()
    try:
        line = b"x" * 63 + b"\n"
        for _ in range(10_000):  # bounded: the kernel buffer holds a few kB
            started = time.monotonic()
            if not port.write(line):
                break
        assert port.dropped_while_full == 1 and time.monotonic() - started >= 0.3

        fd = os.open(tmp_path / "ttyFLOW", os.O_RDONLY | os.O_NOCTTY)
        received = bytearray()
        stop = threading.Event()

        def slow_reader() -> None:
            while not stop.is_set():
                try:
                    chunk = os.read(fd, 256)
                except OSError:  # the pty closed under it: done
                    return
                if not chunk:
                    return
                received.extend(chunk)
                time.sleep(0.001)

        reader = threading.Thread(target=slow_reader, daemon=True)
        reader.start()
        port.flow_control_s = 5.0
        sent = [b"%05d\n" % i for i in range(3_000)]
        assert all(port.write(data) for data in sent)
        assert port.dropped_while_full == 1  # the one before: none since
        deadline = time.monotonic() + 10
        while not bytes(received).endswith(sent[-1]) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        tail = bytes(received)[-len(b"".join(sent)) :]
        assert tail == b"".join(sent)
    finally:
        port.close()  # before the reader's fd: a blocked os.read ends with EIO
        with contextlib.suppress(NameError, OSError):
            reader.join(5)
            os.close(fd)
