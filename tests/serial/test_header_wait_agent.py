"""The audit's case, whole agent in process: a CSV port without `columns` whose device streams before
the agent starts. Rows before the header are no header: /status and /metrics say the port waits, no
frame is made; the header the device prints at its reset names the channels, so the rules on them
fire and the recording's columns are the header's."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_config

pytestmark = pytest.mark.timeout(60)


def config(tmp_path: Path, tty: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
bench = "joined"
state_dir = "{tmp_path / "state"}"

[[serial]]
name = "bench"
url = "{tty}"
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
channel = "supply_v"
kind = "limits"
max = 1.0
""",
        encoding="utf-8",
    )
    return path


async def get(agent: Agent, path: str) -> str:
    assert agent.control is not None
    async with aiohttp.ClientSession() as http, http.get(agent.control.url + path) as response:
        return await response.text()


async def test_an_agent_joining_mid_stream_waits_for_the_header_and_says_so(
    tmp_path: Path, make_pty: Callable[[], Any], until: Callable[..., Any]
) -> None:
    pty = make_pty()
    agent = Agent(load_config(config(tmp_path, pty.path), environ={}))
    await agent.start()
    try:
        reader = agent.readers["bench"]
        await until(lambda: reader.is_up, 5.0)
        await pty.write(b"".join(b"%d,12.008,1.508\n" % (4400 + n) for n in range(5)))
        await until(lambda: reader.decoder.stats.skipped.get("before_header") == 5, 5.0)
        waiting = json.loads(await get(agent, "/status"))["ports"]["bench"]
        metrics = await get(agent, "/metrics")
        await pty.write(b"t_ms,supply_v,current_a\n")  # the device was reset
        await pty.write(b"".join(b"%d,12.008,1.508\n" % n for n in range(5)))
        await until(lambda: reader.decoder.stats.frames == 5, 5.0)
        await until(lambda: bool(agent.detector.open_anomalies()), 5.0)
        decoding = json.loads(await get(agent, "/status"))
    finally:
        await agent.stop(time.monotonic() + 5)

    assert waiting["waiting_for_header"] is True and waiting["frames"] == 0
    assert waiting["decode"]["skipped_before_header"] == 5 and waiting["decode"]["headers"] == 0
    assert 'edge_agent_serial_decode_errors_total{reason="before_header",source="bench"} 5.0' in metrics
    port = decoding["ports"]["bench"]
    assert port["waiting_for_header"] is False and port["decode"]["headers"] == 1
    assert [a["channel"] for a in decoding["open_anomalies"]] == ["supply_v"]
    (segment,) = (tmp_path / "state" / "recordings").rglob("*.csv.gz")
    with gzip.open(segment, "rt") as recording:
        assert recording.readline().rstrip("\r\n") == "time_utc,t_s,t_ms,supply_v,current_a"


async def test_a_device_restarting_with_other_columns_without_a_reconnect_is_decoded_by_its_new_header(
    tmp_path: Path, make_pty: Callable[[], Any], until: Callable[..., Any], captured_logs: Any
) -> None:
    """The device restarts with a fourth column and the link never drops (no reconnect, so no reset of
    the decoder): its new header is taken on the fly, the rows after it are decoded by it (not skipped
    as wrong_columns until a reconnect), the change is counted and logged once, and /status shows the
    columns as they stand. A stray line of text followed by rows of the old width changes nothing."""
    pty = make_pty()
    agent = Agent(load_config(config(tmp_path, pty.path), environ={}))
    await agent.start()
    try:
        reader = agent.readers["bench"]
        stats = reader.decoder.stats
        await until(lambda: reader.is_up, 5.0)
        await pty.write(b"t_ms,supply_v,current_a\n" + b"".join(b"%d,0.5,1.5\n" % n for n in range(3)))
        await pty.write(b"sensor board: calibrating\n3,0.5,1.5\n")  # text, then the old width again
        await until(lambda: stats.frames == 4, 5.0)
        before = json.loads(await get(agent, "/status"))["ports"]["bench"]
        await pty.write(b"t_ms,supply_v,current_a,temp_c\n")  # the device restarted
        await pty.write(b"".join(b"%d,12.0,1.5,41.0\n" % n for n in range(5)))
        await until(lambda: stats.frames == 9, 5.0)
        await until(lambda: bool(agent.detector.open_anomalies()), 5.0)
        after = json.loads(await get(agent, "/status"))["ports"]["bench"]
    finally:
        await agent.stop(time.monotonic() + 5)

    assert before["columns"] == ["t_ms", "supply_v", "current_a"]
    assert before["decode"]["header_changes"] == 0 and before["link"]["opens"] == 1
    assert after["columns"] == ["t_ms", "supply_v", "current_a", "temp_c"]
    assert after["decode"]["header_changes"] == 1 and "skipped_wrong_columns" not in after["decode"]
    assert after["link"]["opens"] == 1 and after["link"]["losses"] == 0  # no reconnect did it
    changed = [r for r in captured_logs() if r["event"] == "serial.header_changed"]
    assert [(r["old_columns"], r["columns"], r["level"]) for r in changed] == [
        (["t_ms", "supply_v", "current_a"], ["t_ms", "supply_v", "current_a", "temp_c"], "warning")
    ]
    segments = sorted((tmp_path / "state" / "recordings").rglob("*.csv.gz"), key=lambda path: path.name)
    with gzip.open(segments[-1], "rt") as recording:  # a file keeps one header: a new one for these
        assert recording.readline().rstrip("\r\n") == "time_utc,t_s,t_ms,supply_v,current_a,temp_c"
