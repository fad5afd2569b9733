"""A run's report across restarts (issue 14 item 4), `edge-agent run` as a subprocess against the Atlas
emulator: a clean shutdown ends the run and sends the report's request without waiting for the
analysis (the poll is a background job: the drain ends, exit 0, drained); the next agent continues
polling that report; one killed (SIGKILL) while polling it is replaced by one that finishes: one
report in Atlas, its summary once on the run's issue, and /status says it completed."""

from __future__ import annotations

import signal
import time
from typing import Any

from agent_harness import AgentFactory, Pty, wait_for, wait_for_status

from edge_agent.analysis.context import report_marker
from edge_agent.emulators.atlas import AtlasEmulator

NEVER = 3600.0  # the report's delay until the test finishes it (when the third agent polls it)


async def test_a_report_polled_across_a_clean_restart_and_a_kill_is_requested_once(
    run_agent: AgentFactory, make_config: Any, pty: Pty, atlas: AtlasEmulator
) -> None:
    atlas.faults.update({"report_delay": NEVER})
    config = make_config(lens_url=None)
    first = await run_agent(config)
    pty.start_writing()
    await wait_for_status(first, lambda s: s["ports"]["bench"]["frames"] > 0, 15, "frames")
    assert (await first.post("/steps/start", {"name": "load", "card": "PSU"}))[0] == 200
    pty.supply_v = 14.0
    await wait_for_status(first, lambda s: s["consumers"]["steps"]["delivered"] > 0, 15, "the anomaly")
    pty.supply_v = 12.0
    code, ended = await first.post("/steps/end", {"name": "load"})
    assert code == 200 and ended["execution_status"] == "failed", ended
    await wait_for(lambda: len(atlas.state()["issues"]) == 1, 20, "the anomaly's issue")

    # A clean shutdown ends the run: the request is sent in the drain, the analysis is not waited for.
    first.signal(signal.SIGTERM)
    assert await first.wait_exit(30) == 0, first.output()
    assert first.events("agent_stopped")[-1]["outbox_drained"] is True
    run = next(iter(atlas.store.test_runs.values()))
    (report,) = run.reports
    assert report.body.scope == "run" and "PSU / load: failed" in report.body.analysis_context
    assert report.lifecycle.status(time.monotonic()) in ("pending", "running")
    poll_path = f"GET /api/v1/test-runs/{run.uuid}/reports/{report.uuid}"
    polls = atlas.faults.requests[poll_path]

    # The next agent continues polling it; killed while it does, the one after finishes.
    second = await run_agent(config)
    await wait_for(lambda: atlas.faults.requests[poll_path] > polls, 20, "a poll by the restarted agent")
    assert report.lifecycle.status(time.monotonic()) == "running"
    second.signal(signal.SIGKILL)
    await second.wait_exit(10)
    polls = atlas.faults.requests[poll_path]
    third = await run_agent(config)
    await wait_for(lambda: atlas.faults.requests[poll_path] > polls, 20, "a poll by the third agent")
    assert report.lifecycle.status(time.monotonic()) == "running"
    report.lifecycle.delay = 0.0  # Atlas's analysis finishes now: the third agent's next poll sees it

    def summaries() -> list[str]:
        (issue,) = atlas.state()["issues"]
        return [c["content"] for c in issue["comments"] if report_marker("") in c["content"]]

    await wait_for(lambda: len(summaries()) == 1, 30, "the summary on the issue")
    status = await wait_for_status(
        third, lambda s: [r["state"] for r in s["analysis"]["reports"]] == ["completed"], 20, "completed"
    )
    (shown,) = status["analysis"]["reports"]
    assert shown["report_id"] == report.uuid and shown["summary"] == report.summary
    assert report.summary in summaries()[0]
    assert report_marker(shown["key"]) in summaries()[0].splitlines()
    # One report in Atlas, however many agents polled it; its summary posted once.
    assert atlas.faults.requests[f"POST /api/v1/test-runs/{run.uuid}/reports"] == 1
    assert len(run.reports) == 1 and len(summaries()) == 1
    third.signal(signal.SIGTERM)
    assert await third.wait_exit(30) == 0
    assert len(summaries()) == 1 and len(run.reports) == 1
