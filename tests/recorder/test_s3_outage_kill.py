"""Issue 14, acceptance 2: S3 down while a run records, then back but slow, and the agent SIGKILLed
in the middle of a multipart upload and restarted -> every segment in the bucket once (byte for byte
the local file), registered once on its step, every frame the bench wrote in a step in its step's
objects, no multipart upload left open. The restarted agent resumes the interrupted upload (it lists
the parts already there and sends only the rest: `s3_multipart_resumed` in its log)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from e2e_helpers import agent_config_toml, step_toml
from recorder_helpers import (
    BUCKET,
    CapturingSim,
    S3Proxy,
    free_port,
    objects,
    open_multipart_uploads,
    s3,
    s3_toml,
    segment_rows,
    split_by_step,
)

from edge_agent.emulators.atlas import AtlasEmulator

STEPS = [("soak", 0.8, 2.5), ("sweep", 3.3, 2.5), ("hold", 5.8, 2.0)]
DURATION = 7.8
RATE = 4000.0  # lines/s: ~80 kB/s of gzip'd CSV, a few 64 KiB parts per step segment
PART_MB = 0.0625


async def _spawn(config: Path, log: Path, *extra: str) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--log-format", "json",
            *extra, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip


async def _status(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        async with http.get(url + "/status", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            if resp.status == 200:
                body: dict[str, Any] = await resp.json()
                return body
    return None


async def _until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within:g} s waiting for {what}")


async def _parts_in_flight(url: str) -> int:
    """Parts already uploaded to the first open multipart upload (0: none open)."""

    def look() -> int:
        client = s3(url)
        uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        if not uploads:
            return 0
        u = uploads[0]
        return len(client.list_parts(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))

    return await asyncio.to_thread(look)


async def test_outage_then_sigkill_mid_multipart_loses_and_duplicates_nothing(
    tmp_path: Path, atlas: AtlasEmulator, s3_server: str, s3_proxy: S3Proxy
) -> None:
    link = tmp_path / "ttyBENCH0"
    port = free_port()
    control = f"http://127.0.0.1:{port}"
    config = tmp_path / "agent.toml"
    extra = '\n[recorder]\nflush_interval = "200ms"\n'
    toml = agent_config_toml(tmp_path / "state", link, atlas.base_url, control_port=port, extra=extra)
    config.write_text(toml + s3_toml(s3_proxy.url, part_size_mb=PART_MB), encoding="utf-8")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        f'name = "outage"\nduration = "{DURATION}s"\n' + "".join(step_toml(*s) for s in STEPS),
        encoding="utf-8",
    )
    log = tmp_path / "agent.log"
    await s3_proxy.down()  # S3 unreachable from the start: uploads wait and retry
    proc = await _spawn(config, log)
    # Hardware flow control on the simulated cable: the agent (another process) starved of CPU for a
    # moment at 4,000 lines/s let the bench drop 1,601 lines, a step's END marker among them (load 8),
    # and this test is about S3 and a kill, not the cable.
    sim = CapturingSim(scenario, link, tmp_path / "oracle.jsonl", rate=RATE, flow_control_s=5.0)
    resumed_proc: asyncio.subprocess.Process | None = None
    try:
        async with aiohttp.ClientSession() as http:

            async def port_up() -> bool:
                status = await _status(http, control)
                return bool(status and status["ports"]["bench"]["up"])

            await _until(lambda: _status(http, control), 30, "the agent's control API")
            await sim.start()
            await _until(port_up, 5, "the agent to open the pty")
            await sim.wait(60)

            async def steps_done() -> bool:
                status = await _status(http, control)
                return bool(status and len(status["steps"]["completed"]) == len(STEPS))

            await _until(steps_done, 20, "the three steps to end")

            async def segments_closed() -> bool:  # the lead-in and the three steps
                status = await _status(http, control)
                return bool(status and status["recorder"]["finished_segments"] >= 4)

            await _until(segments_closed, 10, "the step segments to be closed")
            status = await _status(http, control)
            assert status is not None and status["recorder"]["uploaded_segments"] == 0  # S3 is down

            async def outcomes_in_atlas() -> bool:  # S3 down does not hold up the Atlas jobs
                runs = atlas.state()["test_runs"]
                steps = [s for r in runs for c in r["test_cards"] for s in c["test_steps"]]
                return len(steps) == 3 and all(s["execution_status"] != "todo" for s in steps)

            await _until(outcomes_in_atlas, 20, "the step outcomes in Atlas while S3 is down")
            status = await _status(http, control)
            assert status is not None and status["outbox"]["counters"].get("retries", 0) >= 1
            assert status["outbox"]["service_failures"] == 0, "an S3 outage paused the whole outbox"
            # S3 back, but slow: a multipart upload takes seconds. Kill the agent once one has parts.
            s3_proxy.delay_per_chunk = 0.5  # a part takes >= 0.5 s: the kill lands between parts
            await s3_proxy.up()
            await _until(lambda: _parts_in_flight(s3_server), 60, "a multipart upload with a part")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert await asyncio.to_thread(open_multipart_uploads, s3_server), "killed mid-upload"
            s3_proxy.delay_per_chunk = 0.0
            resumed_proc = await _spawn(config, log)

            async def drained() -> bool:
                status = await _status(http, control)
                if not status:
                    return False
                depth = status["outbox"]["depth"]
                return depth.get("pending", 0) == 0 and depth.get("in_flight", 0) == 0

            await _until(drained, 90, "the restarted agent to deliver everything")
            resumed_proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(resumed_proc.wait(), 30) == 0
    finally:
        for p in (proc, resumed_proc):
            if p is not None and p.returncode is None:
                p.kill()
                await p.wait()
        await sim.stop()

    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(r.get("event") == "s3_multipart_resumed" for r in records), "the upload was not resumed"
    stored = await asyncio.to_thread(objects, s3_server)
    assert await asyncio.to_thread(open_multipart_uploads, s3_server) == []
    local = {p.name: p.read_bytes() for p in (tmp_path / "state" / "recordings").rglob("*.csv.gz")}
    # Each segment once, byte for byte.
    assert sorted(k.rsplit("/", 1)[1] for k in stored) == sorted(local)
    assert all(stored[k] == local[k.rsplit("/", 1)[1]] for k in stored)
    # Registered once each, on the right step.
    (run,) = atlas.state()["test_runs"]
    regs = Counter(r["s3_url"] for r in run["test_data"])
    assert regs == Counter(f"s3://{BUCKET}/{k}" for k in stored), regs
    titles = {s["uuid"]: s["title"] for c in run["test_cards"] for s in c["test_steps"]}
    written = split_by_step(sim.port.lines)
    got: dict[str, list[tuple[float, ...]]] = {}
    for r in run["test_data"]:
        if r["associations"]:
            title = titles[r["associations"][0]["test_step_id"]]
            data = stored[r["s3_url"].removeprefix(f"s3://{BUCKET}/")]
            got.setdefault(title, []).extend(segment_rows(data, written.columns))
    for title, rows in got.items():
        rows.sort(key=lambda row: row[0])
        assert rows == written.by_step[title], f"{title}: frames lost or changed"
    assert set(got) == {name for name, _, _ in STEPS}
