"""Issue 12, item 2: the state directory on a real 8 MB filesystem (tmpfs, mounted by the test: root
only, as on CI) fills up while an anomaly opens. Before: the step tracker's state write raised ENOSPC
before the reporter saw the event, the event batch was dropped, and the anomaly was never filed, also
after space returned. Now each consumer of the event is isolated and keeps what it could not take; the
full disk is reported once (log, /readyz, /status, `edge_agent_disk_full`) and cleared when the writes
succeed again; and the incidents (one per anomaly here) before, during and after the fault each reach
Atlas exactly once, with their evidence."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from agent_harness import AgentFactory, AgentProcess, Pty, wait_for, wait_for_port_up, wait_for_status
from test_run import scrape

from edge_agent.emulators.atlas import AtlasEmulator

sys.path.insert(0, str(Path(__file__).parents[1] / "state"))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
from e2e_helpers import account, detected_incidents
from state_helpers import fill_up, free_up, modes_not_private, small_tmpfs

DISK_FULL = ("edge_agent_disk_full", ())
# The anomalies these tests make are seconds apart: each is its own physical event (its own incident).
SEPARATE_INCIDENTS = '\n[incidents]\njoin_window = "200ms"\nupdate_after = "200ms"\n'


async def make_anomaly(agent: AgentProcess, pty: Pty) -> str:
    """Supply above its limit until the anomaly is open, then back; returns the anomaly's id."""
    before = {a["id"] for a in (await agent.status())["open_anomalies"]}
    pty.supply_v = 13.5
    status = await wait_for_status(
        agent, lambda s: any(a["id"] not in before for a in s["open_anomalies"]), 10, "an anomaly to open"
    )
    pty.supply_v = 12.0
    (opened,) = [a["id"] for a in status["open_anomalies"] if a["id"] not in before]
    await wait_for_status(agent, lambda s: not s["open_anomalies"], 10, "the anomaly to close")
    return str(opened)


def incidents_in_atlas(atlas: AtlasEmulator) -> dict[str, int]:
    """Incident id -> how many issues carry its `edge-agent:<id>` tag (its own, or the one it joined)."""
    counts: dict[str, int] = {}
    for issue in atlas.state()["issues"]:
        for tag in issue.get("tags", []):
            if isinstance(tag, str) and tag.startswith("edge-agent:"):
                key = tag.removeprefix("edge-agent:")
                counts[key] = counts.get(key, 0) + 1
    return counts


def opened_incidents(status: dict[str, Any]) -> int:
    return int(status["counts"].get("incident_events_opened", 0))


async def test_disk_full_while_an_anomaly_opens_loses_nothing_and_is_reported_once(
    run_agent: AgentFactory, make_config: Any, pty: Pty, atlas: AtlasEmulator, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "state", "8m") as state_dir:
        agent = await run_agent(make_config(lens_url=None) + SEPARATE_INCIDENTS)
        await wait_for_port_up(agent)
        pty.start_writing()

        await make_anomaly(agent, pty)
        await wait_for(lambda: len(incidents_in_atlas(atlas)) == 1, 15, "the first incident's issue")

        fill_up(state_dir)
        await make_anomaly(agent, pty)
        status = await wait_for_status(
            agent, lambda s: s["state_files"]["disk_full"], 10, "the full disk on /status"
        )
        assert opened_incidents(status) == 2
        assert status["steps"]["state_file"]["saved"] is False
        assert "No space" in str(status["steps"]["state_file"]["error"])
        code, ready = await agent.get("/readyz")
        assert code == 503 and ready["checks"]["disk"].startswith("full"), ready
        assert (await scrape(agent))[DISK_FULL] == 1.0
        assert len(incidents_in_atlas(atlas)) == 1  # nothing could be persisted for the second yet

        free_up(state_dir)
        await wait_for_status(
            agent,
            lambda s: (
                not s["state_files"]["disk_full"]
                and s["steps"]["state_file"]["saved"]
                and all(c["waiting"] == 0 for c in s["consumers"].values())
            ),
            15,
            "the disk-full state to clear and every kept event to be taken",
        )
        code, ready = await agent.get("/readyz")
        assert ready["checks"]["disk"] == "ok", ready
        assert (await scrape(agent))[DISK_FULL] == 0.0

        await make_anomaly(agent, pty)
        await wait_for(lambda: len(incidents_in_atlas(atlas)) == 3, 20, "an issue for every incident")
        assert opened_incidents(await agent.status()) == 3
        agent.signal(signal.SIGTERM)
        assert await agent.wait_exit(25) == 0, agent.output()
        assert len(agent.events("disk_full")) == 1  # reported once, not per failed write
        assert len(agent.events("disk_space_returned")) == 1
        assert not agent.events("consumer_backlog_full_event_dropped"), agent.output()
        # The agent's own record (its outbox) against what Atlas holds: each incident once, with its
        # snapshot evidence, no duplicate issue or comment.
        incidents = detected_incidents(state_dir)
        assert len(incidents) == 3
        reports = account(atlas.state(), incidents)
        assert sorted(kind for _, kind, _ in reports.values()) in (
            ["issue"] * 3,
            ["issue", "repeat", "repeat"],
        )
        assert set(incidents_in_atlas(atlas).values()) == {1}
        # Every file the agent left in its state directory is 0600, every folder 0700 (item 8).
        assert modes_not_private(state_dir) == []
