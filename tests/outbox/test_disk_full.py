"""Issue 12, item 2, the outbox on a real full filesystem (a 2 MB tmpfs; root only, as on CI): a job
whose answer arrives while the disk is full keeps its outcome in memory until it can be recorded (it
is neither sent again nor left in flight), an enqueue refused for lack of space says so (OutboxError,
the disk-full flag), and everything goes on once space returns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import structlog
from outbox_peer import Act, ItemHandler, ScriptedPeer
from test_delivery import settle, until

from edge_agent.config import OutboxSection
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.state_health import StateFileHealth

sys.path.insert(0, str(Path(__file__).parents[1] / "state"))
from state_helpers import fill_up, free_up, small_tmpfs

SECTION = OutboxSection.model_validate({"retry_base": 0.05, "retry_cap": 0.3, "drain_deadline": 5.0})


async def test_outcomes_and_jobs_wait_for_space_and_nothing_is_sent_twice(
    tmp_path: Path, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    health = StateFileHealth()
    with small_tmpfs(tmp_path / "fs", "2m") as state_dir:
        outbox = Outbox(state_dir, SECTION, {"item": handler}, health=health)
        await outbox.start()
        try:
            a = await outbox.enqueue("item", "g", {"key": "a", "blob": "x" * 2000})
            await settle(outbox, [a])
            # b is claimed (recorded in flight) and answered slowly; the disk fills meanwhile.
            peer.script("b", Act("delay", seconds=1.0))
            b = await outbox.enqueue("item", "g", {"key": "b", "blob": "x" * 2000})
            await until(lambda: peer.in_flight == 1, "b in flight at the peer")
            fill_up(state_dir)
            with structlog.testing.capture_logs() as logs:
                with pytest.raises(OutboxError, match="full"):
                    for i in range(200):  # the WAL's spare room takes a few; then SQLite says full
                        await outbox.enqueue("item", "h", {"key": f"c{i}", "blob": "y" * 4000})
                await until(lambda: peer.creates["b"] == 1, "b created at the peer")
                await until(
                    lambda: any(e["event"] == "outbox_outcome_not_recorded" for e in logs),
                    "b's outcome refused by the full disk",
                )
                assert health.disk_full
            job = await outbox.job(b)
            assert job is not None and job.state.value == "in_flight"  # its outcome waits in memory
            assert [e["event"] for e in logs].count("outbox_outcome_not_recorded") == 1

            free_up(state_dir)
            await settle(outbox, [b])
            d = await outbox.enqueue("item", "g", {"key": "d"})
            await settle(outbox, [d])
            await until(lambda: not health.disk_full, "the disk-full flag to clear")
        finally:
            await outbox.close()
    assert peer.creates["a"] == peer.creates["b"] == peer.creates["d"] == 1
    assert peer.lookups["b"] == 0  # recorded as delivered, never looked for nor sent again
