"""The whole agent (in process) on a real pty whose device clock steps back (a reboot) and jumps ahead (an
NTP step of two hours) during a run: both are counted on /status and /metrics, and the anomalies that
span them keep the durations they had in real time. The reader logs each kind of trouble when it starts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_agent.agent import Agent
from edge_agent.config import SerialPort, load_config
from edge_agent.detect.anomaly import AnomalyClosed, AnomalyEvent
from edge_agent.frames import Frame
from edge_agent.logs import setup_logging
from edge_agent.serial.reader import SerialReader

pytestmark = pytest.mark.timeout(60)

ROW_S = 0.02
ROWS = 220


class RecordingAgent(Agent):
    """The agent, also keeping every anomaly event it emits (Atlas is off in this test)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[AnomalyEvent] = []

    def _emit(self, events: Sequence[AnomalyEvent]) -> None:
        self.events.extend(events)
        super()._emit(events)


def config(tmp_path: Path, tty: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
bench = "clock"
state_dir = "{tmp_path / "state"}"

[[serial]]
name = "bench"
url = "{tty}"
columns = ["t_ms", "v"]
device_time = "t_ms"
reconnect_min = "50ms"
reconnect_max = "200ms"

[lens]
enabled = false

[atlas]
enabled = false

[control]
listen = "127.0.0.1:0"

[[rules]]
channel = "v"
kind = "limits"
max = 10.0
clear_after = "200ms"
""",
        encoding="utf-8",
    )
    return path


def device_ms(row: int) -> int:
    """Rows 0..59 from an uptime of 100 s, then the device reboots (its counter restarts at 0) and at row
    140 its clock is set two hours ahead."""
    if row < 60:
        return 100_000 + row * 20
    if row < 140:
        return (row - 60) * 20
    return 7_200_000 + (row - 60) * 20


def value(row: int) -> float:
    return 20.0 if 40 <= row < 80 or 120 <= row < 160 else 1.0  # two faults, one across each step


async def test_device_clock_steps_are_counted_and_anomalies_keep_real_durations(
    tmp_path: Path, make_pty: Callable[[], Any], until: Callable[..., Any]
) -> None:
    pty = make_pty()
    agent = RecordingAgent(load_config(config(tmp_path, pty.path), environ={}))
    await agent.start()
    try:
        await until(lambda: agent.readers["bench"].is_up, 5.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for row in range(ROWS):
            await asyncio.sleep(max(0.0, start + row * ROW_S - loop.time()))
            await pty.write(f"{device_ms(row)},{value(row)}\n".encode())
        await until(lambda: agent.readers["bench"].decoder.stats.frames == ROWS, 10.0)
        await until(lambda: sum(isinstance(e, AnomalyClosed) for e in agent.events) == 2, 5.0)
        assert agent.control is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(agent.control.url + "/status") as response:
                status = json.loads(await response.text())
            async with http.get(agent.control.url + "/metrics") as response:
                metrics = await response.text()
    finally:
        await agent.stop(time.monotonic() + 5)

    assert status["ports"]["bench"]["clock"] == {"mode": "device", "backwards": 1, "jumps": 1, "missing": 0}
    assert 'edge_agent_serial_clock_steps_total{kind="backwards",source="bench"} 1.0' in metrics
    assert 'edge_agent_serial_clock_steps_total{kind="jump",source="bench"} 1.0' in metrics
    assert 'edge_agent_serial_frames_without_device_time_total{source="bench"} 0.0' in metrics

    closed = [e.anomaly for e in agent.events if isinstance(e, AnomalyClosed)]
    assert [a.close_reason for a in closed] == ["cleared", "cleared"]
    for anomaly in closed:
        assert anomaly.ended_mono is not None
        # 40 rows of 20 ms, and the step between them: about 0.8 s, never negative, never two hours.
        assert 0.6 <= anomaly.ended_mono - anomaly.started_mono <= 1.2, anomaly
        assert anomaly.closed_mono is not None and anomaly.closed_mono >= anomaly.ended_mono


async def test_each_kind_of_clock_trouble_is_logged_when_it_starts_not_per_frame(
    make_pty: Callable[[], Any], until: Callable[..., Any]
) -> None:
    stream = io.StringIO()
    setup_logging("info", json=True, stream=stream)
    try:
        pty = make_pty()
        port = SerialPort(name="bench", url=pty.path, format="kv", device_time="t_ms", reconnect_min=0.05)
        frames: list[Frame] = []
        reader = SerialReader(port, lambda e: frames.append(e) if isinstance(e, Frame) else None)
        task = asyncio.create_task(reader.run())
        try:
            await until(lambda: reader.is_up, 5.0)
            # Back twice within a few frames (one condition), then 20 frames without their time.
            lines = ["t_ms=5000 v=1", "t_ms=6000 v=1", "t_ms=10 v=1", "t_ms=20 v=1", "t_ms=5 v=1"]
            lines += [f"v={n}" for n in range(20)]
            await pty.write(("\n".join(lines) + "\n").encode())
            await until(lambda: len(frames) == len(lines), 5.0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 2.0)
    finally:
        setup_logging("info", json=True, stream=io.StringIO())
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    steps = [r for r in records if str(r["event"]).startswith("serial.device_clock_")]
    assert [r["event"] for r in steps] == ["serial.device_clock_backwards", "serial.device_clock_missing"]
    assert steps[0]["field"] == "t_ms" and steps[0]["source"] == "bench"
    assert reader.clock.stats.as_dict() == {"backwards": 2, "jumps": 0, "missing": 20}
