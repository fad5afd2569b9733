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
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from agent_harness import (
    SYSTEM_ID,
    AgentFactory,
    AgentProcess,
    NotifySocket,
    Pty,
    outbox_jobs,
    wait_for,
    wait_for_port_up,
    wait_for_status,
)
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
    # The lens may see the fault in the data too (its own anomaly, joining the same incident).
    await wait_for_status(
        agent,
        lambda s: [a["channel"] for a in s["open_anomalies"] if a["kind"] != "lens"] == ["supply_v"],
        5,
        "an open supply_v anomaly",
    )
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
    # One issue holds the supply fault: its title names the lead, which may be the lens's own label
    # when the lens saw the fault first; its tags name every channel that joined.
    supply = [i for i in state["issues"] if "supply_v" in i["tags"]]
    assert len(supply) == 1, [(i["title"], i["tags"]) for i in state["issues"]]
    # Closed at shutdown (or before): the closing narrative is a comment on the issue.
    assert supply[0]["comments"], supply[0]
    assert state["counts"]["sessions"] == 1
    assert agent.events("agent_stopped")[-1]["outbox_drained"] is True


async def test_second_sigterm_exits_at_once_while_the_first_is_still_draining(
    run_agent: AgentFactory, make_config: Any, notify: NotifySocket, atlas: AtlasEmulator
) -> None:
    agent = await run_agent(make_config(drain_deadline="20s"))
    await wait_for_port_up(agent)
    # Atlas answers slowly: the step job below is in flight when the stop begins, so the drain waits.
    atlas.faults.update({"latency": 15.0})
    code, answer = await agent.post("/steps/start", {"name": "soak"})
    assert code == 200, answer
    agent.signal(signal.SIGTERM)
    await wait_for(lambda: bool(notify.times("STOPPING", "1")), 5, "STOPPING=1")
    await asyncio.sleep(0.5)
    assert not agent.exited, "the first SIGTERM should still be draining (Atlas answers in 15 s)"
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    code = await agent.wait_exit(5)
    assert time.monotonic() - started < 2.0
    # Documented in run.py: the second signal exits with 128 + signal number, without cleanup.
    assert code == 128 + signal.SIGTERM, (code, agent.output())
    assert agent.events("second_signal_exit_now")


async def test_sighup_keeps_the_old_config_when_the_file_is_invalid_and_reloads_a_valid_one(
    run_agent: AgentFactory,
    make_config: Any,
    pty: Pty,
    notify: NotifySocket,
    archetype: ArchetypeEmulator,
    tmp_path: Path,
) -> None:
    agent = await run_agent(make_config(bench="bench-a"))
    await wait_for_port_up(agent)
    pty.start_writing()
    await wait_for_status(agent, lambda s: s["ports"]["bench"]["frames"] > 0, 5, "frames")
    assert (await agent.status())["bench"] == "bench-a"
    config_path = tmp_path / "agent.toml"

    # Invalid: a wrong type and an unknown key. The error is logged, the old config keeps running.
    config_path.write_text(make_config(bench="bench-b").replace("[agent]", "[agent]\nbogus_key = 1", 1))
    agent.signal(signal.SIGHUP)
    await wait_for(lambda: bool(agent.events("reload_rejected")), 5, "reload_rejected in the log")
    rejected = agent.events("reload_rejected")[-1]
    assert any("bogus_key" in p for p in rejected["problems"]), rejected
    assert any("rejected" in s for s in notify.values("STATUS")), notify.values("STATUS")
    frames_before = (await agent.status())["ports"]["bench"]["frames"]
    await asyncio.sleep(0.5)
    status = await agent.status()
    assert status["bench"] == "bench-a" and not agent.exited
    assert status["ports"]["bench"]["frames"] > frames_before  # still reading with the old config
    assert not agent.events("reloading")

    # Valid field by field, but the lens that is on has no API key: the agent used to exit 1 building
    # the lens client after stopping the running pipeline. Refused like any invalid file.
    config_path.write_text(make_config(bench="bench-b", lens_key=""))
    agent.signal(signal.SIGHUP)
    await wait_for(lambda: len(agent.events("reload_rejected")) > 1, 5, "the second reload_rejected")
    rejected = agent.events("reload_rejected")[-1]
    assert any(p.startswith("lens.api_key: ") for p in rejected["problems"]), rejected
    await asyncio.sleep(0.5)
    status = await agent.status()
    assert status["bench"] == "bench-a" and not agent.exited, agent.output()
    assert not agent.events("reloading")

    # Valid and changed: a new bench name and a supply limit that the bench's 12.0 V now breaks.
    readies = len(notify.times("READY", "1"))
    listening = len(agent.events("control_api_listening"))
    config_path.write_text(make_config(bench="bench-b", supply_max=11.9))
    agent.signal(signal.SIGHUP)
    await wait_for(lambda: len(notify.times("READY", "1")) > readies, 15, "READY=1 after the reload")
    # The new control server listens on a new port (port 0), said on stdout: under load the READY
    # datagram can arrive before that line is read, and the harness needs the line to reach the API.
    await wait_for(
        lambda: len(agent.events("control_api_listening")) > listening, 10, "the new control API port"
    )
    status = await wait_for_status(agent, lambda s: s["bench"] == "bench-b", 5, "the new bench name")
    status = await wait_for_status(
        agent, lambda s: any(a["channel"] == "supply_v" for a in s["open_anomalies"]), 10, "the new limit"
    )
    opened = [a for a in status["open_anomalies"] if a["channel"] == "supply_v"]
    assert opened[0]["bench"] == "bench-b" and opened[0]["threshold"] == "max 11.9", opened
    agent.signal(signal.SIGTERM)
    assert await agent.wait_exit(25) == 0, agent.output()
    # The reload replaced the lens session; neither the old one nor the new one outlives the agent.
    assert len(archetype.state()["sessions"]) == 2
    assert not live_lens_sessions(archetype), "\n".join(agent.raw)


async def test_missing_port_and_atlas_down_keep_the_process_up_and_not_ready(
    run_agent: AgentFactory, make_config: Any, tmp_path: Path
) -> None:
    # Atlas down: a port that is bound but does not listen refuses connections (ECONNREFUSED).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        atlas_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        agent = await run_agent(
            make_config(serial_url=str(tmp_path / "ttyNOPE0"), atlas_url=atlas_url, drain_deadline="2s")
        )
        # Give the components time to fail, retry and back off: the process must stay up.
        status = await wait_for_status(
            agent, lambda s: s["outbox"]["service_failures"] > 0, 10, "the outbox failing to deliver"
        )
        status = await wait_for_status(
            agent, lambda s: s["ports"]["bench"]["link"]["open_failures"] >= 2, 10, "port retries"
        )
        assert not agent.exited
        port = status["ports"]["bench"]
        assert port["up"] is False and "ttyNOPE0" in (port["down_reason"] or ""), port
        assert status["components"]["serial:bench"]["state"] == "running", status["components"]
        assert all(c["state"] in ("running", "backoff") for c in status["components"].values())
        assert status["outbox"]["depth"]["pending"] > 0, status["outbox"]
        code, ready = await agent.get("/readyz")
        assert code == 503, ready
        assert ready["ready"] is False
        assert ready["checks"]["serial:bench"] != "ok"
        assert ready["checks"]["outbox"] != "ok"
        code, health = await agent.get("/healthz")
        assert code == 200, health
        # It still stops cleanly (SIGINT: the same path as SIGTERM); what Atlas did not take stays in
        # the outbox for the next start.
        agent.signal(signal.SIGINT)
        started = time.monotonic()
        assert await agent.wait_exit(25) == 0, agent.output()
        # The drain retried within its deadline (2 s) and no longer: it ends at the deadline, or earlier
        # when the next retry falls past it (backoff on a loaded machine), never later.
        assert time.monotonic() - started < 2 + 3
    assert agent.events("agent_stopped")[-1]["outbox_drained"] is False
    assert agent.events("outbox_not_drained")
    jobs = outbox_jobs(tmp_path / "state")
    assert sum(n for (_, state), n in jobs.items() if state == "pending") > 0, jobs


async def test_steps_over_the_control_api_reach_atlas_as_step_outcomes(
    run_agent: AgentFactory, make_config: Any, pty: Pty, atlas: AtlasEmulator
) -> None:
    agent = await run_agent(make_config())
    await wait_for_port_up(agent)
    pty.start_writing()
    code, answer = await agent.post("/steps/end", {"name": "never-started"})
    assert code == 409, answer
    code, answer = await agent.post("/steps/start", {"name": "power-on", "card": "smoke"})
    assert code == 200, answer
    await asyncio.sleep(0.3)
    code, answer = await agent.post("/steps/end", {"name": "power-on", "verdict": "PASS"})
    assert code == 200 and answer["execution_status"] == "passed", answer
    # A step during which a high-severity anomaly happens fails.
    code, answer = await agent.post("/steps/start", {"name": "load", "card": "smoke"})
    assert code == 200, answer
    pty.supply_v = 13.5
    await wait_for_status(agent, lambda s: len(s["open_anomalies"]) >= 1, 5, "an open anomaly")
    code, answer = await agent.post("/steps/end", {"name": "load"})
    assert code == 200 and answer["execution_status"] == "failed", answer
    status = await agent.status()
    assert status["steps"]["source"] == "api" and status["steps"]["atlas"] == "enabled", status["steps"]

    def atlas_steps() -> dict[str, dict[str, Any]]:
        return {
            step["title"]: step
            for run in atlas.state()["test_runs"]
            for card in run["test_cards"]
            for step in card["test_steps"]
        }

    await wait_for(
        lambda: {s.get("execution_status") for s in atlas_steps().values()} == {"passed", "failed"},
        10,
        "both step outcomes in Atlas",
    )
    runs = atlas.state()["test_runs"]
    assert len(runs) == 1 and uuid.UUID(runs[0]["system_id"]) == uuid.UUID(SYSTEM_ID), runs
    assert [c["title"] for c in runs[0]["test_cards"]] == ["smoke"]
    steps = atlas_steps()
    assert steps["power-on"]["execution_status"] == "passed"
    assert steps["load"]["execution_status"] == "failed"
    assert steps["load"]["started_at"] and steps["load"]["ended_at"]
    agent.signal(signal.SIGTERM)
    assert await agent.wait_exit(25) == 0, agent.output()


async def test_watchdog_pings_a_quiet_bench_and_withholds_while_the_loop_is_stalled(
    run_agent: AgentFactory, make_config: Any, pty: Pty, notify: NotifySocket
) -> None:
    agent = await run_agent(make_config())
    await wait_for_port_up(agent)
    pty.start_writing()
    await wait_for_status(agent, lambda s: s["ports"]["bench"]["frames"] > 0, 5, "frames")
    await pty.stop_writing()
    # A quiet bench, port open, no lines: not a stall, pings go on (interval 1 s: every ~0.5 s).
    quiet_from = time.monotonic()
    await asyncio.sleep(2.5)
    quiet_pings = [t for t in notify.times("WATCHDOG", "1") if t > quiet_from]
    assert len(quiet_pings) >= 3, quiet_pings
    before = (await agent.status())["ports"]["bench"]
    await asyncio.sleep(0.3)
    after = (await agent.status())["ports"]["bench"]
    assert after["up"] is True and after["frames"] == before["frames"], (before, after)

    # A stalled event loop (the process is stopped, as by a hung syscall): once it runs again the
    # watchdog has seen the lag and withholds the next ping instead of vouching for the process.
    agent.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.5)
    finally:
        agent.signal(signal.SIGCONT)
    resumed = time.monotonic()
    await wait_for(lambda: bool(agent.events("watchdog_withheld")), 5, "watchdog_withheld in the log")
    assert "lagged" in agent.events("watchdog_withheld")[-1]["reason"]
    values = await scrape(agent)
    assert values[("edge_agent_watchdog_withheld_total", ())] >= 1
    # ... and pings resume once the loop answers again.
    await wait_for(lambda: any(t > resumed + 0.6 for t in notify.times("WATCHDOG", "1")), 5, "pings resuming")
    agent.signal(signal.SIGTERM)
    assert await agent.wait_exit(25) == 0, agent.output()


async def test_sigterm_drain_retries_through_a_short_atlas_outage_within_the_deadline(
    run_agent: AgentFactory, make_config: Any, pty: Pty, atlas: AtlasEmulator, tmp_path: Path
) -> None:
    agent = await run_agent(make_config())
    await wait_for_port_up(agent)
    pty.start_writing()
    pty.supply_v = 13.5
    await wait_for_status(agent, lambda s: len(s["open_anomalies"]) >= 1, 5, "an open anomaly")
    # The issue is in; the shutdown's own writes (closing narrative, evidence) meet a 2 s outage.
    await wait_for(lambda: atlas.state()["counts"]["issues"] >= 1, 10, "the issue in Atlas")
    atlas.faults.update({"error_rate": 1.0, "error_status": 503})
    agent.signal(signal.SIGTERM)
    await asyncio.sleep(2.0)
    atlas.faults.update({"error_rate": 0.0})
    assert await agent.wait_exit(25) == 0, agent.output()
    assert atlas.faults.injected, "the outage was never met: the test proves nothing"
    jobs = outbox_jobs(tmp_path / "state")
    assert {state for _, state in jobs} == {"done"}, jobs
    assert agent.events("agent_stopped")[-1]["outbox_drained"] is True
