"""Issue 14, acceptance 1: a simulated run of three steps (the bench simulator on a real pty, the
whole agent, the Atlas emulator, moto's S3 server, all over loopback) -> one segment object per step
in the bucket whose bytes decode to exactly the frames the bench wrote in that step (counts and
values, against the lines the simulator's pty took), and three data registrations in Atlas, each
associated with its step and that step's card. The lead-in before the first step (frames between
steps) is one more object, registered on the run alone; every frame the agent decoded is in exactly
one object. Then the run is ended (`POST /runs/end`, as a sequencer does): one run report is asked
for, polled to `completed`, and its summary posted on the issue the run's fault filed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from e2e_helpers import agent_config_toml, fault_toml, step_toml, wait_port_open, wait_until
from recorder_helpers import (
    BUCKET,
    CapturingSim,
    S3Proxy,
    objects,
    open_multipart_uploads,
    s3_toml,
    segment_rows,
    split_by_step,
)

from edge_agent.agent import Agent
from edge_agent.analysis.context import report_marker
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator

# Back to back (END and START at the same instant, before that instant's sample) after a 1 s lead-in.
STEPS = [("power_on", 1.0, 2.0), ("load_test", 3.0, 2.5), ("cool_down", 5.5, 1.5)]
DURATION = 7.0
# The supply above its limit during load_test: an incident, its issue, the step failed.
FAULT = ("supply_v", 3.5, 0.6, 1.8, "high", "f1")


def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.toml"
    body = f'name = "recording"\nduration = "{DURATION}s"\n' + "".join(step_toml(*s) for s in STEPS)
    body += fault_toml(*FAULT)
    path.write_text(body, encoding="utf-8")
    return path


def step_titles(state: dict[str, Any]) -> tuple[str, dict[str, tuple[str, str]]]:
    run = state["test_runs"][0]  # the run of the three steps (ending it began the next)
    by_id = {}
    for card in run["test_cards"]:
        for step in card["test_steps"]:
            by_id[step["uuid"]] = (step["title"], card["uuid"])
    return run["uuid"], by_id


async def test_three_steps_three_objects_three_registrations(
    tmp_path: Path, atlas: AtlasEmulator, s3_server: str, s3_proxy: S3Proxy
) -> None:
    link = tmp_path / "ttyBENCH0"
    config_path = tmp_path / "agent.toml"
    toml = agent_config_toml(tmp_path / "state", link, atlas.base_url) + s3_toml(s3_proxy.url)
    config_path.write_text(toml, encoding="utf-8")
    agent = Agent(load_config(config_path, environ={}))
    sim = CapturingSim(scenario(tmp_path), link, tmp_path / "oracle.jsonl")
    atlas.faults.update({"report_delay": 0.5})  # the fixture's reports take a minute
    await agent.start()
    stopped = False
    reports: list[dict[str, Any]] = []  # /status `analysis.reports`, last seen

    async def issue_filed() -> bool:
        return len(atlas.state()["issues"]) == 1

    try:
        await sim.start()

        await wait_port_open(agent, 5)
        await sim.wait(30)

        async def steps_done() -> bool:
            return len(agent.steps.status()["completed"]) == len(STEPS)

        await wait_until(steps_done, 30, "every step END marker to reach the step tracker")
        await wait_until(issue_filed, 30, "the fault's issue")
        ended = await agent.end_run("three steps done")
        assert ended["report"] == {"requested": True, "key": f"{ended['ended_run']}:run"}, ended

        async def report_done() -> bool:
            reports[:] = (await agent.analysis.status())["reports"]
            return [(r["state"], r["comments"]) for r in reports] == [("completed", {"posted": 1})]

        await wait_until(report_done, 30, "the run report polled to completed, its summary posted")
        stopped = True
        assert await agent.stop(time.monotonic() + 30), "the outbox did not drain"
    finally:
        if not stopped:
            await agent.stop(time.monotonic() + 1)
        await sim.stop()

    written = split_by_step(sim.port.lines)
    assert set(written.by_step) == {name for name, _, _ in STEPS}
    stored = objects(s3_server)  # directly: the proxy runs on this (blocked) loop
    state = atlas.state()
    run_id, steps_by_id = step_titles(state)
    registrations = state["test_runs"][0]["test_data"]
    # One registration per object, each naming an object that is in the bucket with its size.
    assert sorted(r["s3_url"] for r in registrations) == sorted(f"s3://{BUCKET}/{k}" for k in stored)
    for r in registrations:
        key = r["s3_url"].removeprefix(f"s3://{BUCKET}/")
        assert r["file_size"] == len(stored[key])
        assert r["content_type"] == "application/gzip" and r["file_name"] == key.rsplit("/", 1)[1]
    step_regs = [r for r in registrations if r["associations"] and r["associations"][0].get("test_step_id")]
    assert len(step_regs) == 3, registrations
    columns = written.columns  # t_ms first, then the channels
    seen_steps = set()
    for r in step_regs:
        (assoc,) = r["associations"]
        title, card_id = steps_by_id[assoc["test_step_id"]]
        assert assoc["test_card_id"] == card_id, "associated with the step's own card"
        seen_steps.add(title)
        rows = segment_rows(stored[r["s3_url"].removeprefix(f"s3://{BUCKET}/")], columns)
        expected = written.by_step[title]
        assert len(rows) == len(expected) > 50, (title, len(rows), len(expected))
        assert rows == expected, f"{title}: the segment's frames differ from the lines the bench wrote"
    assert seen_steps == {name for name, _, _ in STEPS}
    # The rest (the lead-in): registered on the run alone; all objects together hold every frame the
    # agent decoded, each once, and they are the tail of what the bench wrote (lines written before
    # the agent opened the port are flushed by the port's open, never decoded).
    others = [r for r in registrations if r not in step_regs]
    assert all(r["associations"] == [] for r in others)
    everything = sorted(
        (row for data in stored.values() for row in segment_rows(data, columns)), key=lambda row: row[0]
    )
    assert len(everything) == agent.frames_total()
    assert everything == written.all[len(written.all) - len(everything) :]
    assert open_multipart_uploads(s3_server) == []
    status = agent.recorder.status() if agent.recorder else {}
    assert status["frames_recorded"] == agent.frames_total() and status["uploaded_segments"] == len(stored)

    # The run's report: one, scope run, its context the three steps' outcomes and the fault's issue;
    # completed, its summary posted once on that issue and shown on /status.
    (run,) = [r for r in atlas.store.test_runs.values() if r.uuid == run_id]
    (report,) = run.reports
    (issue,) = state["issues"]
    assert report.body.scope == "run" and report.lifecycle.status(time.monotonic()) == "completed"
    for line in ("power_on: passed", "load_test: failed", "cool_down: passed", f"issue {issue['uuid']}"):
        assert line in report.body.analysis_context, report.body.analysis_context
    (shown,) = reports
    assert shown["report_id"] == report.uuid and shown["summary"] == report.summary and report.summary
    posted = [c["content"] for c in issue["comments"] if report_marker(shown["key"]) in c["content"]]
    assert len(posted) == 1 and report.summary in posted[0]
