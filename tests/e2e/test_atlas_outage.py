"""Issue 5, point 2: Atlas refuses connections (a real ECONNREFUSED: the emulator stops listening)
while the bench produces anomalies; once Atlas is back, every anomaly is reported exactly once, in
order: issues are created in the order their anomalies opened (the reporter keeps a run's issue jobs
in one ordered outbox group), and the reports of one (rule, channel) in the order they happened."""

from __future__ import annotations

import time
from pathlib import Path

from e2e_helpers import account, detected_incidents, fault_bench, get_json, outbox_jobs, wait_until

from edge_agent.atlas.narrative import iso
from edge_agent.emulators.atlas import AtlasEmulator

# Two faults per channel, 0.8 s apart across channels, 2.4 s apart on one channel: six anomalies,
# three keys, each key's second anomaly a repeat while the first one's issue is open.
FAULTS = [
    ("supply_v", 1.0, 1.8, "high"),
    ("vibration_g", 1.8, 1.0, "medium"),
    ("current_a", 2.6, 2.0, "medium"),
    ("supply_v", 3.4, 1.8, "high"),
    ("vibration_g", 4.2, 1.0, "medium"),
    ("current_a", 5.0, 2.0, "medium"),
]
OUTAGE_S = 7.0


async def test_atlas_refusing_then_back_every_report_once_in_order(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    agent, sim, state_dir = fault_bench(tmp_path, atlas.base_url, "outage", "6.5s", FAULTS)
    await agent.start()
    assert agent.control is not None
    try:
        # The run's session is created before the outage, so the outage hits evidence and issues.
        async def session_made() -> bool:
            return len(atlas.state()["sessions"]) == 1

        await wait_until(session_made, 5, "the run's Atlas session")
        await atlas.server.refuse_for(OUTAGE_S)
        outage_started = time.time()
        await sim.start()
        await sim.wait(20)

        # During the outage: the anomalies are detected and held, nothing reached Atlas, and the
        # agent says it is not delivering.
        assert atlas.server.refusing
        assert agent.reporter is not None and agent.reporter.counters["incidents_opened"] == len(FAULTS)
        status = await get_json(agent.control.url + "/status")
        assert status["outbox"]["depth"].get("pending", 0) > 0
        assert agent.readiness()[1]["outbox"] != "ok"

        async def back() -> bool:
            return not atlas.server.refusing

        await wait_until(back, OUTAGE_S + 2, "the emulator to listen again")
        assert atlas.state()["issues"] == []  # nothing could arrive while refused

        async def delivered() -> bool:
            depth = (await agent.outbox.status())["depth"]
            return bool(depth.get("pending", 0) == 0 and depth.get("in_flight", 0) == 0)

        await wait_until(delivered, 20, "the outbox to deliver after recovery")
    finally:
        drained = await agent.stop(time.monotonic() + 15)
        if sim.task is not None and not sim.task.done():
            await sim.stop()
    assert drained

    state = atlas.state()
    incidents = detected_incidents(state_dir)
    assert len(incidents) == len(FAULTS)
    reports = account(state, incidents)
    anomalies = list(incidents)
    assert sum(1 for r in reports.values() if r[1] == "issue") == 3
    assert sum(1 for r in reports.values() if r[1] == "repeat") == 3
    # Within a key: the first anomaly's issue, then the repeat comment on that very issue, later.
    for first, second in zip(anomalies[:3], anomalies[3:], strict=True):
        issue_id, how, created = reports[first]
        assert how == "issue"
        assert reports[second][0] == issue_id and reports[second][1] == "repeat"
        assert reports[second][2] >= created
    # Across keys too: the issues were created in the order their anomalies opened.
    created = [reports[a][2] for a in anomalies[:3]]
    assert created == sorted(created), created
    # Everything arrived after the outage began, and no job failed along the way.
    assert all(i["created_at"] >= _iso(outage_started) for i in state["issues"])
    assert (await _failures(state_dir)) == []


def _iso(wall: float) -> str:
    value = iso(wall)
    assert value is not None
    return value


async def _failures(state_dir: Path) -> list[int]:
    return [j["id"] for j in outbox_jobs(state_dir) if j["state"] != "done"]
