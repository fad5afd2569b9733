"""Issue 11, item 4, through `edge-agent run`: a lens that routes its outputs to the SSE consumer only.
The agent (reader = auto) notices windows accepted and no output, switches once, gets inferences, and
/status, /readyz and the log say what happened."""

from __future__ import annotations

from typing import Any

from agent_harness import LENS_ID, AgentFactory, Pty, wait_for_status

from edge_agent.emulators.archetype import ArchetypeEmulator


def _switched_and_inferring(status: dict[str, Any]) -> bool:
    lens = status["lens"]
    return bool(lens and lens["reader"]["settled"] and sum(lens["inferences"].values()) > 0)


async def test_an_sse_routed_lens_status_and_readyz_say_the_reader_was_switched(
    run_agent: AgentFactory, make_config: Any, pty: Pty, archetype: ArchetypeEmulator
) -> None:
    archetype.faults.update({"lens_routes": {LENS_ID: "sse"}})
    config = make_config().replace(
        'read_interval = "200ms"', 'read_interval = "200ms"\nno_output_after = "2s"'
    )
    agent = await run_agent(config)
    pty.start_writing()
    status = await wait_for_status(agent, _switched_and_inferring, 40, "inferences after the reader switch")
    reader = status["lens"]["reader"]
    assert reader["mode"] == "auto" and reader["reader"] == "sse" and reader["problem"] is None
    assert [(s["from"], s["to"]) for s in reader["switches"]] == [("session_read", "sse")]
    assert reader["switches"][0]["after_s"] >= 2.0
    code, ready = await agent.get("/readyz")
    assert code == 200, ready
    assert ready["checks"]["lens"] == "ok"
    assert ready["checks"]["lens_output"].startswith("ok: reading SSE (switched from session.read after")
    assert len(agent.events("lens_output_reader_switched")) == 1
    assert status["lens"]["counters"]["routing_switches"] == 1
