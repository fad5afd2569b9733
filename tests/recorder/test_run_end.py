"""A test run ended through the control API (`POST /runs/end`, what the pytest plugin's
--edge-agent-end-run does at a session's end) while the recorder uploads to S3: the last step's
segment, closed after the next run began, is still registered on its own run's step; what follows
goes to the next run's folder and is registered on the next run, also for a step of the same title
(a suite run twice). Every object is registered once, on the run whose folder holds it, and every
frame the agent decoded is in exactly one object. The whole agent, the bench simulator on a pty, the
Atlas emulator and moto's S3 server, over loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from e2e_helpers import agent_config_toml, wait_port_open, wait_until
from recorder_helpers import BUCKET, CapturingSim, S3Proxy, objects, s3_toml, segment_rows, split_by_step

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.recorder.model import slug

FRAMES_A_STEP = 25  # half a second of the simulator's 50 Hz


def registrations_by_run(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {run["uuid"]: run["test_data"] for run in state["test_runs"]}


def step_ids(run: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """step id -> (step title, card id) in one Atlas test run."""
    return {s["uuid"]: (s["title"], c["uuid"]) for c in run["test_cards"] for s in c["test_steps"]}


async def test_a_run_ended_by_the_api_keeps_each_runs_recordings_on_that_run(
    tmp_path: Path, atlas: AtlasEmulator, s3_server: str, s3_proxy: S3Proxy
) -> None:
    link = tmp_path / "ttyBENCH0"
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        agent_config_toml(tmp_path / "state", link, atlas.base_url) + s3_toml(s3_proxy.url), encoding="utf-8"
    )
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('name = "free-running"\nduration = "60s"\n', encoding="utf-8")  # no markers
    agent = Agent(load_config(config_path, environ={}))
    sim = CapturingSim(scenario, link, tmp_path / "oracle.jsonl")
    await agent.start()
    stopped = False
    try:
        await sim.start()

        await wait_port_open(agent, 5)

        async def frames_after(count: int) -> None:
            async def more() -> bool:
                return agent.frames_total() >= count + FRAMES_A_STEP

            await wait_until(more, 10, f"{FRAMES_A_STEP} more frames")

        await frames_after(agent.frames_total())
        assert "error" not in await agent.start_step("probe", "PSU")
        await frames_after(agent.frames_total())
        assert (await agent.end_step("probe", "PASS"))["execution_status"] == "passed"
        ended = await agent.end_run("session done")  # at once, as the plugin does at a session's end
        first, second = ended["ended_run"], ended["next_run"]
        assert first != second
        await frames_after(agent.frames_total())
        assert "error" not in await agent.start_step("probe", "PSU")  # the same title in the next run
        await frames_after(agent.frames_total())
        assert (await agent.end_step("probe", "PASS"))["execution_status"] == "passed"
        await frames_after(agent.frames_total())
        await sim.stop()
        stopped = True
        assert await agent.stop(time.monotonic() + 30), "the outbox did not drain"
    finally:
        if not stopped:
            await sim.stop()
            await agent.stop(time.monotonic() + 1)

    stored = objects(s3_server)
    state = atlas.state()
    run_one, run_two = state["test_runs"]  # in the order they were made
    assert agent.steps.state["run"]["run_id"] == run_two["uuid"]
    folder = {run_one["uuid"]: slug(first, 120), run_two["uuid"]: slug(second, 120)}
    registered: list[str] = []
    for run in (run_one, run_two):
        steps = step_ids(run)
        on_step = []
        for data in run["test_data"]:
            key = data["s3_url"].removeprefix(f"s3://{BUCKET}/")
            registered.append(key)
            assert key.split("/")[-2] == folder[run["uuid"]], f"{key} registered on the other run"
            if data["associations"]:
                (assoc,) = data["associations"]
                title, card_id = steps[assoc["test_step_id"]]
                assert title == "probe" and card_id == assoc["test_card_id"], (assoc, steps)
                assert "_probe" in key
                on_step.append(key)
        # The step's segment, closed after the next run began for the first run, is on its own step.
        assert len(on_step) == 1, (run["uuid"], run["test_data"])
        assert len(segment_rows(stored[on_step[0]], split_by_step(sim.port.lines).columns)) >= FRAMES_A_STEP
    assert sorted(registered) == sorted(stored), "every object registered once"
    assert {k.split("/")[-2] for k in stored} == set(folder.values())
    columns = split_by_step(sim.port.lines).columns
    assert sum(len(segment_rows(data, columns)) for data in stored.values()) == agent.frames_total()
