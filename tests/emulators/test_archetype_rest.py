"""Archetype emulator REST API against the documented contract (api/archetype-lens-sessions-create.md,
research/archetype-protocol.md §2), over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_agent.emulators.archetype import ArchetypeEmulator

DOC_LENS_ID = "lns-fd669361822b07e2-237ab3ffd79199b0"
TIMEOUT = 5.0

# Every field of the documented create response, with the JSON type it has in the example.
DOCUMENTED_CREATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "org_id": str,
    "api_key": str,
    "session_id": str,
    "lens_id": str,
    "lens_name": str,
    "input_data_stream_id": type(None),
    "output_data_stream_id": type(None),
    "registration_timestamp": float,
    "last_event_timestamp": float,
    "last_update_timestamp": float,
    "session_start_timestamp": type(None),
    "session_destroyed_timestamp": type(None),
    "num_active_connections": int,
    "num_updates": int,
    "num_inputs": int,
    "num_outputs": int,
    "num_events": int,
    "lens_config": dict,
    "session_status": str,
    "session_runner": str,
    "session_endpoint": str,
    "node_tag": str,
    "session_ttl_sec": int,
}


async def create(http: aiohttp.ClientSession, lens_id: str = DOC_LENS_ID) -> dict[str, Any]:
    async with http.post("lens/sessions/create", json={"lens_id": lens_id}) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def test_documented_curl_example_response(archetype_emulator: ArchetypeEmulator) -> None:
    """The page's curl call, verbatim as an aiohttp request: every documented field and its type."""
    url = f"{archetype_emulator.base_url}/lens/sessions/create"
    headers = {"Authorization": f"Bearer {archetype_emulator.api_key}", "Content-Type": "application/json"}
    body = '{\n    "lens_id": "lns-fd669361822b07e2-237ab3ffd79199b0"\n  }'
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
        http.post(url, headers=headers, data=body) as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "application/json"
        record = await resp.json()

    assert set(record) == set(DOCUMENTED_CREATE_FIELDS)
    for name, kind in DOCUMENTED_CREATE_FIELDS.items():
        assert isinstance(record[name], kind), (name, record[name])
    assert record["api_key"] == archetype_emulator.api_key
    assert record["lens_id"] == DOC_LENS_ID
    assert record["lens_name"] == "Test Lens"
    assert re.fullmatch(r"lsn-[0-9a-f]{30}", record["session_id"])
    port = archetype_emulator.server.port
    assert record["session_endpoint"] == f"ws://127.0.0.1:{port}/v0.5/lens/sessions/{record['session_id']}"
    assert record["session_status"] == "LensSessionStatus.SESSION_STATUS_REGISTERED"
    assert record["session_ttl_sec"] == 86400
    assert record["registration_timestamp"] == record["last_event_timestamp"]
    assert record["registration_timestamp"] == record["last_update_timestamp"]
    counters = ("num_active_connections", "num_updates", "num_inputs", "num_outputs", "num_events")
    assert all(record[name] == 0 for name in counters)
    assert isinstance(record["lens_config"].get("model_pipeline"), list)
    assert record["session_runner"].startswith("lens_service:runner:")
    assert "errors" not in record


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "lens/metadata", None),
        ("POST", "lens/register", {"lens_config": {"lens_name": "x", "lens_config": {}}}),
        ("POST", "lens/delete", {"lens_id": "lns-emulated-machine-state"}),
        ("POST", "lens/sessions/create", {"lens_id": DOC_LENS_ID}),
        ("POST", "lens/sessions/destroy", {"session_id": "lsn-x"}),
        ("GET", "lens/sessions/metadata", None),
        (
            "POST",
            "lens/sessions/events/process",
            {"session_id": "lsn-x", "event": {"type": "session.status"}},
        ),
        ("GET", "lens/sessions/consumer/lsn-x", None),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic archetype-test-key"])
async def test_every_endpoint_answers_401_without_the_key(
    archetype_emulator: ArchetypeEmulator,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    authorization: str | None,
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
        http.request(method, f"{archetype_emulator.base_url}/{path}", json=body, headers=headers) as resp,
    ):
        assert resp.status == 401
        assert "errors" in await resp.json()
    # A refused request changed nothing.
    assert archetype_emulator.state()["sessions"] == []
    assert len(archetype_emulator.state()["lenses"]) == 2


async def test_lens_metadata_register_delete(archetype_http: aiohttp.ClientSession) -> None:
    async with archetype_http.get("lens/metadata") as resp:
        assert resp.status == 200
        lenses = await resp.json()
    assert isinstance(lenses, list)
    assert {lens["lens_id"] for lens in lenses} == {"lns-emulated-machine-state", DOC_LENS_ID}
    assert all({"lens_id", "lens_name", "lens_config", "lens_modifiable"} <= set(x) for x in lenses)

    config = {
        "lens_name": "bench-03 machine state",
        "lens_config": {"model_parameters": {"buffer_size": 128}},
    }
    async with archetype_http.post("lens/register", data=json.dumps({"lens_config": config})) as resp:
        assert resp.status == 200  # posted without a Content-Type, as the official client does
        lens = await resp.json()
    # Clients find their own lenses by "lns-" + name[:16] (research §1).
    assert lens["lens_id"].startswith("lns-bench-03-machine")
    assert lens["lens_name"] == "bench-03 machine state"
    assert lens["lens_config"] == config["lens_config"]

    async with archetype_http.get("lens/metadata", params={"lens_id": lens["lens_id"]}) as resp:
        assert [x["lens_id"] for x in await resp.json()] == [lens["lens_id"]]
    async with archetype_http.get(
        "lens/metadata", params={"shard_index": 1, "max_items_per_shard": 2}
    ) as resp:
        assert [x["lens_id"] for x in await resp.json()] == [lens["lens_id"]]

    async with archetype_http.post("lens/delete", json={"lens_id": lens["lens_id"]}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"is_valid": True, "lens_id": lens["lens_id"], "errors": []}
    async with archetype_http.post("lens/delete", json={"lens_id": lens["lens_id"]}) as resp:
        assert resp.status == 404
        assert (await resp.json())["errors"][0]["code"] == "lens_not_found"
    async with archetype_http.post("lens/register", json={"lens_config": {}}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"]


async def test_bad_requests_get_4xx_with_errors(archetype_http: aiohttp.ClientSession) -> None:
    cases = [
        ("lens/sessions/create", "{not json", 400),
        ("lens/sessions/create", json.dumps({}), 400),
        ("lens/sessions/create", json.dumps({"lens_id": "lns-nope"}), 404),
        ("lens/sessions/destroy", json.dumps({}), 400),
        ("lens/sessions/destroy", json.dumps({"session_id": "lsn-nope"}), 404),
        ("lens/sessions/events/process", json.dumps({"session_id": "lsn-x"}), 400),
    ]
    for path, body, status in cases:
        async with archetype_http.post(path, data=body) as resp:
            assert resp.status == status, (path, body)
            assert (await resp.json())["errors"], (path, body)
    async with archetype_http.get("lens/sessions/metadata", params={"shard_index": "x"}) as resp:
        assert resp.status == 400


async def test_slot_exhaustion_answers_errors_until_a_session_is_destroyed(
    archetype_emulator: ArchetypeEmulator, archetype_http: aiohttp.ClientSession
) -> None:
    first = await create(archetype_http)
    second = await create(archetype_http, "lns-emulated-machine-state")
    assert first["session_runner"] != second["session_runner"]
    refused = await create(archetype_http)  # 2 runner slots by default
    assert refused == {"errors": ["Failed to allocate lens runner - try stopping an older session!"]}
    assert archetype_emulator.state()["runner_slots"] == {"total": 2, "in_use": 2}

    async with archetype_http.post("lens/sessions/destroy", json={"session_id": first["session_id"]}) as resp:
        assert resp.status == 200
    third = await create(archetype_http)
    assert third["session_runner"] == first["session_runner"]
    assert len(archetype_emulator.state()["sessions"]) == 3


async def test_runner_slots_are_configurable(archetype_settings: Any) -> None:
    settings = archetype_settings.model_copy(update={"runner_slots": 1})
    async with (
        ArchetypeEmulator(settings) as emulator,
        aiohttp.ClientSession(
            emulator.base_url + "/",
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        ) as http,
    ):
        await create(http)
        assert "errors" in await create(http)


async def test_destroy_returns_the_documented_record(
    archetype_emulator: ArchetypeEmulator, archetype_http: aiohttp.ClientSession
) -> None:
    session = await create(archetype_http)
    async with archetype_http.post(
        "lens/sessions/destroy", json={"session_id": session["session_id"]}
    ) as resp:
        assert resp.status == 200
        destroyed = await resp.json()
    assert set(destroyed) == {
        "session_id",
        "lens_id",
        "last_update_timestamp",
        "session_status",
        "session_runner",
        "session_endpoint",
        "session_duration_sec",
    }
    assert destroyed["session_status"] == "SESSION_STATUS_DESTROYED"
    assert destroyed["session_id"] == session["session_id"]
    assert destroyed["session_endpoint"] == session["session_endpoint"]
    assert destroyed["session_duration_sec"] >= 0
    # Destroying again is harmless and reports the same final status.
    async with archetype_http.post(
        "lens/sessions/destroy", json={"session_id": session["session_id"]}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["session_status"] == "SESSION_STATUS_DESTROYED"
    [entry] = archetype_emulator.state()["sessions"]
    assert entry["status"] == "SESSION_STATUS_DESTROYED"
    assert entry["session_destroyed_timestamp"] is not None


async def test_sessions_metadata_is_org_wide_with_bare_status(archetype_http: aiohttp.ClientSession) -> None:
    a = await create(archetype_http)
    b = await create(archetype_http, "lns-emulated-machine-state")
    async with archetype_http.get("lens/sessions/metadata") as resp:
        assert resp.status == 200
        items = await resp.json()
    assert {x["session_id"] for x in items} == {a["session_id"], b["session_id"]}
    assert all(x["session_status"] == "SESSION_STATUS_REGISTERED" for x in items)
    documented = {"session_id", "lens_id", "last_update_timestamp", "session_status", "session_endpoint"}
    assert all(set(x) == documented | {"session_duration_sec"} for x in items)

    for _ in range(100):  # warm-up is 0.1 s; bounded poll
        async with archetype_http.get(
            "lens/sessions/metadata", params={"session_id": a["session_id"]}
        ) as resp:
            [item] = await resp.json()
        if item["session_status"] == "SESSION_STATUS_RUNNING":
            break
        await asyncio.sleep(0.02)
    assert item["session_status"] == "SESSION_STATUS_RUNNING"

    async with archetype_http.post("lens/sessions/destroy", json={"session_id": a["session_id"]}):
        pass
    async with archetype_http.get("lens/sessions/metadata") as resp:
        assert [x["session_id"] for x in await resp.json()] == [b["session_id"]]


async def test_events_process_is_the_rest_twin_of_the_socket(archetype_http: aiohttp.ClientSession) -> None:
    session = await create(archetype_http)
    sid = session["session_id"]

    async def process(event: Any) -> Any:
        async with archetype_http.post(
            "lens/sessions/events/process", json={"session_id": sid, "event": event}
        ) as r:
            assert r.status == 200
            return await r.json()

    status = await process({"type": "session.status"})
    assert status["session_id"] == sid
    assert status["session_status"].startswith("LensSessionStatus.SESSION_STATUS_")
    assert "api_key" not in status
    window = {"sensor_data": [[1.0, 2.0], [3.0, 4.0]], "sensor_metadata": {"sensor_timestamp": 1.0}}
    update = await process(
        {"type": "session.update", "event_data": {"type": "data.json", "event_data": window}}
    )
    assert update == {"type": "session.update.response", "event_data": {"accepted": True, "queued": 1}}
    assert await process({"type": "session.read", "event_data": {"client_id": "c1"}}) == {
        "type": "session.read.response",
        "event_data": None,
    }
    assert (await process({"type": "session.destroy"}))["type"] == "session.destroy.response"
    assert await process({"type": "session.status"}) == {
        "type": "error",
        "message": f"Unknown session id: {sid}",
    }


async def test_state_never_holds_the_api_key_and_dumps_to_json(
    archetype_emulator: ArchetypeEmulator,
    archetype_http: aiohttp.ClientSession,
    archetype_admin: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    session = await create(archetype_http)
    async with archetype_admin.get("/_emulator/state") as resp:
        assert resp.status == 200
        text = await resp.text()
    state = json.loads(text)
    assert archetype_emulator.api_key not in text
    assert [s["session_id"] for s in state["sessions"]] == [session["session_id"]]
    assert state["runner_slots"] == {"total": 2, "in_use": 1}
    assert {"updates_received", "windows_dropped", "inferences"} <= set(state["sessions"][0]["counts"])

    out = tmp_path / "archetype-state.json"
    archetype_emulator.dump_state(out)
    dumped = out.read_text()
    assert archetype_emulator.api_key not in dumped
    assert json.loads(dumped)["sessions"][0]["session_id"] == session["session_id"]
