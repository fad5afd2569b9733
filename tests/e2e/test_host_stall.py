"""A host that stalls (swap, a starved VM, a paused container) while a fault begins: the issue still says
when the fault began, not when the agent got round to reading it.

`edge-agent run` in its own process reads the simulated bench on a real pty (device time in `t_ms`); the
test stops it with SIGSTOP across the start of the second fault, for STALL_S, while the bench goes on
writing into the tty buffer, then SIGCONT. After a clean stop, the incident summaries uploaded to Atlas
give each member's `started_wall`: the fault the agent read late must start within MARGIN of the bench's
own record of it (the oracle), as the one it read on time does. Before sample-time walls (detector's
sample_walls.py) it started when the agent woke: STALL_S minus the lead late.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import aiohttp
from e2e_helpers import (
    TOKEN,
    Sim,
    agent_config_toml,
    fault_toml,
    free_port,
    member_starts,
    port_up,
    spawn_agent,
)

from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas import AtlasEmulator

ON_TIME_FAULT_S = 8.0  # scenario seconds: a fault the agent reads as it comes (a loaded machine may take
# several seconds to start the agent: it must be reading 1 s before)
STALLED_FAULT_S = 11.0  # one that begins while the agent is stopped
LEAD_S = 0.4  # the agent is stopped this long before it begins
STALL_S = 1.5
SCENARIO_S = 14.0
MARGIN = 0.2  # sample time vs the bench's record: pacing and the device clock's anchoring


async def test_a_fault_that_began_while_the_host_stalled_is_reported_at_its_start(tmp_path: Path) -> None:
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    link, state_dir, control_port = tmp_path / "ttyBENCH0", tmp_path / "state", free_port()
    config = tmp_path / "agent.toml"
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        f'name = "stall"\nduration = "{SCENARIO_S}s"\n'
        + fault_toml("supply_v", ON_TIME_FAULT_S, 0.3, 1.8, "high", "on-time")
        + fault_toml("current_a", STALLED_FAULT_S, 0.3, 2.0, "medium", "stalled"),
        encoding="utf-8",
    )
    log = tmp_path / "agent.log"
    async with AtlasEmulator(settings, seed=3) as atlas:
        config.write_text(
            agent_config_toml(state_dir, link, atlas.base_url, control_port=control_port), encoding="utf-8"
        )
        sim = Sim(scenario, link, tmp_path / "oracle.jsonl")
        proc = await spawn_agent(config, log)
        try:
            await sim.start()
            started = time.time()
            async with aiohttp.ClientSession() as http:
                up = await port_up(http, f"http://127.0.0.1:{control_port}", proc)
            assert up is not None and up < started + ON_TIME_FAULT_S - 1.0, (
                f"the agent was not reading; {log}"
            )
            await asyncio.sleep(started + STALLED_FAULT_S - LEAD_S - time.time())
            proc.send_signal(signal.SIGSTOP)
            stopped = time.time()
            await asyncio.sleep(STALL_S)
            proc.send_signal(signal.SIGCONT)
            resumed = time.time()
            await sim.wait(SCENARIO_S + 10)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 40) == 0, log
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if sim.task is not None and not sim.task.done():
                await sim.stop()
        state = atlas.state()
        starts = member_starts(atlas, state)

    faults = {f["id"]: f for f in sim.records("fault")}
    stalled = faults["stalled"]["start_wall"]
    assert stopped + 0.2 < stalled < resumed - 0.5, (
        "the stall did not cover the fault's start",
        stopped,
        resumed,
    )
    assert len(state["issues"]) == 2, [i["title"] for i in state["issues"]]
    for fault_id, channel in (("on-time", "supply_v"), ("stalled", "current_a")):
        began = faults[fault_id]["start_wall"]
        assert len(starts.get(channel, [])) == 1, (channel, starts)
        assert -0.05 <= starts[channel][0] - began <= MARGIN, (fault_id, starts[channel][0] - began, log)
