"""Issue 5, point 1: the whole agent (in process) on the simulated bench (a real pty) reporting to the
Atlas emulator (real loopback HTTP). A scripted fault gives exactly one issue, with its evidence
attached and the run's session, and fails the step it happened in; a clean sequence passes every step
and opens no issue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2e_helpers import Sim, agent_config_toml, fault_toml, step_toml

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator

STEPS = [("power_on", 0.5, 1.5), ("load_test", 2.5, 2.5), ("cool_down", 5.5, 1.2)]


def _scenario(tmp_path: Path, faults: str) -> Path:
    path = tmp_path / "scenario.toml"
    body = 'name = "e2e"\nduration = "7.5s"\n' + "".join(step_toml(*s) for s in STEPS) + faults
    path.write_text(body, encoding="utf-8")
    return path


async def _run_sequence(tmp_path: Path, atlas: AtlasEmulator, faults: str) -> tuple[dict[str, Any], Agent]:
    link = tmp_path / "ttyBENCH0"
    config_path = tmp_path / "agent.toml"
    toml = agent_config_toml(tmp_path / "state", link, atlas.base_url, plots=True)  # the plot is checked
    config_path.write_text(toml, encoding="utf-8")
    agent = Agent(load_config(config_path, environ={}))
    sim = Sim(_scenario(tmp_path, faults), link, tmp_path / "oracle.jsonl")
    # The closing evidence's plot is drawn in a child process (seconds of CPU on a loaded machine): the
    # drain ends when delivered, so the bound only says when to give up.
    drained = await sim.play_steps(
        agent, len(STEPS), play_within=20, steps_within=5,
        what="every step END marker to reach the step tracker", drain_within=45,
    )  # fmt: skip
    assert drained, "the outbox did not drain against a healthy Atlas"
    return atlas.state(), agent


def _step_statuses(state: dict[str, Any]) -> dict[str, str]:
    runs = state["test_runs"]
    assert len(runs) == 1, f"one Atlas test run per bench run, got {len(runs)}"
    out = {}
    for card in runs[0]["test_cards"]:
        for step in card["test_steps"]:
            out[step["title"]] = step["execution_status"]
    return out


async def test_scripted_fault_gives_one_issue_with_evidence_and_a_failed_step(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    fault = fault_toml("supply_v", 3.5, 0.6, 1.8, "high", "overvoltage-1")
    state, agent = await _run_sequence(tmp_path, atlas, fault)

    issues = state["issues"]
    assert len(issues) == 1, [i["title"] for i in issues]
    issue = issues[0]
    assert issue["priority"] == "high"
    assert "supply_v" in issue["tags"]
    tag = next(t for t in issue["tags"] if t.startswith("edge-agent:"))
    # The run's session: exactly one, and the issue points at it.
    assert len(state["sessions"]) == 1
    session = state["sessions"][0]
    assert issue["session_ids"] == [session["session_id"]]
    # Its evidence: the snapshot (CSV + JSON summary) uploaded to that session and attached.
    attached = {a["attachment_id"]: a for a in session["attachments"]}
    assert len(issue["attachment_ids"]) == 2
    assert set(issue["attachment_ids"]) <= set(attached)
    csv_id = next(a for a in issue["attachment_ids"] if attached[a]["attachment_name"].endswith(".csv"))
    evidence = atlas.attachment_bytes(csv_id).decode()
    # The over-voltage is in the evidence: some supply_v sample above the 12.6 V limit.
    header, *rows = evidence.strip().splitlines()
    column = header.split(",").index("supply_v")
    assert max(float(r.split(",")[column]) for r in rows) > 12.6
    # The narrative comments (opening, closing) carry the incident's markers.
    contents = "\n".join(c["content"] for c in issue["comments"])
    assert f"{tag}:open" in contents and f"{tag}:close" in contents
    # The closing comment carries the final evidence with its plot: a PNG, from the whole agent.
    closing = next(c for c in issue["comments"] if f"{tag}:close" in c["content"])
    (png,) = [a for a in closing["attachments"] if a["attachment_name"].endswith(".png")]
    assert atlas.attachment_bytes(png["attachment_id"]).startswith(b"\x89PNG\r\n\x1a\n")

    statuses = _step_statuses(state)
    assert statuses == {"power_on": "passed", "load_test": "failed", "cool_down": "passed"}
    # The issue and the step point at each other: the issue's opening comment names the step that was
    # running (with its Atlas id), the failed step's exception names the issue's Atlas id.
    steps = {s["title"]: s for card in state["test_runs"][0]["test_cards"] for s in card["test_steps"]}
    load_test = steps["load_test"]
    opening = issue["comments"][0]["content"]
    assert "Test step running: load_test" in opening and load_test["uuid"] in opening
    assert f"issue {issue['uuid']}" in (load_test["exception"] or "")
    assert "anomaly " not in (load_test["exception"] or "")  # no internal ids
    # The agent's own view agrees with Atlas.
    assert [c["execution_status"] for c in agent.steps.status()["completed"]] == [
        "passed",
        "failed",
        "passed",
    ]


async def test_clean_sequence_passes_every_step_and_opens_no_issue(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    state, agent = await _run_sequence(tmp_path, atlas, "")
    assert state["issues"] == []
    assert set(_step_statuses(state).values()) == {"passed"}
    assert len(_step_statuses(state)) == len(STEPS)
    assert agent.reporter is not None and agent.reporter.counters["incidents_opened"] == 0
    assert agent.frames_total() > 300  # the bench really talked: ~7 s at 50 lines/s
