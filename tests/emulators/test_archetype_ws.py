"""The session websocket of the Archetype emulator (research/archetype-protocol.md §3-§5.3, §7):
auth on the upgrade, one reply per event, `.response` types, status progression, windows, mailboxes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from edge_agent.emulators.archetype import ArchetypeEmulator

TIMEOUT = 5.0


async def create(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post("lens/sessions/create", json={"lens_id": "lns-emulated-machine-state"}) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


@pytest.fixture
async def session(archetype_http: aiohttp.ClientSession) -> dict[str, Any]:
    return await create(archetype_http)


@pytest.fixture
async def ws(
    archetype_emulator: ArchetypeEmulator, session: dict[str, Any]
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    headers = {"Authorization": f"Bearer {archetype_emulator.api_key}"}
    timeout = aiohttp.ClientWSTimeout(ws_close=2)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT)) as http,
        http.ws_connect(session["session_endpoint"], headers=headers, timeout=timeout) as sock,
    ):
        yield sock


async def call(sock: aiohttp.ClientWebSocketResponse, event: Any, *, binary: bool = False) -> Any:
    """Send one event, receive one reply, and check that no second reply follows it."""
    raw = event if isinstance(event, str) else json.dumps(event)
    if binary:
        await sock.send_bytes(raw.encode())
    else:
        await sock.send_str(raw)
    reply = await sock.receive_json(timeout=TIMEOUT)
    with pytest.raises(TimeoutError):
        await sock.receive(timeout=0.02)
    return reply


def window(values: list[list[float]], ts: float = 1741843200.0) -> dict[str, Any]:
    return {
        "type": "session.update",
        "event_data": {
            "type": "data.json",
            "event_data": {
                "sensor_data": values,
                "sensor_metadata": {"sensor_timestamp": ts, "sensor_id": "b3"},
            },
        },
    }


async def wait_running(sock: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    for _ in range(10_000):  # bounded in count too
        record: dict[str, Any] = await call(sock, {"type": "session.status"})
        if record["session_status"] == "LensSessionStatus.SESSION_STATUS_RUNNING":
            return record
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    raise AssertionError(f"session never reached RUNNING: {record['session_status']}")


async def read_until(
    sock: aiohttp.ClientWebSocketResponse, client_id: str, count: int, limit: float = TIMEOUT
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + limit
    while len(messages) < count and asyncio.get_running_loop().time() < deadline:
        reply = await call(sock, {"type": "session.read", "event_data": {"client_id": client_id}})
        assert reply["type"] == "session.read.response"
        if reply["event_data"] is not None:
            messages.extend(reply["event_data"]["messages"])
        else:
            await asyncio.sleep(0.02)
    return messages


async def test_upgrade_needs_the_bearer_key(
    archetype_emulator: ArchetypeEmulator, session: dict[str, Any]
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(session["session_endpoint"], headers=headers)
            assert refused.value.status == 401
        # Browser form (§3.1): the key as a subprotocol.
        protocols = (f"authenticationauthorization.bearer.{archetype_emulator.api_key}", "event-protocol-v1")
        async with http.ws_connect(session["session_endpoint"], protocols=protocols) as sock:
            assert sock.protocol == "event-protocol-v1"
            assert (await call(sock, {"type": "session.heartbeat"}))["type"] == "session.heartbeat.response"


@pytest.mark.archetype_warmup(1.0)  # its first status must come before the warm-up ends
async def test_status_goes_registered_then_running(
    ws: aiohttp.ClientWebSocketResponse, session: dict[str, Any]
) -> None:
    first = await call(ws, {"type": "session.status"})
    assert first["session_status"] == "LensSessionStatus.SESSION_STATUS_REGISTERED"
    assert first["session_id"] == session["session_id"]
    assert first["session_start_timestamp"] is None
    assert first["num_active_connections"] == 1
    assert "api_key" not in first
    running = await wait_running(ws)
    assert running["session_start_timestamp"] is not None
    assert running["session_start_timestamp"] >= first["registration_timestamp"]
    assert running["num_events"] > first["num_events"]


async def test_text_and_binary_frames_get_one_typed_reply_each(ws: aiohttp.ClientWebSocketResponse) -> None:
    for binary in (False, True):
        assert await call(ws, {"type": "session.heartbeat"}, binary=binary) == {
            "type": "session.heartbeat.response",
            "event_data": None,
        }
        update = await call(ws, window([[1.0, 2.0, 3.0]]), binary=binary)
        assert update["type"] == "session.update.response"
        assert update["event_data"]["accepted"] is True
        read = await call(
            ws, {"type": "session.read", "event_data": {"client_id": f"c{binary}"}}, binary=binary
        )
        assert read["type"] == "session.read.response"
        validate = await call(ws, {"type": "session.validate"}, binary=binary)
        assert validate == {
            "type": "session.validate.response",
            "event_data": {"is_valid": True, "error_messages": []},
        }


async def test_bad_events_get_one_error_and_the_socket_stays_open(
    ws: aiohttp.ClientWebSocketResponse,
) -> None:
    bad: list[Any] = [
        "{not json",
        b"\xff\xfe",
        json.dumps([1, 2]),
        {"event_data": {}},
        {"type": "session.nonsense"},
        {"type": "session.read", "event_data": {}},
        window([]),
        window([[1.0, 2.0], [3.0]]),
        window([[1.0, "x"]]),
        {"type": "session.update", "event_data": {"type": "data.text", "event_data": {}}},
    ]
    for event in bad:
        if isinstance(event, bytes):
            await ws.send_bytes(event)
            reply = await ws.receive_json(timeout=TIMEOUT)
        else:
            reply = await call(ws, event)
        assert reply["type"] == "error", event
        assert isinstance(reply["message"], str) and reply["message"]
    assert (await call(ws, {"type": "session.heartbeat"}))["type"] == "session.heartbeat.response"


async def test_read_drains_per_client_and_answers_null_when_empty(
    archetype_emulator: ArchetypeEmulator, ws: aiohttp.ClientWebSocketResponse, session: dict[str, Any]
) -> None:
    await wait_running(ws)
    empty = await call(ws, {"type": "session.read", "event_data": {"client_id": "alpha"}})
    assert empty == {"type": "session.read.response", "event_data": None}

    for i in range(3):
        assert (await call(ws, window([[float(i), float(i) + 0.5], [10.0, 10.5]])))["event_data"]["accepted"]
    alpha = await read_until(ws, "alpha", 3)
    assert [m["type"] for m in alpha] == ["inference.result"] * 3
    result = alpha[0]["event_data"]
    label, scores = result["response"]
    assert label == "normal"  # the baseline windows define normal
    assert set(scores) == {"normal", "fault"}
    assert sum(scores.values()) == pytest.approx(1.0)
    assert isinstance(result["query_metadata"]["query_timestamp"], float)
    assert result["query_time_sec"] == pytest.approx(0.05)

    # Drained: alpha's mailbox is empty again; a new client_id starts from the retained outputs.
    drained = await call(ws, {"type": "session.read", "event_data": {"client_id": "alpha"}})
    assert drained["event_data"] is None
    beta = await call(ws, {"type": "session.read", "event_data": {"client_id": "beta"}})
    assert beta["event_data"]["messages"] == alpha

    # A window far outside the learned band is labelled with the anomaly label.
    await call(ws, window([[500.0, 501.0], [10.0, 10.5]]))
    [anomaly] = await read_until(ws, "alpha", 1)
    assert anomaly["event_data"]["response"][0] == "fault"
    assert anomaly["event_data"]["response"][1]["fault"] > 0.5
    [also] = await read_until(ws, "beta", 1)
    assert also == anomaly

    counts = archetype_emulator.state()["sessions"][0]["counts"]
    assert counts["inferences"] == 4
    assert counts["updates_received"] == 4
    assert counts["windows_dropped"] == 0


async def test_buffer_holds_twenty_windows_and_drops_the_rest(archetype_settings: Any) -> None:
    """Research §7: 102 back-to-back pushes -> exactly 20 predictions, the rest dropped."""
    # The 102 pushes must all land within the warm-up: 2 s leaves room for a loaded machine.
    settings = archetype_settings.model_copy(update={"warmup": 2.0, "inference_interval": 0.01})
    async with (
        ArchetypeEmulator(settings) as emulator,
        aiohttp.ClientSession(
            emulator.base_url + "/",
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT * 2),
        ) as http,
    ):
        record = await create(http)
        async with http.ws_connect(record["session_endpoint"]) as sock:
            # Pipelined, so that all 102 land during the warm-up, back to back.
            for i in range(102):
                await sock.send_str(json.dumps(window([[float(i % 3), 1.0]])))
            replies = [await sock.receive_json(timeout=TIMEOUT) for _ in range(102)]
            accepted = [r["event_data"]["accepted"] for r in replies]
            assert accepted == [True] * 20 + [False] * 82
            assert replies[-1]["event_data"]["queued"] == 20
            messages = await read_until(sock, "reader", 20)
            # Nothing more arrives: the dropped windows are gone.
            await asyncio.sleep(0.1)
            extra = await call(sock, {"type": "session.read", "event_data": {"client_id": "reader"}})
        assert len(messages) == 20
        assert extra["event_data"] is None
        [state] = emulator.state()["sessions"]
        assert state["counts"]["windows_dropped"] == 82
        assert state["counts"]["windows_accepted"] == 20
        assert state["counts"]["inferences"] == 20
        assert state["buffered_windows"] == 0


async def test_destroy_over_the_socket_then_unknown_session_errors(
    archetype_emulator: ArchetypeEmulator,
    ws: aiohttp.ClientWebSocketResponse,
    session: dict[str, Any],
    archetype_http: aiohttp.ClientSession,
) -> None:
    reply = await call(ws, {"type": "session.destroy"})
    assert reply["type"] == "session.destroy.response"
    assert reply["event_data"]["session_status"] == "SESSION_STATUS_DESTROYED"
    unknown = {"type": "error", "message": f"Unknown session id: {session['session_id']}"}
    for event in (
        {"type": "session.status"},
        window([[1.0]]),
        {"type": "session.read", "event_data": {"client_id": "x"}},
    ):
        assert await call(ws, event) == unknown
    assert archetype_emulator.state()["runner_slots"]["in_use"] == 0
    # The slot is free again.
    assert "errors" not in await create(archetype_http)
    assert "errors" not in await create(archetype_http)


async def test_socket_to_an_unknown_session_answers_unknown_session(
    archetype_emulator: ArchetypeEmulator,
) -> None:
    url = f"ws://127.0.0.1:{archetype_emulator.server.port}/v0.5/lens/sessions/lsn-missing"
    headers = {"Authorization": f"Bearer {archetype_emulator.api_key}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
        http.ws_connect(url, headers=headers) as sock,
    ):
        assert await call(sock, {"type": "session.status"}) == {
            "type": "error",
            "message": "Unknown session id: lsn-missing",
        }


async def test_modify_get_and_stream_set_events(ws: aiohttp.ClientWebSocketResponse) -> None:
    assert (await call(ws, {"type": "session.modify", "event_data": {"focus": "supply"}}))["type"] == (
        "session.modify.response"
    )
    assert (await call(ws, {"type": "session.get", "event_data": {}}))["event_data"]["focus"] == "supply"
    out = {"type": "output_stream.set", "event_data": {"stream_type": "server_sent_events_writer"}}
    assert (await call(ws, out))["type"] == "output_stream.set.response"
