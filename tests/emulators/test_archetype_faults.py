"""Fault injection on the Archetype emulator: each switch changes what a real client observes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from edge_agent.emulators.archetype import ArchetypeEmulator

TIMEOUT = 5.0


async def create(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post("lens/sessions/create", json={"lens_id": "lns-emulated-machine-state"}) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def set_faults(admin: aiohttp.ClientSession, **switches: Any) -> None:
    async with admin.post("/_emulator/faults", json=switches) as resp:
        assert resp.status == 200, await resp.text()


async def call(sock: aiohttp.ClientWebSocketResponse, event: dict[str, Any]) -> Any:
    await sock.send_str(json.dumps(event))
    return await sock.receive_json(timeout=TIMEOUT)


async def test_latency_is_added_to_rest_and_socket_replies(
    archetype_http: aiohttp.ClientSession, archetype_admin: aiohttp.ClientSession
) -> None:
    session = await create(archetype_http)
    async with archetype_http.ws_connect(session["session_endpoint"]) as sock:
        await set_faults(archetype_admin, latency=0.3)
        started = time.monotonic()
        async with archetype_http.get("lens/metadata") as resp:
            assert resp.status == 200
        rest_elapsed = time.monotonic() - started
        started = time.monotonic()
        assert (await call(sock, {"type": "session.heartbeat"}))["type"] == "session.heartbeat.response"
        ws_elapsed = time.monotonic() - started
    assert rest_elapsed >= 0.3
    assert ws_elapsed >= 0.3


async def test_5xx_and_429_with_retry_after_then_recovery(
    archetype_emulator: ArchetypeEmulator,
    archetype_http: aiohttp.ClientSession,
    archetype_admin: aiohttp.ClientSession,
) -> None:
    await set_faults(archetype_admin, error_rate=1.0, error_status=502)
    async with archetype_http.post(
        "lens/sessions/create", json={"lens_id": "lns-emulated-machine-state"}
    ) as r:
        assert r.status == 502
    await set_faults(archetype_admin, error_rate=0.0, rate_limit_rate=1.0, retry_after=7)
    async with archetype_http.get("lens/sessions/metadata") as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "7"
    async with archetype_admin.delete("/_emulator/faults") as r:
        assert r.status == 200
    assert "session_id" in await create(archetype_http)
    # Nothing was created by the faulted calls.
    assert len(archetype_emulator.state()["sessions"]) == 1
    assert archetype_emulator.state()["injected"]["502"] == 1


async def test_a_share_of_requests_fails(archetype_settings: Any) -> None:
    settings = archetype_settings.model_copy(update={"faults": {"error_rate": 0.5}})
    async with (
        ArchetypeEmulator(settings, seed=3) as emulator,
        aiohttp.ClientSession(
            emulator.base_url + "/",
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        ) as http,
    ):
        statuses = []
        for _ in range(40):
            async with http.get("lens/metadata") as resp:
                statuses.append(resp.status)
    assert set(statuses) == {200, 503}  # configured at start-up through [emulator] faults
    assert 5 <= statuses.count(503) <= 35


async def test_refuse_then_recover(
    archetype_emulator: ArchetypeEmulator, archetype_admin: aiohttp.ClientSession
) -> None:
    async with archetype_admin.post("/_emulator/refuse", json={"seconds": 0.5}) as resp:
        assert resp.status == 200
    headers = {"Authorization": f"Bearer {archetype_emulator.api_key}"}
    url = f"{archetype_emulator.base_url}/lens/metadata"
    observed: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as fresh,
                fresh.get(url, headers=headers) as resp,
            ):
                observed.append(str(resp.status))
        except aiohttp.ClientConnectorError as exc:
            assert isinstance(exc.os_error, ConnectionRefusedError)
            observed.append("refused")
        if "refused" in observed and observed[-1] == "200":
            break
        await asyncio.sleep(0.05)
    assert "refused" in observed
    assert observed[-1] == "200"


async def test_websocket_drop_by_admin_and_by_timer(
    archetype_emulator: ArchetypeEmulator,
    archetype_http: aiohttp.ClientSession,
    archetype_admin: aiohttp.ClientSession,
) -> None:
    session = await create(archetype_http)
    async with archetype_http.ws_connect(session["session_endpoint"]) as sock:
        assert (await call(sock, {"type": "session.heartbeat"}))["type"] == "session.heartbeat.response"
        async with archetype_admin.post("/_emulator/websockets/drop", json={}) as resp:
            assert (await resp.json()) == {"dropped": 1}
        message = await sock.receive(timeout=TIMEOUT)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
        assert sock.closed

    await set_faults(archetype_admin, ws_drop_every=0.2)
    async with archetype_http.ws_connect(session["session_endpoint"]) as sock:
        assert (await call(sock, {"type": "session.heartbeat"}))["type"] == "session.heartbeat.response"
        message = await sock.receive(timeout=TIMEOUT)  # nothing sent: the next thing is the drop
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
    assert archetype_emulator.state()["injected"]["ws_drop"] == 2
    # The session itself survived the cut sockets.
    assert archetype_emulator.state()["sessions"][0]["status"] in (
        "SESSION_STATUS_REGISTERED",
        "SESSION_STATUS_RUNNING",
    )


@pytest.mark.parametrize(
    ("action", "final"), [("destroy", "SESSION_STATUS_DESTROYED"), ("expire", "SESSION_STATUS_STALE")]
)
async def test_server_side_end_is_reported_and_the_socket_errors(
    archetype_emulator: ArchetypeEmulator,
    archetype_http: aiohttp.ClientSession,
    archetype_admin: aiohttp.ClientSession,
    action: str,
    final: str,
) -> None:
    session = await create(archetype_http)
    sid = session["session_id"]
    async with archetype_http.ws_connect(session["session_endpoint"]) as sock:
        assert (await call(sock, {"type": "session.status"}))["session_id"] == sid
        async with archetype_admin.post(f"/_emulator/sessions/{sid}/{action}") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == final
        assert await call(sock, {"type": "session.status"}) == {
            "type": "error",
            "message": f"Unknown session id: {sid}",
        }
    async with archetype_http.get("lens/sessions/metadata") as resp:
        assert await resp.json() == []
    async with archetype_http.post("lens/sessions/destroy", json={"session_id": sid}) as resp:
        assert (await resp.json())["session_status"] == final
    assert archetype_emulator.state()["runner_slots"]["in_use"] == 0


async def test_python_api_destroy_and_expire(
    archetype_emulator: ArchetypeEmulator, archetype_http: aiohttp.ClientSession
) -> None:
    a, b = await create(archetype_http), await create(archetype_http)
    await archetype_emulator.destroy_session_server_side(a["session_id"])
    await archetype_emulator.expire_session(b["session_id"])
    statuses = {s["session_id"]: s["status"] for s in archetype_emulator.state()["sessions"]}
    assert statuses == {a["session_id"]: "SESSION_STATUS_DESTROYED", b["session_id"]: "SESSION_STATUS_STALE"}


async def test_sessions_expire_after_the_configured_age(
    archetype_emulator: ArchetypeEmulator,
    archetype_http: aiohttp.ClientSession,
    archetype_admin: aiohttp.ClientSession,
) -> None:
    session = await create(archetype_http)
    await set_faults(archetype_admin, session_expire_after=0.3)
    for _ in range(100):
        if archetype_emulator.state()["sessions"][0]["status"] == "SESSION_STATUS_STALE":
            break
        await asyncio.sleep(0.02)
    assert archetype_emulator.state()["sessions"][0]["status"] == "SESSION_STATUS_STALE"
    async with archetype_http.post(
        "lens/sessions/events/process",
        json={"session_id": session["session_id"], "event": {"type": "session.status"}},
    ) as resp:
        assert (await resp.json())["message"] == f"Unknown session id: {session['session_id']}"
    assert archetype_emulator.state()["runner_slots"]["in_use"] == 0


async def test_no_free_runner_switch_and_failed_sessions(
    archetype_emulator: ArchetypeEmulator,
    archetype_http: aiohttp.ClientSession,
    archetype_admin: aiohttp.ClientSession,
) -> None:
    session = await create(archetype_http)
    await set_faults(archetype_admin, no_free_runner=True)
    assert await create(archetype_http) == {
        "errors": ["Failed to allocate lens runner - try stopping an older session!"]
    }
    await set_faults(archetype_admin, no_free_runner=False)

    sid = session["session_id"]
    async with archetype_admin.post(f"/_emulator/sessions/{sid}/fail") as resp:
        assert (await resp.json())["status"] == "SESSION_STATUS_FAILED"
    async with archetype_http.ws_connect(session["session_endpoint"]) as sock:
        status = await call(sock, {"type": "session.status"})
        assert status["session_status"] == "LensSessionStatus.SESSION_STATUS_FAILED"
        window = {"type": "data.json", "event_data": {"sensor_data": [[1.0]]}}
        update = await call(sock, {"type": "session.update", "event_data": window})
        assert update["type"] == "session.update.response"
        assert update["event_data"]["accepted"] is False
    async with archetype_http.get("lens/sessions/metadata") as resp:
        assert [x["session_status"] for x in await resp.json()] == ["SESSION_STATUS_FAILED"]
    async with archetype_admin.post("/_emulator/sessions/lsn-missing/fail") as resp:
        assert resp.status == 404


async def test_faults_on_the_socket_upgrade(
    archetype_http: aiohttp.ClientSession, archetype_admin: aiohttp.ClientSession
) -> None:
    session = await create(archetype_http)
    await set_faults(archetype_admin, error_rate=1.0)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await archetype_http.ws_connect(session["session_endpoint"])
    assert refused.value.status == 503
