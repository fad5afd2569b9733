"""Issue 11 on the lens side: a destroy answered 204 is done (the record goes), and a Retry-After given
as an HTTP date is waited out by the lens client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from lens_helpers import LENS_ID, frames, lens_config, live_sessions, wait_for

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.lens.client import LensClient
from edge_agent.lens.errors import LensRateLimited
from edge_agent.lens.service import LensService


async def test_a_destroy_answered_204_removes_the_session_record(
    emulator: ArchetypeEmulator, state_dir: Path
) -> None:
    emulator.faults.update({"no_content": True, "path_prefix": "/v0.5/lens/sessions/destroy"})
    service = LensService(lens_config(emulator), state_dir, lambda _: None, source="bench")
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: service.running.is_set(), 15, "a streaming session")
        for frame in frames(0, 32):
            service.feed(frame)
        session_id = service.session.session_id if service.session else ""
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert emulator.faults.injected["no_content"] == 1
    assert emulator.faults.requests["POST /v0.5/lens/sessions/destroy"] == 1  # done at once, no retry
    assert live_sessions(emulator) == []
    record = json.loads((state_dir / "lens_sessions.json").read_text())
    assert record["sessions"] == [] and session_id
    assert service.lifecycle.stats.destroyed == 1


async def test_retry_after_as_an_http_date_is_waited_out(emulator: ArchetypeEmulator) -> None:
    emulator.faults.update({"rate_limit_rate": 1.0, "retry_after": 4, "retry_after_date": True})
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)

    async with LensClient(emulator.base_url, emulator.api_key, sleep=sleep) as client:
        with pytest.raises(LensRateLimited) as err:
            await client.create_session(LENS_ID)
    # A 429 was not applied, so even a create is tried again, after the date, every time.
    assert emulator.faults.requests["POST /v0.5/lens/sessions/create"] == 4
    assert len(waits) == 3 and all(3.0 <= w <= 5.0 for w in waits), waits
    assert err.value.retry_after is not None and 3.0 <= err.value.retry_after <= 5.0
