"""Issue 5, point 4, at the level of the whole agent: Atlas answering 5xx then recovering, 429 with
Retry-After, slow uploads, and a 422 on a bad field. The retry/give-up rules themselves are tested
per component in tests/outbox and tests/reporter; here the agent, the bench and Atlas are real and the
assertion is about the data: what is retryable arrives once, what is refused is kept and shown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from e2e_helpers import ONE_FAULT_PER_RULE as FAULTS
from e2e_helpers import (
    account,
    detected_incidents,
    fault_bench,
    get_json,
    outbox_jobs,
    wait_until,
)

from edge_agent.agent import Agent
from edge_agent.emulators.atlas import AtlasEmulator


async def _idle(agent: Agent) -> bool:
    depth = (await agent.outbox.status())["depth"]
    return bool(depth.get("pending", 0) == 0 and depth.get("in_flight", 0) == 0)


async def test_5xx_burst_429_retry_after_and_slow_uploads_then_everything_once(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    agent, sim, state_dir = fault_bench(tmp_path, atlas.base_url, "http-faults", "3.5s", FAULTS)
    await agent.start()
    try:
        # Phase 1, the whole run's reporting meets 503s.
        atlas.faults.update({"error_rate": 1.0, "error_status": 503})
        await sim.start()
        await sim.wait(15)
        assert atlas.faults.injected["503"] >= 2  # retried, not given up
        assert agent.outbox.counters.get("failed", 0) == 0
        assert atlas.state()["issues"] == []
        # Phase 2, 429 with Retry-After: 1 s. The whole queue waits that long between tries: over
        # 2.5 s a handful of attempts, not the ~25 that retry_base (100 ms) would make.
        atlas.faults.update({"error_rate": 0.0, "rate_limit_rate": 1.0, "retry_after": 1.0})
        before_429 = atlas.faults.injected["429"]
        await asyncio.sleep(2.5)
        rate_limited = atlas.faults.injected["429"] - before_429
        assert 1 <= rate_limited <= 4, rate_limited
        # Phase 3, Atlas answers again but reads uploads slowly (20 kB/s): delivered, just later.
        atlas.faults.update({"rate_limit_rate": 0.0, "upload_bytes_per_sec": 20_000.0})
        await wait_until(lambda: _idle(agent), 30, "the outbox to deliver after the faults")
        assert atlas.faults.injected["slow_upload"] >= len(FAULTS)
    finally:
        drained = await agent.stop(time.monotonic() + 15)
        if sim.task is not None and not sim.task.done():
            await sim.stop()
    assert drained
    anomalies = detected_incidents(state_dir)
    assert len(anomalies) == len(FAULTS)
    reports = account(atlas.state(), anomalies)
    assert [r[1] for r in reports.values()] == ["issue"] * len(FAULTS)
    assert [j["id"] for j in outbox_jobs(state_dir) if j["state"] != "done"] == []


async def test_422_on_a_bad_field_is_kept_failed_and_shown_on_status_reporting_goes_on(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    # A system id that is not a UUID: Atlas refuses the test run with 422 naming the field.
    agent, sim, state_dir = fault_bench(
        tmp_path, atlas.base_url, "http-faults", "3.5s", FAULTS, system_id="bench-03-rig"
    )
    await agent.start()
    assert agent.control is not None
    try:
        await sim.start()
        await sim.wait(15)
        await wait_until(lambda: _idle(agent), 15, "the outbox to settle")
        status = await get_json(agent.control.url + "/status")
    finally:
        drained = await agent.stop(time.monotonic() + 5)
        if sim.task is not None and not sim.task.done():
            await sim.stop()

    failures = status["outbox"]["failures"]
    run_failures = [f for f in failures if f["kind"] == "atlas.test_run"]
    assert len(run_failures) == 1, failures
    failure = run_failures[0]
    assert 0 <= failure["failed_ago_s"] < 60 and "at" not in failure  # an age, not an epoch float
    assert failure["attempts"] == 1  # a 422 is not retried
    assert failure["status"] == 422
    assert "system_id" in str(failure)  # the server's answer names the field
    assert status["outbox"]["depth"].get("failed", 0) >= 1
    assert atlas.state()["test_runs"] == []
    # The refused test run does not hold up the anomalies: each is reported once.
    anomalies = detected_incidents(state_dir)
    assert len(anomalies) == len(FAULTS)
    account(atlas.state(), anomalies)
    # Kept: still in the outbox as failed after the stop (visible to the next start's /status).
    kept = [j for j in outbox_jobs(state_dir) if j["kind"] == "atlas.test_run"]
    assert [j["state"] for j in kept] == ["failed"]
    assert drained  # nothing else waits on the refused job (this scenario has no steps)
