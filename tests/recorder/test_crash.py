"""A segment survives a SIGKILL mid-write as far as it was flushed, and is finished at the next start.

What can be lost: the frames not yet written as a gzip member when the process dies, i.e. those of the
last `recorder.flush_interval` plus the hand-off to the writer (0.25 s) plus whatever the event loop
was behind. Here (flush 200 ms) the test allows 1.2 s before the kill (a loaded machine), and checks
that everything older is in the recovered segment, exactly, as a prefix of the step's frames."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
from e2e_helpers import agent_config_toml, step_toml
from recorder_helpers import CapturingSim, free_port, segment_rows, split_by_step
from test_s3_outage_kill import _spawn, _status, _until

from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.recorder import csvgz

FLUSH_S = 0.2
ALLOWED_LOSS_S = 1.2


async def test_sigkill_mid_segment_keeps_what_was_flushed(tmp_path: Path, atlas: AtlasEmulator) -> None:
    link = tmp_path / "ttyBENCH0"
    port = free_port()
    control = f"http://127.0.0.1:{port}"
    config = tmp_path / "agent.toml"
    extra = f'\n[recorder]\nflush_interval = "{int(FLUSH_S * 1000)}ms"\n'
    config.write_text(
        agent_config_toml(tmp_path / "state", link, atlas.base_url, control_port=port, extra=extra),
        encoding="utf-8",
    )
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        'name = "crash"\nduration = "30s"\n' + step_toml("long_step", 0.8, 29.0), encoding="utf-8"
    )
    log = tmp_path / "agent.log"
    proc = await _spawn(config, log)
    sim = CapturingSim(scenario, link, tmp_path / "oracle.jsonl", rate=1000.0)
    again: asyncio.subprocess.Process | None = None
    try:
        async with aiohttp.ClientSession() as http:
            await _until(lambda: _status(http, control), 30, "the agent's control API")
            await sim.start()

            async def recording_step() -> bool:
                status = await _status(http, control)
                return bool(
                    status and status["steps"]["current"] and status["recorder"]["frames_recorded"] > 2000
                )

            await _until(recording_step, 20, "frames of the step on disk")
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await proc.wait()
            await sim.stop()
            part = next((tmp_path / "state" / "recordings").rglob("*long_step.csv.gz.part"))
            assert part.exists(), "the open segment is left as .part by the kill"
            again = await _spawn(config, log)
            await _until(lambda: _status(http, control), 30, "the restarted agent")
            again.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(again.wait(), 30) == 0
    finally:
        for p in (proc, again):
            if p is not None and p.returncode is None:
                p.kill()
                await p.wait()
        await sim.stop()

    finished = next((tmp_path / "state" / "recordings").rglob("*long_step.csv.gz"))
    record = json.loads(finished.with_name(finished.name.removesuffix(".csv.gz") + ".json").read_text())
    assert record["state"] == "finished" and record["recovered"] is True
    assert not list((tmp_path / "state" / "recordings").rglob("*.part"))
    written = split_by_step(sim.port.lines)
    rows = segment_rows(finished.read_bytes(), written.columns)
    expected = written.by_step["long_step"]
    assert record["frames"] == len(rows) > 0
    assert rows == expected[: len(rows)], "the recovered rows are the step's first frames, exact"
    # Everything written ALLOWED_LOSS_S before the kill is there.
    sample_times = [t for line, t in zip(sim.port.lines, sim.port.times, strict=True) if line[:1].isdigit()]
    step_start = written.all.index(expected[0])
    old_enough = sum(1 for t in sample_times[step_start:] if t <= killed_at - ALLOWED_LOSS_S)
    assert len(rows) >= old_enough, (len(rows), old_enough)
    lost_s = (
        len(expected[: sum(1 for t in sample_times[step_start:] if t <= killed_at)]) - len(rows)
    ) / 1000.0
    print(f"frames lost to the SIGKILL: {lost_s:.3f} s of the bench's output")
    # The file is a valid gzip stream through its end.
    good, lines = csvgz.scan(finished)
    assert good == finished.stat().st_size and lines == len(rows) + 1
