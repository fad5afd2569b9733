"""The pytest plugin (issue 14 item 5) with pytester: inner suites run as real pytest subprocesses
(the plugin loaded through its installed entry point) against `edge-agent run` as a subprocess, with
the Atlas emulator on loopback and a pty for the bench's serial port.

- a suite of pass/fail/error/skip tests -> the same steps, cards and outcomes in Atlas;
- the agent unreachable -> the suite's own result unchanged (counts, exit code) and one warning;
- --edge-agent-fail-on-failed-step: a test during which the bench misbehaves (the outer test drives
  the supply above its limit through the pty while that test's step runs) fails;
- --edge-agent-end-run: the session's end ends the agent's test run and its report is asked for.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from agent_harness import AgentFactory, AgentProcess, Pty, wait_for

from edge_agent.analysis.context import report_marker
from edge_agent.emulators.atlas import AtlasEmulator

pytest_plugins = ["pytester"]

CONTROL_TOKEN = "plugin-e2e-control-token-5c1f"
TIMEOUT = 120.0  # bound on each inner pytest run

SUITE = """
import pytest


def test_passes():
    assert True


def test_fails():
    assert 1 + 1 == 3, "arithmetic is broken"


@pytest.fixture
def powered_rig():
    raise RuntimeError("rig not powered")


def test_errors_in_setup(powered_rig):
    pass


class TestPsu:
    def test_in_class(self):
        pass


def test_skips_inside():
    pytest.skip("no load bank today")


@pytest.mark.skip(reason="not on this bench")
def test_skipped_by_mark():
    pass
"""

# Runs while the outer test holds the supply above its limit during this test's step: it waits until
# the agent's step tracker has taken the anomaly (the steps consumer delivered it), then passes.
FAULT_SUITE = """
import json, os, time, urllib.request

import pytest

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def delivered_to_steps():
    request = urllib.request.Request(
        os.environ["EDGE_AGENT_CONTROL_URL"] + "/status",
        headers={"Authorization": "Bearer " + os.environ["EDGE_AGENT_CONTROL__TOKEN"]},
    )
    with OPENER.open(request, timeout=5) as answer:
        return json.load(answer)["consumers"]["steps"]["delivered"]


class TestPower:
    def test_quiet_bench(self):
        assert delivered_to_steps() == 0

    @pytest.mark.edge_agent(name="supply under load")
    def test_under_fault(self):
        deadline = time.monotonic() + 30
        while delivered_to_steps() == 0:
            assert time.monotonic() < deadline, "the agent never saw the fault"
            time.sleep(0.1)
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The inner suite in a pytest subprocess, from a thread: the agent's peers (the emulator, the
    pty writer) live on this test's event loop, which must keep running meanwhile."""
    return await asyncio.to_thread(pytester.runpytest_subprocess, *args, timeout=TIMEOUT)


def atlas_steps(atlas: AtlasEmulator) -> dict[str, dict[str, Any]]:
    """Step title -> the step with its card's title, over every test run."""
    return {
        step["title"]: {**step, "card": card["title"]}
        for run in atlas.state()["test_runs"]
        for card in run["test_cards"]
        for step in card["test_steps"]
    }


async def status_of(agent: AgentProcess) -> dict[str, Any]:
    """/status with the control token (the agent of these tests has one)."""
    assert agent.http is not None
    headers = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
    async with agent.http.get(agent.control_url + "/status", headers=headers) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def start_agent(run_agent: AgentFactory, make_config: Any, pty: Pty, **extra: Any) -> AgentProcess:
    agent = await run_agent(make_config(lens_url=None, control_token=CONTROL_TOKEN, **extra))
    pty.start_writing()
    return agent


async def test_a_suite_becomes_the_same_steps_and_outcomes_in_atlas(
    run_agent: AgentFactory,
    make_config: Any,
    pty: Pty,
    atlas: AtlasEmulator,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = await start_agent(run_agent, make_config, pty)
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setenv("EDGE_AGENT_CONTROL__TOKEN", CONTROL_TOKEN)
    result = await run_suite(pytester, "--edge-agent", f"--edge-agent-url={agent.control_url}")

    result.assert_outcomes(passed=2, failed=1, errors=1, skipped=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["edge-agent: 5 test(s) marked as steps at http://127.0.0.1:*"])
    assert CONTROL_TOKEN not in result.stdout.str() + result.stderr.str()
    expected = {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_errors_in_setup": "failed",
        "test_in_class": "passed",
        "test_skips_inside": "todo",  # skipped once its setup began: not carried out
    }
    await wait_for(
        lambda: {k: v["execution_status"] for k, v in atlas_steps(atlas).items()} == expected,
        20, f"the steps in Atlas (have {atlas_steps(atlas)})",
    )  # fmt: skip
    steps = atlas_steps(atlas)
    assert "test_skipped_by_mark" not in steps  # skipped by its mark: never a step
    assert {s["card"] for s in steps.values()} == {"test_suite.py"}  # one card per module
    assert "step verdict FAIL" in steps["test_fails"]["exception"]
    assert "arithmetic is broken" in steps["test_fails"]["exception"]
    assert "step verdict ERROR" in steps["test_errors_in_setup"]["exception"]
    assert "rig not powered" in steps["test_errors_in_setup"]["exception"]
    assert "no load bank today" in steps["test_skips_inside"]["exception"]
    for step in steps.values():
        assert step["started_at"] and step["ended_at"] and step["started_at"] <= step["ended_at"]


async def test_an_unreachable_agent_leaves_the_suites_result_alone_with_one_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    alone = await run_suite(pytester, "-p", "no:edge_agent")
    url = f"http://127.0.0.1:{closed_port()}"
    marked = await run_suite(pytester, "--edge-agent", f"--edge-agent-url={url}")

    without_warnings = {k: v for k, v in marked.parseoutcomes().items() if k not in ("warning", "warnings")}
    assert without_warnings == alone.parseoutcomes() == {"passed": 2, "failed": 1, "errors": 1, "skipped": 2}
    assert marked.ret == alone.ret == pytest.ExitCode.TESTS_FAILED
    assert marked.parseoutcomes().get("warnings", marked.parseoutcomes().get("warning")) == 1
    marked.stdout.fnmatch_lines(["*EdgeAgentWarning: edge-agent: no answer from http://127.0.0.1:*"])
    marked.stdout.fnmatch_lines(["edge-agent: steps not marked: no answer from*"])
    # Installed (pytest's header lists it) but not asked for, the plugin says nothing at all.
    quiet = await run_suite(pytester)
    assert quiet.parseoutcomes() == alone.parseoutcomes() and quiet.ret == alone.ret
    assert "edge-agent-0.1.0" in quiet.stdout.str()
    assert "edge-agent:" not in quiet.stdout.str() and "EdgeAgentWarning" not in quiet.stdout.str()


async def test_a_test_whose_step_the_agent_judged_failed_fails_and_the_run_gets_its_report(
    run_agent: AgentFactory,
    make_config: Any,
    pty: Pty,
    atlas: AtlasEmulator,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    atlas.faults.update({"report_delay": 1.0})
    agent = await start_agent(run_agent, make_config, pty)
    pytester.makepyfile(test_power=FAULT_SUITE)
    monkeypatch.setenv("EDGE_AGENT_CONTROL__TOKEN", CONTROL_TOKEN)
    monkeypatch.setenv("EDGE_AGENT_CONTROL_URL", agent.control_url)  # the URL from the environment

    done = asyncio.Event()

    async def fault_during_the_step() -> None:
        """The bench misbehaves exactly while the agent's running step is "supply under load". A slow
        /status (a loaded machine) leaves the supply as it is until the next look."""
        while not done.is_set():
            try:
                current = (await status_of(agent))["steps"]["current"]
            except (TimeoutError, aiohttp.ClientError):
                continue
            pty.supply_v = 14.0 if current and current["name"] == "supply under load" else 12.0
            await asyncio.sleep(0.05)

    driver = asyncio.create_task(fault_during_the_step())
    try:
        result = await run_suite(
            pytester, "--edge-agent", "--edge-agent-card=class", "--edge-agent-fail-on-failed-step",
            "--edge-agent-end-run",
        )  # fmt: skip
    finally:
        done.set()
        await driver
        pty.supply_v = 12.0

    # Both tests passed on their own; the one the agent judged failed fails at its teardown.
    result.assert_outcomes(passed=2, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of TestPower.test_under_fault*",
            "*edge-agent judged the step 'supply under load' failed: *supply_v*issue of incident *",
        ]
    )
    result.stdout.fnmatch_lines(["edge-agent: 2 test(s) marked as steps at *; 1 failed by the agent's*"])

    # The outcomes reach Atlas through the outbox (the failed one names its issue: it waits for it).
    def outcome(step: str) -> str | None:
        return atlas_steps(atlas).get(step, {}).get("execution_status")

    await wait_for(lambda: outcome("supply under load") == "failed", 20, "the failed outcome in Atlas")
    steps = atlas_steps(atlas)
    assert steps["test_quiet_bench"]["execution_status"] == "passed"
    assert steps["supply under load"]["execution_status"] == "failed"
    assert {s["card"] for s in steps.values()} == {"test_power.py::TestPower"}  # a card per class

    # --edge-agent-end-run: the test run ended with the session, and its report came back completed
    # with its summary posted on the issue the fault filed.
    result.stdout.fnmatch_lines(["*test run ended (report requested)*"])
    await wait_for(lambda: len(atlas.state()["issues"]) == 1, 20, "the fault's issue")
    first_run = next(iter(atlas.store.test_runs.values()))

    def posted() -> list[str]:
        (issue,) = atlas.state()["issues"]
        return [c["content"] for c in issue["comments"] if report_marker("") in c["content"]]

    await wait_for(lambda: len(posted()) == 1, 30, "the report's summary on the issue")
    asked = [e for e in agent.logs if str(e.get("event", "")).startswith(("analysis_", "outbox_"))]
    assert len(first_run.reports) == 1, (
        [(r.body.scope, r.body.test_step_id, r.created_at) for r in first_run.reports],
        asked,
    )
    (report,) = first_run.reports
    assert report.body.scope == "run" and report.summary in posted()[0]
    status = await status_of(agent)
    (shown,) = status["analysis"]["reports"]
    assert shown["state"] == "completed" and shown["summary"] == report.summary
    # The agent goes on: the next test run is begun (in Atlas too) for whatever comes next.
    assert status["analysis"]["current_run"]["run_key"].endswith(".2")
    await wait_for(lambda: len(atlas.store.test_runs) == 2, 20, "the next test run")
