"""A session create whose answer is lost may still have made a session, holding one of the account's
few runner slots (some accounts have one) for a day. The agent records each create before sending it
and, while any create's outcome is unknown, searches the org's sessions for the ones it made and
destroys them. Against the real emulator over loopback: a late answer, a crash during a create."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from lens_helpers import LENS_ID, fast_emulator_settings, frames, lens_config, live_sessions, wait_for

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.common import Handler
from edge_agent.lens.client import LensClient
from edge_agent.lens.lifecycle import orphans_of_unknown_creates
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.service import LensService
from edge_agent.lens.store import PendingCreate, SessionRecord, SessionStore

CREATE_PATH = "/v0.5/lens/sessions/create"


def _late_creates(first: int, delay: float) -> tuple[web.Middleware, list[str]]:
    """The first `first` creates take effect at once and are answered `delay` seconds later (longer
    than the agent's read timeout): the agent gives up on an answer while the session exists."""
    made: list[str] = []

    @web.middleware
    async def late(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == CREATE_PATH and len(made) < first and isinstance(response, web.Response):
            made.append(response.text or "")
            await asyncio.sleep(delay)
        return response

    return late, made


@contextlib.asynccontextmanager
async def emulator_with(
    middleware: web.Middleware | None = None, **settings: Any
) -> AsyncIterator[ArchetypeEmulator]:
    emu = ArchetypeEmulator(fast_emulator_settings(**settings), port=0, seed=7)
    if middleware is not None:
        emu.server.app.middlewares.append(middleware)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@contextlib.asynccontextmanager
async def streaming(service: LensService) -> AsyncIterator[list[LensInference]]:
    inferences: list[LensInference] = []
    service.outputs.on_inference = inferences.append

    async def feed() -> None:
        n = 0
        while True:
            for frame in frames(n, 8):
                service.feed(frame)
            n += 8
            await asyncio.sleep(0.02)

    task = asyncio.create_task(service.run())
    feeder = asyncio.create_task(feed())
    try:
        yield inferences
    finally:
        for t in (feeder, task):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


def _status(emu: ArchetypeEmulator, session_id: str) -> str:
    return str(next(s["status"] for s in emu.state()["sessions"] if s["session_id"] == session_id))


async def test_a_create_answered_too_late_does_not_hold_the_only_runner_slot(state_dir: Path) -> None:
    late, made = _late_creates(first=1, delay=2.0)
    async with emulator_with(late, runner_slots=1) as emu:
        service = LensService(lens_config(emu, read_timeout=0.5), state_dir, lambda _: None, source="bench")
        service.lifecycle.backoff.base = service.lifecycle.backoff.cap = 0.05
        async with streaming(service) as inferences:
            # Without the search, every later create fails "no free runner" (the orphan holds it).
            await wait_for(lambda: len(inferences) >= 2, 20, "inferences from a second session")
            assert len(made) == 1
            sessions = emu.state()["sessions"]
            assert len(sessions) == 2, sessions
            orphan = next(s for s in sessions if s["session_id"] != service.session.session_id)  # type: ignore[union-attr]
            assert orphan["status"] == "SESSION_STATUS_DESTROYED"
            assert service.lifecycle.stats.unknown_creates == 1
            assert service.lifecycle.stats.orphans_destroyed == 1
            assert service.lifecycle.stats.created == 1  # the lost one is not counted as made by us
        assert live_sessions(emu) == []


async def test_a_crash_during_a_create_is_cleaned_up_at_the_next_start(state_dir: Path) -> None:
    """The previous process wrote its pending create and died before the answer; the service had
    made the session. That session is destroyed at the next start; one of the same lens registered
    before the create is not."""
    async with emulator_with(runner_slots=4) as emu:
        async with LensClient(emu.base_url, emu.api_key) as client:
            before = (await client.create_session(LENS_ID)).session_id
            await asyncio.sleep(1.0)  # well clear of the create's span (clock_skew 0 below)
            sent = time.time()
            SessionStore(state_dir).add_pending_create(PendingCreate(LENS_ID, sent, sent, in_flight=True))
            orphan = (await client.create_session(LENS_ID)).session_id
            service = LensService(lens_config(emu, clock_skew=0.0), state_dir, lambda _: None, source="bench")
            async with streaming(service) as inferences:
                await wait_for(lambda: len(inferences) >= 1, 20, "streaming after the start-up search")
                assert _status(emu, orphan) == "SESSION_STATUS_DESTROYED"
                assert _status(emu, before) != "SESSION_STATUS_DESTROYED"
                assert service.lifecycle.stats.orphans_destroyed == 1
                assert service.lifecycle.stats.leftovers_destroyed == 0  # it was never recorded
            await client.destroy_session(before)
        assert live_sessions(emu) == []


def test_orphan_match_is_by_lens_time_and_state() -> None:
    """The pure matcher, on both list shapes (full record with `registration_timestamp`, documented
    list item with `session_duration_sec` only)."""
    pending = [PendingCreate(LENS_ID, 1000.0, 1010.0)]

    def item(session_id: str, **fields: Any) -> dict[str, Any]:
        running = "SESSION_STATUS_RUNNING"
        return {"session_id": session_id, "lens_id": LENS_ID, "session_status": running, **fields}

    listed = [
        item("in-span", registration_timestamp=1005.0),
        item("in-span-by-duration", session_duration_sec=100.0),  # listed at 1100: registered 1000
        item("late-but-within-timeout", registration_timestamp=1010.0 + 7.0 + 2.0),
        item("too-early", registration_timestamp=1000.0 - 2.5),
        item("too-late", registration_timestamp=1010.0 + 7.0 + 2.5),
        item("other-lens", registration_timestamp=1005.0) | {"lens_id": "lns-other"},
        item("ours", registration_timestamp=1005.0),
        item("ended", registration_timestamp=1005.0, session_status="SESSION_STATUS_DESTROYED"),
        item("in-use", registration_timestamp=1005.0, num_active_connections=1),
        item("idle", registration_timestamp=1005.0, num_active_connections=0),
        item("no-time"),
    ]
    found = orphans_of_unknown_creates(
        listed, pending, {"ours", None}, listed_at=1100.0, clock_skew=2.0, create_timeout=7.0
    )
    assert found == ["in-span", "in-span-by-duration", "late-but-within-timeout", "idle"]

    # The service's clock 10 minutes ahead (its Date header says so): its timestamps are moved back.
    def shifted(entry: dict[str, Any]) -> dict[str, Any]:
        stamp = entry.get("registration_timestamp")
        return entry if stamp is None else entry | {"registration_timestamp": stamp + 600.0}

    ahead = [shifted(entry) for entry in listed]
    skewed = orphans_of_unknown_creates(
        ahead,
        pending,
        {"ours", None},
        listed_at=1100.0,
        clock_skew=2.0,
        create_timeout=7.0,
        server_offset=600.0,
    )
    assert skewed == found
    assert orphans_of_unknown_creates(
        ahead, pending, {"ours", None}, listed_at=1100.0, clock_skew=2.0, create_timeout=7.0
    ) == ["in-span-by-duration"]  # without the offset only the duration-based item still matches


async def test_search_off_leaves_the_unknown_session_alone(state_dir: Path) -> None:
    """`reap_unknown_creates = false`: the operator shares the lens and accepts the risk of orphans."""
    async with emulator_with(runner_slots=4) as emu:
        async with LensClient(emu.base_url, emu.api_key) as client:
            sent = time.time()
            SessionStore(state_dir).add_pending_create(PendingCreate(LENS_ID, sent, sent, in_flight=True))
            orphan = (await client.create_session(LENS_ID)).session_id
            service = LensService(
                lens_config(emu, reap_unknown_creates=False), state_dir, lambda _: None, source="bench"
            )
            async with streaming(service) as inferences:
                await wait_for(lambda: len(inferences) >= 1, 20, "streaming")
                assert _status(emu, orphan) != "SESSION_STATUS_DESTROYED"
                assert service.lifecycle.stats.orphans_destroyed == 0
            await client.destroy_session(orphan)
        assert live_sessions(emu) == []


def test_pending_creates_fold_into_one_interval_per_lens(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    for t in (100.0, 160.0, 220.0):
        pending = PendingCreate(LENS_ID, t, t, in_flight=True)
        store.add_pending_create(pending)
        store.settle_pending_create(pending, outcome_known=False)
    known = PendingCreate(LENS_ID, 300.0, 300.0, in_flight=True)
    store.add_pending_create(known)
    assert store.load().pending_creates[-1] == known  # on file while the call is out
    store.settle_pending_create(known, outcome_known=True)
    other = PendingCreate("lns-other", 50.0, 50.0, in_flight=True)
    store.add_pending_create(other)
    store.settle_pending_create(other, outcome_known=False)
    assert store.load().pending_creates == [
        PendingCreate(LENS_ID, 100.0, 220.0),
        PendingCreate("lns-other", 50.0, 50.0),
    ]


@pytest.mark.parametrize("outcome_known", [True, False])
def test_an_answered_create_resolves_its_record_in_the_same_write(
    tmp_path: Path, outcome_known: bool
) -> None:
    store = SessionStore(tmp_path)
    earlier = PendingCreate(LENS_ID, 10.0, 10.0, in_flight=True)
    store.add_pending_create(earlier)
    store.settle_pending_create(earlier, outcome_known=outcome_known)
    pending = PendingCreate(LENS_ID, 20.0, 20.0, in_flight=True)
    store.add_pending_create(pending)
    store.add_session(SessionRecord("lsn-1", LENS_ID, 21.0), resolves=pending)
    state = store.load()
    assert [s.session_id for s in state.sessions] == ["lsn-1"]
    assert state.pending_creates == ([] if outcome_known else [PendingCreate(LENS_ID, 10.0, 10.0)])
