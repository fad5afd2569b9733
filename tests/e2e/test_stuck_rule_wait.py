"""The whole agent on the simulated bench, with a 5-minute stuck rule on a noisy channel (temp_c) next to
the limits rules: a 0.3 s supply fault is one issue, and its "Incident over" comes a join window after
the fault ended, not 5 minutes later. Before, every incident of the bench waited the rules' longest
configured delay (`stuck_for`), whether or not any channel was anywhere near stuck; now it waits only
for a condition in progress (the detector's `pending_reports`), and the noisy channel has none that
started within the window."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from e2e_helpers import MARKER_PREFIX, detected_incidents, fault_bench, marker_lines, wait_until

from edge_agent.emulators.atlas import AtlasEmulator

STUCK_TEMP = """
[[rules]]
channel = "temp_c"
kind = "stuck"
stuck_for = "5min"
"""


def _closing_summary(atlas: AtlasEmulator, incident_id: str) -> dict[str, Any] | None:
    """The incident's final evidence JSON (its summary as closed), once uploaded."""
    for session in atlas.state()["sessions"]:
        for attachment in session["attachments"]:
            if not str(attachment["attachment_name"]).endswith(".json"):
                continue
            document = json.loads(atlas.attachment_bytes(attachment["attachment_id"]))
            incident = document.get("incident", document)
            if incident.get("id") == incident_id and incident.get("evidence") == "final":
                return dict(incident)
    return None


async def test_a_5min_stuck_rule_on_a_noisy_channel_does_not_hold_the_fault_incident_open(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    # The evidence ring must still hold an incident that waits the whole 5 minutes (the planner's bound).
    environ = {"EDGE_AGENT_EVIDENCE__RING_SECONDS": "6min"}
    agent, sim, state_dir = fault_bench(
        tmp_path, atlas.base_url, "stuck-elsewhere", "3s", [("supply_v", 0.8, 1.8, "high")],
        environ=environ, extra=STUCK_TEMP,
    )  # fmt: skip
    join_window = agent.config.incidents.join_window
    assert agent.incidents.close_margin() == join_window + 300.0  # the evidence planner's bound stays
    await agent.start()
    try:
        await sim.start()
        await sim.wait(15)
        (incident_id,) = detected_incidents(state_dir)

        async def closed() -> bool:
            issues = [i for i in atlas.state()["issues"] if f"{MARKER_PREFIX}{incident_id}" in i["tags"]]
            markers = [m for i in issues for c in i["comments"] for m in marker_lines(c["content"])]
            return f"{MARKER_PREFIX}{incident_id}:close" in markers

        started = time.monotonic()
        await wait_until(closed, 20, "the incident's closing comment")
        print(f"closing comment {time.monotonic() - started:.2f} s after the 3 s bench run ended")
        summary = _closing_summary(atlas, incident_id)
        assert summary is not None and summary["close_reason"] == "quiet"
        assert summary["channels"] == ["supply_v"]
        delay = summary["closed_wall"] - summary["ended_wall"]
        print(f"closed {delay:.3f} s after its end (join_window {join_window:g} s)")
        assert join_window <= delay < join_window + 1.0
    finally:
        drained = await agent.stop(time.monotonic() + 15)
        if sim.task is not None and not sim.task.done():
            await sim.stop()
    assert drained
