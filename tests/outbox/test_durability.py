"""kill -9 mid-delivery, then a new outbox on the same state directory: every job delivered exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from outbox_peer import Act, ItemHandler, ScriptedPeer

from edge_agent.config import OutboxSection
from edge_agent.outbox import JobState, Outbox

N_JOBS = 40
CHILD = Path(__file__).parent / "outbox_child.py"
WAIT = 20.0


async def test_sigkill_mid_delivery_loses_and_duplicates_nothing(tmp_path: Path, peer: ScriptedPeer) -> None:
    peer.default = Act("delay", seconds=0.01)
    # k13 is created at the server but its answer never comes: the kill lands after send, before commit.
    peer.script("k13", Act("hang_after_create", seconds=60.0))
    state_dir = tmp_path / "state"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(state_dir),
        peer.url,
        str(N_JOBS),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT
        for _ in range(1000):  # the child's log lines share its stdout
            line = await asyncio.wait_for(child.stdout.readline(), WAIT)
            if line.strip() in (b"enqueued", b""):
                break
        assert line.strip() == b"enqueued"
        while peer.creates["k13"] == 0:
            assert loop.time() < end, f"child delivered only {len(peer.creates)} jobs"
            await asyncio.sleep(0.01)
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), WAIT)
    assert child.returncode == -signal.SIGKILL
    delivered_before = len(peer.creates)
    assert 0 < delivered_before < N_JOBS

    handler = ItemHandler(peer.url, timeout=5.0)
    section = OutboxSection.model_validate({"retry_base": 0.01, "retry_cap": 0.2})
    outbox = Outbox(state_dir, section, {"item": handler})
    try:
        await outbox.start()
        end = asyncio.get_running_loop().time() + WAIT
        while (await outbox.counts())["done"] < N_JOBS:
            assert asyncio.get_running_loop().time() < end, await outbox.counts()
            await asyncio.sleep(0.05)
        jobs = await outbox.jobs()
    finally:
        await outbox.close()
        await handler.close()

    assert sorted(peer.creates) == sorted(f"k{i}" for i in range(N_JOBS))
    assert set(peer.creates.values()) == {1}, {k: n for k, n in peer.creates.items() if n != 1}
    assert outbox.counters["adopted"] >= 1  # k13 at least: found at the server, not sent again
    assert all(j.state is JobState.DONE for j in jobs) and len(jobs) == N_JOBS
    # Dependencies across the crash: each job was sent with its group predecessor's server id.
    by_key = {j.payload["key"]: j for j in jobs}
    for i in range(4, N_JOBS):
        assert peer.records[f"k{i}"]["after"] == [peer.records[f"k{i - 4}"]["id"]]
        assert by_key[f"k{i}"].deps == (by_key[f"k{i - 4}"].id,)
