"""The agent against an unwell lens service: dropped websockets, sessions ended server-side, 5xx and
429 on create, no free runner, a wrong key. It recovers each time (or stops, for 401) and never
crashes; nothing it was told is lost or read twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lens_helpers import admin, frames, lens_config, live_sessions, wait_for

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.lens.errors import LensAuthError
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.service import LensService


class Running:
    """A LensService running with a frame feeder, and what it handed to detection."""

    def __init__(self, service: LensService) -> None:
        self.service = service
        self.inferences: list[LensInference] = []
        service.outputs.on_inference = self.inferences.append
        self.feeding = True
        self.task = asyncio.create_task(service.run())
        self._feeder = asyncio.create_task(self._feed())

    async def _feed(self) -> None:
        n = 0
        while True:
            if self.feeding:
                for frame in frames(n, 8):
                    self.service.feed(frame)
                n += 8
            await asyncio.sleep(0.02)

    @property
    def session_id(self) -> str:
        return self.service.session.session_id if self.service.session else ""

    async def drain(self, emu: ArchetypeEmulator) -> None:
        """Stop feeding, then every inference the lens made reaches detection exactly once."""
        self.feeding = False
        session_id = self.session_id
        await asyncio.sleep(0.5)
        await wait_for(
            lambda: len(self.inferences) == emu_session(emu, session_id)["counts"]["inferences"],
            10, "every inference read once",
        )  # fmt: skip

    async def stop(self) -> None:
        self._feeder.cancel()
        self.task.cancel()
        for task in (self._feeder, self.task):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def running(emu: ArchetypeEmulator, state_dir: Path, **overrides: Any) -> AsyncIterator[Running]:
    run = Running(LensService(lens_config(emu, **overrides), state_dir, lambda _: None, source="bench"))
    try:
        yield run
    finally:
        await run.stop()
    assert live_sessions(emu) == [], "the session must be destroyed on the way out"


def emu_session(emu: ArchetypeEmulator, session_id: str) -> dict[str, Any]:
    return next(s for s in emu.state()["sessions"] if s["session_id"] == session_id)


async def test_websocket_dropped_every_few_seconds(emulator: ArchetypeEmulator, state_dir: Path) -> None:
    await admin(emulator, "/faults", {"ws_drop_every": 0.4})
    async with running(emulator, state_dir) as run:
        await wait_for(lambda: run.service.streamer.stats.connects >= 4, 20, "four connections")
        await wait_for(lambda: len(run.inferences) >= 10, 20, "inferences across drops")
        assert run.service.sessions_opened == 1  # the session survived every drop
        assert emulator.state()["injected"]["ws_drop"] >= 3
        await admin(emulator, "/faults", {"ws_drop_every": 0})
        await run.drain(emulator)


@pytest.mark.parametrize("ending", ["destroy", "expire", "fail"])
async def test_session_ended_server_side_is_replaced(
    emulator: ArchetypeEmulator, state_dir: Path, ending: str
) -> None:
    async with running(emulator, state_dir) as run:
        await wait_for(lambda: len(run.inferences) >= 3, 15, "first inferences")
        first = run.session_id
        await admin(emulator, f"/sessions/{first}/{ending}", {})
        await wait_for(lambda: run.session_id not in ("", first), 20, "a replacement session")
        second = run.session_id
        await wait_for(
            lambda: emu_session(emulator, second)["counts"]["inferences"] >= 2, 15, "new inferences"
        )
        assert emu_session(emulator, first)["status"] in ("SESSION_STATUS_DESTROYED", "SESSION_STATUS_STALE")
        record = json.loads((state_dir / "lens_sessions.json").read_text())
        assert [s["session_id"] for s in record["sessions"]] == [second]
        assert run.service.lifecycle.stats.replaced == 1


async def test_session_expiry_switch_is_survived(emulator: ArchetypeEmulator, state_dir: Path) -> None:
    await admin(emulator, "/faults", {"session_expire_after": 1.0})
    async with running(emulator, state_dir) as run:
        await wait_for(lambda: run.service.sessions_opened >= 3, 25, "three sessions in turn")
        await admin(emulator, "/faults", {"session_expire_after": 0})
        await wait_for(lambda: run.service.running.is_set(), 10, "streaming again")
        assert emulator.state()["runner_slots"]["in_use"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"error_rate": 1.0, "error_status": 503},
        {"rate_limit_rate": 1.0, "retry_after": 0.3},
        {"no_free_runner": True},
        {"no_free_runner": True, "runner_error_text": "Failed to fetch session_runner!"},
    ],
    ids=["5xx", "429", "no-runner", "runner-fetch"],
)
async def test_create_failures_are_retried(
    emulator: ArchetypeEmulator, state_dir: Path, fault: dict[str, Any]
) -> None:
    await admin(emulator, "/faults", {**fault, "path_prefix": "/v0.5/lens/sessions/create"})
    async with running(emulator, state_dir) as run:
        run.service.lifecycle.backoff.base = 0.05
        run.service.lifecycle.backoff.cap = 0.3
        await wait_for(lambda: run.service.lifecycle.stats.create_failures >= 3, 15, "failing creates")
        assert live_sessions(emulator) == []
        assert not run.task.done()  # retried inside the component, which never ended (no restart)
        await admin(emulator, "/faults", {"error_rate": 0, "rate_limit_rate": 0, "no_free_runner": False})
        await wait_for(lambda: len(run.inferences) >= 2, 15, "streaming after the fault cleared")
        assert len(live_sessions(emulator)) == 1 and run.service.sessions_opened == 1


async def test_429_retry_after_is_honoured(emulator: ArchetypeEmulator, state_dir: Path) -> None:
    await admin(
        emulator,
        "/faults",
        {"rate_limit_rate": 1.0, "retry_after": 0.6, "path_prefix": "/v0.5/lens/sessions/create"},
    )
    async with running(emulator, state_dir) as run:
        run.service.lifecycle.backoff.base = 0.01
        run.service.lifecycle.backoff.cap = 0.01
        await asyncio.sleep(1.5)
        # With a 0.01 s backoff but Retry-After 0.6 s, 1.5 s allows at most 3 attempts.
        assert 1 <= emulator.state()["injected"]["429"] <= 3
        await admin(emulator, "/faults", {"rate_limit_rate": 0})
        await wait_for(lambda: run.service.running.is_set(), 10, "streaming")


async def test_wrong_key_stops_with_a_clear_error(emulator: ArchetypeEmulator, state_dir: Path) -> None:
    config = lens_config(emulator, api_key="not-the-key")
    service = LensService(config, state_dir, lambda _: None, source="bench")
    with pytest.raises(LensAuthError) as caught:
        await asyncio.wait_for(service.run(), 10)
    assert caught.value.status == 401
    assert "Missing or invalid API key" in str(caught.value)
    assert "not-the-key" not in str(caught.value)
    assert emulator.state()["sessions"] == []


async def test_sse_reader_resumes_without_loss_or_duplicates(
    emulator: ArchetypeEmulator, state_dir: Path
) -> None:
    async with running(emulator, state_dir, reader="sse") as run:
        await wait_for(lambda: len(run.inferences) >= 5, 15, "inferences over SSE")
        assert run.service.streamer.stats.reads_sent == 0
        await emulator.server.refuse_for(0.5)  # every connection cut, SSE included
        await wait_for(
            lambda: run.service.sse is not None and run.service.sse.connects >= 2, 15, "SSE reconnect"
        )
        await wait_for(lambda: len(run.inferences) >= 15, 20, "inferences after the cut")
        await run.drain(emulator)
