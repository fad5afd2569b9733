"""Issue 12, item 3: wall-clock steps (NTP on a bench PC that booted without a network). The outbox's
times are on its own clock (outbox/clock.py): running time, carried across restarts. A +30-day step
must not give up fresh jobs as too old; a -1 h step must not park the queue for an hour; both within a
process and across a restart. The wall clock is injected (the one thing the test cannot step for real)."""

from __future__ import annotations

import time
from pathlib import Path

from outbox_peer import ItemHandler, ScriptedPeer, fail
from test_delivery import settle, until

from edge_agent.config import OutboxSection
from edge_agent.outbox import JobState, Outbox
from edge_agent.outbox.clock import OutboxClock

DAY = 24 * 3600.0
SECTION = OutboxSection.model_validate({"retry_base": 0.05, "retry_cap": 0.3, "drain_deadline": 5.0})


class SteppedWall:
    """The wall clock with a step the test sets: time.time() + offset."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def open_outbox(state_dir: Path, handler: ItemHandler, wall: SteppedWall) -> Outbox:
    outbox = Outbox(state_dir, SECTION, {"item": handler}, wall=wall)
    await outbox.start()
    return outbox


def test_the_outbox_clock_is_running_time_carried_over_and_blind_to_the_wall() -> None:
    mono = [100.0]
    wall = [1_700_000_000.0]
    clock = OutboxClock(lambda: mono[0], lambda: wall[0])
    clock.resume(None)  # a fresh database starts the timeline at the wall clock
    assert clock.now() == 1_700_000_000.0
    mono[0] += 5.0
    wall[0] += 30 * DAY  # a step: not seen
    assert clock.now() == 1_700_000_005.0
    saved = clock.now()
    # A restart 2 hours later, the wall stepped back a day: the timeline continues where it was.
    restarted = OutboxClock(lambda: mono[0] + 7200.0, lambda: wall[0] - DAY)
    restarted.resume(saved)
    assert restarted.now() == saved


async def test_steps_within_a_process_neither_give_up_fresh_jobs_nor_park_the_queue(
    tmp_path: Path, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    wall = SteppedWall()
    outbox = await open_outbox(tmp_path / "state", handler, wall)
    try:
        # 503s pause the whole queue (a backoff of ~0.3 s at most here); the wall steps back an hour
        # meanwhile: on the wall clock, that pause would last an hour.
        peer.script("a", fail(503), fail(503), fail(503))
        a = await outbox.enqueue("item", "g", {"key": "a"})
        await until(lambda: len(peer.posts) >= 1, "the first attempt")
        wall.offset = -3600.0
        await settle(outbox, [a])
        assert peer.creates["a"] == 1

        # A job failing while the wall jumps 30 days ahead (max_age is 7 days): still retried.
        peer.script("b", fail(503), fail(503), fail(503))
        b = await outbox.enqueue("item", "g", {"key": "b"})
        await until(lambda: sum(1 for _, k in peer.posts if k == "b") >= 1, "b's first attempt")
        wall.offset = 30 * DAY
        await settle(outbox, [b])
        job = await outbox.job(b)
        assert job is not None and job.state is JobState.DONE, job

        # Auth pause (401) probes again after retry_cap, not after an hour, when the wall steps back.
        peer.script("c", fail(401, "token expired"))
        c = await outbox.enqueue("item", "g", {"key": "c"})
        await until(lambda: (outbox.blocked_reason is not None) or peer.creates["c"] > 0, "the 401")
        wall.offset -= 3600.0
        await settle(outbox, [c])
        status = await outbox.status()
        assert status["blocked"] is None and status["paused_for_s"] == 0.0
    finally:
        await outbox.close()


async def test_steps_across_a_restart_keep_jobs_fresh_and_due(
    tmp_path: Path, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    wall = SteppedWall()
    state_dir = tmp_path / "state"
    await peer.refuse()
    outbox = await open_outbox(state_dir, handler, wall)
    ids = [await outbox.enqueue("item", f"g{i}", {"key": f"k{i}"}) for i in range(3)]
    await outbox.close()

    # The bench PC comes back with its clock 30 days ahead (it was wrong before, or is now).
    wall.offset = 30 * DAY
    outbox = await open_outbox(state_dir, handler, wall)
    try:
        jobs = [await outbox.job(i) for i in ids]
        live = (JobState.PENDING, JobState.IN_FLIGHT)
        assert all(j is not None and j.state in live for j in jobs), jobs  # not given up as too old
        status = await outbox.status()
        assert status["oldest_waiting_s"] < 60.0  # running time, not 30 days
        await outbox.close()

        # ... and then NTP steps it back by more than that (31 days): the jobs are still due now.
        wall.offset = -DAY
        outbox = await open_outbox(state_dir, handler, wall)
        await peer.start()
        await settle(outbox, ids)
        assert sorted(peer.creates) == ["k0", "k1", "k2"] and set(peer.creates.values()) == {1}
        assert outbox.counters.get("failed", 0) == 0
    finally:
        await outbox.close()
