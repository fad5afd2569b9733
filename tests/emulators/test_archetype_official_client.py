"""The official `archetypeai` Python client, pointed at the emulator, runs a whole session.

The client is synchronous and threaded (requests + websocket-client + an httpx SSE thread), so it
runs in a worker thread while the emulator serves on this test's event loop. Every wait is bounded;
its socket and SSE threads are always closed, or the test process would never exit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from archetypeai import ArchetypeAI

from edge_agent.emulators.archetype import ArchetypeEmulator

LENS_ID = "lns-emulated-machine-state"
DEADLINE = 10.0


def run_official_session(base_url: str, api_key: str) -> dict[str, Any]:
    """The documented lens flow with the official client; returns what it observed."""
    client = ArchetypeAI(api_key, api_endpoint=base_url)
    lens = client.lens
    seen: dict[str, Any] = {"lenses": lens.get_metadata()}
    session_id, endpoint = lens.create_session(LENS_ID)
    seen["session_id"], seen["endpoint"] = session_id, endpoint
    sse = lens.sessions.create_sse_consumer(session_id)
    connected = False
    try:
        connected = lens.sessions.connect(session_id, endpoint)
        seen["connected"] = connected
        deadline = time.monotonic() + DEADLINE
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = lens.sessions.write(session_id, {"type": "session.status"})
            if status.get("session_status") == "LensSessionStatus.SESSION_STATUS_RUNNING":
                break
            time.sleep(0.02)
        seen["status"] = status
        # The SSE stream carries what happens after it is subscribed: its consumer connects in a thread
        # of its own, so the inferences are asked for once its stream has started (under load it
        # started after the first two, which it then never saw).
        sse_events: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not any(e["type"] == "sse.stream.start" for e in sse_events):
            sse_events.extend(sse.read(max_num_events=1))
            time.sleep(0.02)
        seen["updates"] = [
            lens.sessions.write(
                session_id,
                {
                    "type": "session.update",
                    "event_data": {
                        "type": "data.json",
                        "event_data": {
                            "sensor_data": [[float(i), float(i) + 1.0], [5.0, 5.5]],
                            "sensor_metadata": {"sensor_timestamp": time.time(), "sensor_id": "bench"},
                        },
                    },
                },
            )
            for i in range(3)
        ]
        messages: list[dict[str, Any]] = []
        reads: list[dict[str, Any]] = []
        while len(messages) < 3 and time.monotonic() < deadline:
            reply = lens.sessions.read(session_id)  # session.read with the client's own client_id
            reads.append(reply)
            if reply.get("event_data"):
                messages.extend(reply["event_data"]["messages"])
            else:
                time.sleep(0.05)
        seen["reads"], seen["messages"] = reads, messages
        seen["process_status"] = lens.sessions.process_event(session_id, {"type": "session.status"})
        seen["sessions_metadata"] = lens.sessions.get_metadata()
        while time.monotonic() < deadline and sum(e["type"] == "inference.result" for e in sse_events) < 3:
            # One event per read: the SDK's non-blocking read() inverts its emptiness check after an
            # event and calls get(block=False) on the queue it just drained (queue.Empty, under load).
            sse_events.extend(sse.read(max_num_events=1))
            time.sleep(0.05)
        seen["sse_events"] = sse_events
    finally:
        seen["destroyed"] = lens.sessions.destroy(session_id)
        if connected:
            lens.sessions.close()
        sse.close()
    return seen


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:The lens API is deprecated:FutureWarning")
async def test_official_client_runs_a_session_against_the_emulator(
    archetype_emulator: ArchetypeEmulator,
) -> None:
    seen = await asyncio.wait_for(
        asyncio.to_thread(run_official_session, archetype_emulator.base_url, archetype_emulator.api_key),
        timeout=DEADLINE * 3,
    )
    assert LENS_ID in {lens["lens_id"] for lens in seen["lenses"]}
    assert seen["connected"] is True
    assert seen["endpoint"].startswith(f"ws://127.0.0.1:{archetype_emulator.server.port}/v0.5/lens/sessions/")
    assert seen["status"]["session_status"] == "LensSessionStatus.SESSION_STATUS_RUNNING"
    assert [u["type"] for u in seen["updates"]] == ["session.update.response"] * 3
    assert all(u["event_data"]["accepted"] for u in seen["updates"])
    assert all(r["type"] == "session.read.response" for r in seen["reads"])
    assert [m["type"] for m in seen["messages"]] == ["inference.result"] * 3
    assert all(m["event_data"]["response"][0] == "normal" for m in seen["messages"])
    assert seen["process_status"]["session_id"] == seen["session_id"]
    assert [s["session_id"] for s in seen["sessions_metadata"]] == [seen["session_id"]]
    sse_results = [e for e in seen["sse_events"] if e["type"] == "inference.result"]
    assert [e["event_data"] for e in sse_results] == [m["event_data"] for m in seen["messages"]]
    assert seen["sse_events"][0]["type"] == "sse.stream.start"
    assert seen["destroyed"]["session_status"] == "SESSION_STATUS_DESTROYED"

    [state] = archetype_emulator.state()["sessions"]
    assert state["status"] == "SESSION_STATUS_DESTROYED"
    assert state["counts"]["inferences"] == 3
    assert state["counts"]["updates_received"] == 3
