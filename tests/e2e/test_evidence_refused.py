"""Issue 11 item 2 at the level of the whole agent: a proxy in front of Atlas answers every upload with
its 413 page. The bench, the agent and Atlas are real; the assertion is about the data: one issue per
incident, filed at once with a comment saying where the evidence is kept; /status shows what waits;
once the proxy lets uploads through, each evidence is linked by one comment, nothing twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from e2e_helpers import ONE_FAULT_PER_RULE as FAULTS
from e2e_helpers import (
    TOKEN,
    detected_incidents,
    fault_bench,
    get_json,
    marker_lines,
    outbox_jobs,
    wait_until,
)

from edge_agent.atlas.narrative import iso
from edge_agent.emulators.atlas import AtlasEmulator

ENVIRON = {
    "EDGE_AGENT_ATLAS__EVIDENCE_RETRY_FIRST": "200ms",
    "EDGE_AGENT_ATLAS__EVIDENCE_RETRY_CAP": "1s",
}


def _tagged(state: dict[str, Any], incident_id: str) -> list[dict[str, Any]]:
    return [i for i in state["issues"] if f"edge-agent:{incident_id}" in i["tags"]]


def _markers(issue: dict[str, Any]) -> list[str]:
    return [m for c in issue["comments"] for m in marker_lines(c["content"])]


async def test_413_on_every_upload_one_issue_per_incident_and_evidence_linked_when_it_clears(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    # Plots on: the final evidence's PNG is refused and linked like the rest.
    agent, sim, state_dir = fault_bench(
        tmp_path, atlas.base_url, "proxy-413", "3.5s", FAULTS, environ=ENVIRON, plots=True
    )
    atlas.faults.update({"proxy_status": 413, "path_pattern": r"/upload-files$"})
    await agent.start()
    started = time.monotonic()
    assert agent.control is not None
    try:
        await sim.start()
        await sim.wait(15)
        incidents = detected_incidents(state_dir)
        assert len(incidents) == len(FAULTS)

        async def filed_with_notes() -> bool:
            state = atlas.state()
            return all(
                len(found := _tagged(state, i)) == 1
                and [m.rsplit(":", 1)[-1] for m in _markers(found[0])] == ["open", "close"]
                for i in incidents
            )

        await wait_until(filed_with_notes, 20, "every incident filed, opened and closed")
        state = atlas.state()
        for incident_id in incidents:
            (issue,) = _tagged(state, incident_id)
            assert issue["attachment_ids"] == []
            for comment in issue["comments"]:
                text = comment["content"]
                assert "Evidence kept on the bench PC" in text and str(state_dir / "evidence") in text
                assert "too large" in text and "<" not in text and TOKEN not in text
        status = await get_json(agent.control.url + "/status")
        waiting = status["reporter"]["evidence_waiting"]
        assert sorted({w["incident_id"] for w in waiting}) == sorted(incidents)
        for entry in waiting:
            assert entry["state"] == "waiting" and entry["bytes"] > 0 and entry["files"]
            assert "too large" in entry["why"] and entry["next_try_wall"] is not None
            assert entry["next_try_at"] == iso(entry["next_try_wall"])
            assert entry["waiting_since_at"] is not None
        refused_before = atlas.faults.injected["proxy_413"]
        refusing_for = time.monotonic() - started

        atlas.faults.update({"proxy_status": 0})

        async def linked() -> bool:
            state = atlas.state()
            return all(
                sorted(m.rsplit(":", 1)[-1] for m in _markers(_tagged(state, i)[0]))
                == ["close", "close-evidence", "open", "open-evidence"]
                for i in incidents
            )

        await wait_until(linked, 20, "every evidence linked")
        after = await get_json(agent.control.url + "/status")
        assert after["reporter"]["evidence_waiting"] == []
    finally:
        drained = await agent.stop(time.monotonic() + 15)
        if sim.task is not None and not sim.task.done():
            await sim.stop()
    assert drained
    state = atlas.state()
    assert len(state["issues"]) == len(FAULTS)
    for incident_id in incidents:
        (issue,) = _tagged(state, incident_id)
        markers = _markers(issue)
        assert len(markers) == len(set(markers)) == 4
        for comment in issue["comments"]:
            if comment["content"].startswith("Evidence now attached"):
                assert len(comment["attachments"]) in (2, 3)  # the snapshot's CSV + JSON; the final's + plot
    names = [a["attachment_name"] for s in state["sessions"] for a in s["attachments"]]
    assert len(names) == len(set(names)) == 5 * len(FAULTS)  # open CSV + JSON, close + its plot, once each
    assert [j["id"] for j in outbox_jobs(state_dir) if j["state"] != "done"] == []
    # No storm: per evidence, the upload's 3-4 requests (all files, then each alone) and then one request
    # per retry: 0.2, 0.4, 0.8 s, then one a second (evidence_retry_cap).
    bound = 2 * len(FAULTS) * (4 + 3 + refusing_for / 1.0 + 1)  # each alone: up to 3 files (a plot)
    print(f"proxy 413s: {refused_before} for {2 * len(FAULTS)} evidence in {refusing_for:.1f} s")
    assert refused_before <= bound
