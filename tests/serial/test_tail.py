"""`edge-agent tail` as a person wiring a bench runs it: a subprocess reading a real pty."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))


async def run_tail(pty_path: str, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        EDGE_AGENT, "tail", "--log-format", "json", "--port", pty_path, *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for_line(process: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(15):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"tail exited before printing {needle!r}: {seen}"
            seen.append(line.rstrip("\n"))
            if needle in line:
                return


async def test_tail_prints_frames_markers_and_a_summary(make_pty: Any) -> None:
    pty = make_pty()
    process = await run_tail(
        pty.path, "--device-time", "t", "--device-time-unit", "ms", "--max-frames", "2", "--duration", "20"
    )
    seen: list[str] = []
    await wait_for_line(process, "LINK UP", seen)
    await pty.write(b"t,volts,amps\n100,12.5,0.25\n#STEP START flash\nbad,line,x\n1,2\n110,12.25,0.5\n")
    async with asyncio.timeout(15):
        out, err = await process.communicate()
    lines = seen + out.decode().splitlines()
    assert process.returncode == 0, err.decode()
    assert any(line.endswith("tail  volts=12.5 amps=0.25  [device_time=100]") for line in lines)
    assert any(line.endswith("tail  ## STEP START flash") for line in lines)
    assert any(line.endswith("tail  volts=12.25 amps=0.5  [device_time=110]") for line in lines)
    summary = lines[-1]
    assert summary.startswith("summary: frames=2 markers=1 lines=6 ")
    assert summary.endswith("skipped: not_numeric=1 wrong_columns=1")


async def test_tail_stops_after_duration_and_reports_an_absent_port(tmp_path: Path) -> None:
    process = await run_tail(str(tmp_path / "ttyNOTHING"), "--duration", "1")
    async with asyncio.timeout(15):
        out, _ = await process.communicate()
    lines = out.decode().splitlines()
    assert process.returncode == 0
    assert any("** LINK DOWN (SerialException" in line for line in lines)
    assert lines[-1].startswith("summary: frames=0 ") and "link_losses=1" in lines[-1]


async def test_tail_rejects_an_invalid_option_clearly(make_pty: Any) -> None:
    process = await run_tail(make_pty().path, "--delimiter", ";;")
    async with asyncio.timeout(15):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert "invalid option" in err.decode() and "delimiter" in err.decode()


async def test_tail_prints_frames_on_stdout_and_its_log_on_stderr(make_pty: Any) -> None:
    """The frames are tail's output (piped to a file, to grep): its log lines go to stderr, never among
    them. Joined mid-stream, it waits for the device's header like the agent does, and says so there."""
    pty = make_pty()
    process = await run_tail(pty.path, "--max-frames", "1", "--duration", "20")
    seen: list[str] = []
    await wait_for_line(process, "LINK UP", seen)
    await pty.write(b"4400,12.5\n4401,12.5\nt_ms,volts\n4402,12.25\n")
    async with asyncio.timeout(15):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = seen + out.decode().splitlines()
    assert len(lines) == 3 and "** LINK UP" in lines[0] and lines[1].endswith("tail  t_ms=4402 volts=12.25")
    assert lines[2].startswith("summary: frames=1 ") and lines[2].endswith("skipped: before_header=2")
    logged = [json.loads(line)["event"] for line in err.decode().splitlines()]
    assert logged == ["serial.port_opened", "serial.waiting_for_header", "serial.header_read"]
