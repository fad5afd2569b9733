"""Atlas's analysis report of a test run (issue 14 item 4), in process against the real Atlas emulator:
the real reporter, step tracker, outbox and detector; the run's end asks for one report with the
documented body, polls it to its end and posts its summary once on each of the run's issues."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from reporter_helpers import NORMAL, SYSTEM_ID, Bench, fault, make_bench, wait_for

from edge_agent.analysis import RunAnalysis
from edge_agent.analysis.context import report_marker
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.incidents import IncidentOpened
from edge_agent.steps import StepTracker


@dataclass
class Rig:
    bench: Bench
    tracker: StepTracker
    analysis: RunAnalysis

    async def feed(self, rows: list[dict[str, float]]) -> None:
        """Frames through the detector and grouper: anomaly and incident events to the steps (as the
        agent hands them over), incident events to the reporter (by the bench) and to the analysis."""
        seen = len(self.bench.incident_events)
        events = await self.bench.feed(rows)
        incident_events = self.bench.incident_events[seen:]
        await self.tracker.on_anomaly_events([*events, *incident_events])
        await self.analysis.on_incident_events(incident_events)

    async def step(self, name: str, card: str, rows: list[dict[str, float]]) -> dict[str, Any]:
        await self.tracker.start_step(name, card)
        await self.feed(rows)
        return await self.tracker.end_step(name, "PASS")

    async def status(self) -> dict[str, Any]:
        return await self.analysis.status()

    async def settled(self, within: float = 15.0) -> list[dict[str, Any]]:
        """The reports once none is being requested or polled any more (bounded)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            reports: list[dict[str, Any]] = (await self.status())["reports"]
            if all(r["state"] not in ("requesting", "polling") for r in reports):
                return reports
            assert loop.time() < end, f"reports not settled in {within} s: {reports}"
            await asyncio.sleep(0.05)


async def make_rig(emulator: AtlasEmulator, state_dir: Path, **analysis: Any) -> Rig:
    bench = await make_bench(
        emulator, state_dir, steps={"source": "api", "system_id": SYSTEM_ID},
        analysis={"poll_timeout": "30s", **analysis},
    )  # fmt: skip
    tracker = StepTracker(
        config=bench.config, outbox=bench.outbox, client=bench.client, state_dir=state_dir,
        mono=bench.clock.now_mono, wall=bench.clock.now_wall, incident_of=bench.incidents.incident_of,
    )  # fmt: skip
    run = bench.reporter.run
    assert run is not None
    await tracker.start(run.run_id, run.started_wall)
    analysis_ = RunAnalysis(
        config=bench.config, outbox=bench.outbox, client=bench.client, steps=tracker, state_dir=state_dir,
        wall=bench.clock.now_wall,
    )  # fmt: skip
    await analysis_.start()
    return Rig(bench, tracker, analysis_)


QUIET = [NORMAL] * 30  # 3 s of normal data: anomalies clear, incidents close (join_window 1 s)


def the_run(emulator: AtlasEmulator) -> Any:
    """The first test run made (after a run's end the next one is made too)."""
    return next(iter(emulator.store.test_runs.values()))


def comments_with(emulator: AtlasEmulator, marker: str) -> dict[str, int]:
    """Issue id -> how many of its comments carry `marker` as a line."""
    return {
        issue["uuid"]: sum(1 for c in issue["comments"] if marker in c["content"].splitlines())
        for issue in emulator.state()["issues"]
    }


async def test_run_end_asks_one_report_and_posts_its_summary_once_on_each_issue(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    rig = await make_rig(emulator, tmp_path, per_failed_step=True)
    failed = await rig.step("power on", "Power", [*QUIET[:5], *[fault()] * 5, *QUIET])
    passed = await rig.step("soak", "Power", QUIET)
    warm = await rig.step("heat", "Thermal", [*QUIET[:5], *[fault(12.0, 95.0)] * 5, *QUIET])
    # The same supply fault again, within the repeat window: its incident joins the first issue.
    again = await rig.step("power cycle", "Power", [*[fault()] * 5, *QUIET])
    assert [r["execution_status"] for r in (failed, passed, warm, again)] == [
        "failed", "passed", "passed_with_exception", "failed",
    ]  # fmt: skip
    incidents = [e.incident.id for e in rig.bench.incident_events if isinstance(e, IncidentOpened)]
    assert len(incidents) == 3
    ended = await rig.analysis.end_run("lot done")
    assert ended["report"]["requested"] is True and ended["next_run"] != ended["ended_run"]
    run_key = ended["ended_run"]

    await wait_for(lambda: len(emulator.state()["issues"]) == 2, 15, "the two issues")
    run = the_run(emulator)
    await wait_for(lambda: len([r for r in run.reports if r.body.scope == "run"]) == 1, 15, "the run report")
    report = next(r for r in run.reports if r.body.scope == "run")
    issue_of = {i["uuid"]: i for i in emulator.state()["issues"]}
    # The body as the page documents it, and a context built from the run: every step's outcome and
    # each incident's issue by its Atlas id (filled in at send time, not left as a placeholder).
    context = report.body.analysis_context
    assert report.body.test_card_id is None and report.body.test_step_id is None
    for line in ("Power / power on: failed", "Power / soak: passed", "Thermal / heat: passed_with_exception"):
        assert line in context, context
    assert "4 step(s) (2 failed, 1 passed_with_exception, 1 passed), 3 incident(s)" in context
    for issue_id in issue_of:
        assert f"issue {issue_id}" in context
    assert "{issue:" not in context

    # Polled to completed; the summary once on each of the run's two issues (three incidents).
    marker = report_marker(f"{run_key}:run")
    await wait_for(lambda: sorted(comments_with(emulator, marker).values()) == [1, 1], 15, "one comment each")
    reports = await rig.settled()
    await rig.bench.outbox.drain(5.0)
    assert sorted(comments_with(emulator, marker).values()) == [1, 1]
    (shown,) = [r for r in reports if r["scope"] == "run"]
    assert shown["state"] == "completed" and shown["report_id"] == report.uuid
    assert shown["summary"] == report.summary and report.summary
    assert shown["comments"] == {"posted": 2, "shared": 1}
    for issue in emulator.state()["issues"]:
        (posted,) = [c for c in issue["comments"] if marker in c["content"]]
        assert report.summary in posted["content"]

    # per_failed_step: each failed step got a step report, its summary on that step's issue.
    step_reports = [r for r in run.reports if r.body.scope == "step"]
    assert len(step_reports) == 2
    steps_by_id = {s.uuid: s.title for c in run.cards for s in c.steps}
    assert sorted(steps_by_id[r.body.test_step_id] for r in step_reports) == ["power cycle", "power on"]
    assert all("Incidents during the step" in r.body.analysis_context for r in step_reports)
    step_states = [r["state"] for r in reports if r["scope"] == "step"]
    assert step_states == ["completed", "completed"]

    # The next run goes on in a new Atlas test run; asking again for the ended one changes nothing.
    assert (await rig.analysis.run_ended())["requested"] is False  # the new run: nothing happened yet
    await rig.bench.stop()
    assert len(emulator.store.test_runs) == 2
    assert len([r for r in run.reports if r.body.scope == "run"]) == 1


async def test_a_report_that_fails_is_said_on_status_without_a_retry_storm(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    emulator.faults.update({"report_outcome": "failed", "report_delay": 0.3})
    rig = await make_rig(emulator, tmp_path)
    await rig.step("power on", "Power", [*[fault()] * 5, *QUIET])
    with structlog.testing.capture_logs() as logs:
        await rig.analysis.run_ended()
        await rig.bench.outbox.drain(10.0)
        await wait_for(lambda: bool(the_run(emulator).reports), 15, "the report")
        report = the_run(emulator).reports[0]
        path = f"GET /api/v1/test-runs/{the_run(emulator).uuid}/reports/{report.uuid}"

        assert [r["state"] for r in await rig.settled()] == ["failed"]
        polls = emulator.faults.requests[path]
        # An absence is checked over a while: two retry caps of the test's outbox (0.5 s), in which a
        # poll that went on (a retry storm) would show.
        await asyncio.sleep(1.0)
        await rig.bench.outbox.drain(2.0)
    # Said once (a warning), and not as a delivery failure of any of the report's jobs.
    said = [e for e in logs if e["event"] == "analysis_report_not_completed"]
    assert [(e["log_level"], e["status"]) for e in said] == [("warning", "failed")], said
    assert not [e for e in logs if e["event"] == "outbox_job_failed"]
    assert emulator.faults.requests[path] == polls <= 10
    assert emulator.faults.requests[f"POST /api/v1/test-runs/{the_run(emulator).uuid}/reports"] == 1
    shown = (await rig.status())["reports"][0]
    assert shown["comments"] == {"skipped": 1} and not shown.get("summary")
    assert all(not c for c in comments_with(emulator, report_marker(shown["key"])).values())
    await rig.bench.stop()


async def test_a_report_still_running_is_polled_with_nothing_above_debug(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """A poll's "not yet" is how a report is waited for, not a failure: the demo's summary showed an
    `outbox_job_retrying` warning for a report that was simply still running."""
    emulator.faults.update({"report_delay": 1.0})
    rig = await make_rig(emulator, tmp_path)
    await rig.step("power on", "Power", [*[fault()] * 5, *QUIET])
    with structlog.testing.capture_logs() as logs:
        await rig.analysis.run_ended()
        await wait_for(lambda: bool(the_run(emulator).reports), 15, "the report")
        report = the_run(emulator).reports[0]
        assert [r["state"] for r in await rig.settled()] == ["completed"]
    polls = emulator.faults.requests[f"GET /api/v1/test-runs/{the_run(emulator).uuid}/reports/{report.uuid}"]
    assert polls >= 2  # polled while it ran: at least one "not yet" before "completed"
    not_yet = [e for e in logs if e["event"] == "outbox_retry" and e["status"] == 202]
    assert not_yet and all(e["log_level"] == "debug" for e in not_yet)
    shown = [(e["event"], e["log_level"]) for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert shown == [], shown
    await rig.bench.stop()


async def test_a_report_that_never_finishes_is_given_up_after_the_poll_timeout(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    emulator.faults.update({"report_delay": 3600})
    rig = await make_rig(emulator, tmp_path, poll_timeout="1s")
    await rig.step("power on", "Power", [*[fault()] * 5, *QUIET])
    await rig.analysis.run_ended()
    await rig.bench.outbox.drain(5.0)  # the poll is a background job: the drain does not wait for it
    (shown,) = await rig.settled()
    assert shown["state"] == "polling given up", shown
    assert "still running after" in shown["error"] and "analysis.poll_timeout 1 s" in shown["error"]
    assert the_run(emulator).reports[0].lifecycle.status(time.monotonic()) == "running"
    assert shown["comments"] == {"failed": 1}  # the issue's comment went with its poll
    await rig.bench.stop()


async def test_a_fixed_run_is_not_ended_by_the_api_and_a_run_without_steps_gets_no_report(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path / "fixed", steps={"source": "api", "test_run_id": "TR-given"})
    tracker = StepTracker(config=bench.config, outbox=bench.outbox, client=bench.client,
                          state_dir=tmp_path / "fixed")  # fmt: skip
    run = bench.reporter.run
    assert run is not None
    await tracker.start(run.run_id, run.started_wall)
    analysis = RunAnalysis(config=bench.config, outbox=bench.outbox, client=bench.client, steps=tracker,
                           state_dir=tmp_path / "fixed")  # fmt: skip
    await analysis.start()
    assert "steps.test_run_id" in (await analysis.end_run("sequencer says done"))["error"]
    await bench.stop()

    rig = await make_rig(emulator, tmp_path / "idle")
    await rig.feed([*[fault()] * 5, *QUIET])  # an incident, but no step
    assert (await rig.analysis.run_ended()) == {
        "requested": False, "why": "no step ended in the run: there is nothing to analyse",
    }  # fmt: skip
    assert (await rig.status())["reports"] == []
    await rig.bench.stop()


async def test_a_request_enqueued_just_before_a_crash_is_found_not_sent_twice(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """Killed between enqueueing a report's jobs and recording their ids: the next process finds the
    jobs in the outbox by the report's key instead of enqueueing (and sending) another request."""
    rig = await make_rig(emulator, tmp_path)
    await rig.step("power on", "Power", QUIET)
    await rig.analysis.run_ended()
    (entry,) = rig.analysis.state["reports"]
    ids = dict(entry["jobs"])
    state_file = tmp_path / "analysis" / "state.json"
    saved = json.loads(state_file.read_text())
    saved["reports"][0]["jobs"] = None  # what the file holds if the process died right after enqueueing
    state_file.write_text(json.dumps(saved))

    again = RunAnalysis(config=rig.bench.config, outbox=rig.bench.outbox, client=rig.bench.client,
                        steps=rig.tracker, state_dir=tmp_path)  # fmt: skip
    await again.start()
    assert again.pending
    await again.flush()
    assert again.state["reports"][0]["jobs"] == ids and not again.pending
    (shown,) = await Rig(rig.bench, rig.tracker, again).settled()
    assert shown["state"] == "completed"
    assert emulator.faults.requests[f"POST /api/v1/test-runs/{the_run(emulator).uuid}/reports"] == 1
    await rig.bench.stop()


async def test_the_ticks_flush_during_a_run_end_does_not_enqueue_the_report_twice(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """The agent's tick calls `flush` every 0.25 s; one that comes while a run's end is writing its
    report's mark must not enqueue that report a second time (two POSTs, two analyses)."""
    rig = await make_rig(emulator, tmp_path)
    await rig.step("power on", "Power", QUIET)
    ending = asyncio.create_task(rig.analysis.run_ended())
    flushes = 0
    while not ending.done() and flushes < 10_000:  # bounded: the end takes a few writes
        await rig.analysis.flush()
        flushes += 1
        await asyncio.sleep(0)
    await ending
    assert flushes > 0
    requests = [j for j in await rig.bench.outbox.jobs(None) if j.kind == "atlas.report_request"]
    assert len(requests) == 1
    (shown,) = await rig.settled()
    assert shown["state"] == "completed"
    assert emulator.faults.requests[f"POST /api/v1/test-runs/{the_run(emulator).uuid}/reports"] == 1
    await rig.bench.stop()


async def test_a_step_ending_as_the_run_ends_is_in_that_runs_report(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """A sequencer's last END (a marker, or the plugin's /steps/end) and its /runs/end close together:
    the step's end is still writing its state when the run's end comes. The step belongs to the run
    that ends: its outcome is in that run's report, not in the next run's (CI saw it left out)."""
    rig = await make_rig(emulator, tmp_path)
    await rig.step("power on", "Power", QUIET[:5])
    await rig.tracker.start_step("cool down", "Power")
    await rig.feed(QUIET[:5])
    ending = asyncio.create_task(rig.tracker.end_step("cool down", "PASS"))
    await asyncio.sleep(0)  # the end has begun and waits on its state write
    ended = await rig.analysis.end_run("lot done")
    assert (await ending)["execution_status"] == "passed"
    assert ended["report"]["requested"] is True
    run = the_run(emulator)
    await wait_for(lambda: any(r.body.scope == "run" for r in run.reports), 15, "the run report")
    context = next(r for r in run.reports if r.body.scope == "run").body.analysis_context
    assert "2 step(s) (2 passed)" in context and "Power / cool down: passed" in context, context
    assert (await rig.analysis.run_ended())["requested"] is False  # nothing of it leaked into the next run
    await rig.bench.stop()
