"""README: "Each condition is logged once when it starts and once when it ends, not per retry". The
outbox logs a retry per attempt at debug only; what an operator reads at info and above is the
condition: Atlas failing (the queue's pause) or one job failing for its own sake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from outbox_peer import ItemHandler, ScriptedPeer, fail

from edge_agent.atlas import AtlasClient
from edge_agent.atlas.jobs import KIND_SESSION, register_reporter_handlers
from edge_agent.config import EmulatorSection, OutboxSection
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.outbox import JobState, Outbox

TOKEN = "retry-logs-atlas-credential"
SECTION = OutboxSection.model_validate({"retry_base": 0.02, "retry_cap": 0.1, "drain_deadline": 5.0})
WAIT = 15.0
SHOWN = ("info", "warning", "error", "critical")  # what an operator reads at the default level


@pytest.fixture
async def emulator() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=5) as emu:
        yield emu


async def until(outbox: Outbox, job_id: int, done: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while not done(await outbox.job(job_id)):
        if loop.time() > end:
            raise AssertionError(f"timed out after {WAIT} s waiting for {what}")
        await asyncio.sleep(0.02)


def shown(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if e["log_level"] in SHOWN]


async def test_an_atlas_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    tmp_path: Path, emulator: AtlasEmulator
) -> None:
    client = AtlasClient(emulator.api_url, TOKEN, connect_timeout=2.0, read_timeout=5.0, upload_timeout=10.0)
    outbox = Outbox(tmp_path / "state", SECTION)
    register_reporter_handlers(outbox, client)
    await outbox.start()
    try:
        emulator.faults.update({"error_rate": 1.0, "error_status": 503})  # every API request: 503
        with structlog.testing.capture_logs() as logs:
            job = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "bench run", "not_before": ""})
            await until(outbox, job, lambda j: j.attempts >= 5, "five attempts against the 503s")
            emulator.faults.update({"error_rate": 0.0})
            await until(outbox, job, lambda j: j.state is JobState.DONE, "the job to go through")
    finally:
        await outbox.close()
        await client.close()
    assert emulator.faults.injected["503"] >= 5
    assert shown(logs) == ["outbox_paused", "outbox_resumed"]
    paused, resumed = (next(e for e in logs if e["event"] == name) for name in shown(logs))
    assert paused["log_level"] == "warning" and paused["status"] == 503
    assert resumed["failed_attempts"] >= 4 and resumed["paused_s"] > 0  # the 5th may have gone through
    retries = [e for e in logs if e["event"] == "outbox_retry"]
    assert all(e["log_level"] == "debug" for e in retries)  # the detail, per attempt, for --log-level debug


async def test_a_job_retried_for_its_own_sake_is_one_line_when_it_starts_and_one_when_it_ends(
    tmp_path: Path, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    """408 is retryable and says nothing of the service: the queue does not pause, the job retries."""
    peer.script("slow", fail(408), fail(408), fail(408), fail(408))
    outbox = Outbox(tmp_path / "state", SECTION, {"item": handler})
    await outbox.start()
    try:
        with structlog.testing.capture_logs() as logs:
            job = await outbox.enqueue("item", "g", {"key": "slow"})
            await until(outbox, job, lambda j: j.state is JobState.DONE, "the job to go through")
    finally:
        await outbox.close()
    assert peer.creates["slow"] == 1 and [k for _, k in peer.posts].count("slow") == 5
    assert shown(logs) == ["outbox_job_retrying", "outbox_job_delivered_after_retries"]
    delivered = next(e for e in logs if e["event"] == "outbox_job_delivered_after_retries")
    assert delivered["attempts"] == 5
