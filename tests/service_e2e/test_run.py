"""`edge-agent run` end to end (issue 6, build items 1-3): the daemon as a subprocess against the
emulators, a pty and a fake systemd notify socket.

What "progress" means for the watchdog (agent.py `_progressing`): the event loop answers (the
watchdog's lag check) and the pipeline's own stages are not stuck (the periodic tick runs; queued
events are being taken). A quiet bench that sends no lines is NOT a stall: systemd restarting the
agent would not make the device talk, and would churn the lens session and the Atlas run; silence
is reported by dropout rules and by the frame rate on /status instead.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path
from typing import Any

from agent_harness import AgentProcess, NotifySocket, Pty, outbox_jobs, wait_for
from conftest import AgentFactory
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator


def live_lens_sessions(emu: ArchetypeEmulator) -> list[dict[str, Any]]:
    return [
        s
        for s in emu.state()["sessions"]
        if s["status"] not in ("SESSION_STATUS_DESTROYED", "SESSION_STATUS_STALE")
    ]


async def scrape(agent: AgentProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = await agent.get("/metrics")
    assert code == 200
    assert isinstance(text, str)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


FRAMES = ("edge_agent_serial_frames_total", (("source", "bench"),))


async def test_run_ready_watchdog_metrics_anomaly_then_sigterm_drains_and_exits_0(
    run_agent: AgentFactory,
    make_config: Any,
    pty: Pty,
    notify: NotifySocket,
    archetype: ArchetypeEmulator,
    atlas: AtlasEmulator,
    tmp_path: Path,
) -> None:
    agent = await run_agent(make_config())
    # READY=1 comes with a STATUS= line; the port is open by then or shortly after.
    ready = [m for _, m in notify.messages if m.get("READY") == "1"]
    assert ready and "STATUS" in ready[0], notify.messages
    assert "starting" in notify.values("STATUS")
    await wait_for_port_up(agent)
    pty.start_writing()

    # The lens session runs, frames flow, and /metrics moves between two scrapes.
    await wait_for(lambda: bool(live_lens_sessions(archetype)), 15, "a live lens session")
    await wait_for_status(agent, lambda s: s["ports"]["bench"]["frames"] > 0, 5, "the first frames")
    first = await scrape(agent)
    await asyncio.sleep(1.0)
    second = await scrape(agent)
    assert second[FRAMES] > first[FRAMES] > 0, (first[FRAMES], second[FRAMES])
    status = await agent.status()
    assert status["ports"]["bench"]["up"] is True
    assert status["ports"]["bench"]["frames"] > 0
    code, ready_body = await agent.get("/readyz")
    assert code == 200, ready_body

    # WATCHDOG=1 at about half of WATCHDOG_USEC (1 s) while frames flow.
    ready_at = notify.times("READY", "1")[0]
    await wait_for(lambda: len(notify.times("WATCHDOG", "1")) >= 3, 5, "three WATCHDOG=1 pings")
    pings = [t for t in notify.times("WATCHDOG", "1") if t > ready_at]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert gaps and min(gaps) > 0.3, gaps  # not a busy loop: paced at interval / 2

    # An anomaly: supply above its limit, then back; it is open on /status while it lasts.
    pty.supply_v = 13.5
    await wait_for_status(agent, lambda s: len(s["open_anomalies"]) == 1, 5, "an open anomaly")
    pty.supply_v = 12.0
    await asyncio.sleep(0.5)

    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    code = await agent.wait_exit(25)
    took = time.monotonic() - started
    assert code == 0, agent.output()
    assert took < 10 + 3, took  # drain_deadline (10 s) plus the process's own exit
    assert notify.times("STOPPING", "1"), notify.messages
    assert not live_lens_sessions(archetype), archetype.state()["sessions"]
    # Drained: every job the agent persisted was delivered, and every issue it meant is in Atlas.
    jobs = outbox_jobs(tmp_path / "state")
    assert {state for _, state in jobs} == {"done"}, jobs
    state = atlas.state()
    issue_jobs = jobs.get(("atlas.issue", "done"), 0)
    assert issue_jobs >= 1 and state["counts"]["issues"] == issue_jobs, (jobs, state["issues"])
    supply = [i for i in state["issues"] if "supply_v" in i["title"]]
    assert len(supply) == 1, [i["title"] for i in state["issues"]]
    # Closed at shutdown (or before): the closing narrative is a comment on the issue.
    assert supply[0]["comments"], supply[0]
    assert state["counts"]["sessions"] == 1
    assert agent.events("agent_stopped")[-1]["outbox_drained"] is True


async def wait_for_port_up(agent: AgentProcess, within: float = 10.0) -> None:
    await wait_for_status(agent, lambda s: s["ports"]["bench"]["up"], within, "the serial port open")


async def wait_for_status(agent: AgentProcess, predicate: Any, within: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status = await agent.status()
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; /status: {status}")
        await asyncio.sleep(0.1)
