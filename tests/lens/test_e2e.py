"""Create -> RUNNING -> stream -> inferences -> destroy, against the emulator over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from lens_helpers import LENS_ID, frames, lens_config, live_sessions, wait_for

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.service import LensService


async def feeder(service: LensService, stop: asyncio.Event, per_tick: int = 8, tick: float = 0.02) -> None:
    n = 0
    while not stop.is_set():
        for frame in frames(n, per_tick):
            service.feed(frame)
        n += per_tick
        await asyncio.sleep(tick)


async def test_session_streams_and_inferences_come_back(emulator: ArchetypeEmulator, state_dir: Path) -> None:
    inferences: list[LensInference] = []
    service = LensService(lens_config(emulator), state_dir, inferences.append, source="bench")
    stop = asyncio.Event()
    run = asyncio.create_task(service.run())
    feed = asyncio.create_task(feeder(service, stop))
    try:
        await wait_for(lambda: len(inferences) >= 5, 15, "five inferences")
        assert service.session is not None
        session_id = service.session.session_id
        assert "api_key" not in service.session.raw  # the create reply's echoed key is dropped at once
        record = json.loads((state_dir / "lens_sessions.json").read_text())
        assert [s["session_id"] for s in record["sessions"]] == [session_id]
        assert record["sessions"][0]["lens_id"] == LENS_ID
        sessions = live_sessions(emulator)
        assert [s["session_id"] for s in sessions] == [session_id]
        assert sessions[0]["status"] == "SESSION_STATUS_RUNNING"
        assert sessions[0]["counts"]["windows_accepted"] >= 5
        assert sessions[0]["counts"]["invalid_updates"] == 0
        first = inferences[0]
        assert first.label in ("normal", "fault") and set(first.scores) == {"normal", "fault"}
        assert first.source == "bench" and first.session_id == session_id
        assert first.window_start is not None and first.window_end is not None
        assert first.window_start < first.window_end
    finally:
        stop.set()
        feed.cancel()
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        with contextlib.suppress(asyncio.CancelledError):
            await feed
    assert live_sessions(emulator) == []
    assert json.loads((state_dir / "lens_sessions.json").read_text())["sessions"] == []
    assert service.streamer.stats.updates_sent >= 5


async def test_idle_socket_sends_heartbeats(emulator: ArchetypeEmulator, state_dir: Path) -> None:
    """No frames and outputs on SSE (so no session.read polls): the socket still says it is alive."""
    service = LensService(
        lens_config(emulator, heartbeat_interval="300ms", reader="sse"),
        state_dir,
        lambda _: None,
        source="bench",
    )
    run = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: service.streamer.stats.heartbeats_sent >= 3, 10, "three heartbeats")
        (session,) = live_sessions(emulator)
        assert session["counts"]["heartbeats"] >= 2
        assert session["counts"]["updates_received"] == 0
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert live_sessions(emulator) == []
