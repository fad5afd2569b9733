"""edge_agent/emulators/common.py on its own: FaultInjector middleware, bearer auth, admin routes and
EmulatorServer.refuse_for, on a small aiohttp app served over loopback.

Time is only ever asserted as a lower bound (an injected delay cannot make a request faster), never as
a speed target, so these hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge_agent.emulators.common import (
    EmulatorServer,
    FaultInjector,
    add_admin_routes,
    bearer_auth_middleware,
    iso_now,
)

TOKEN = "common-test-token"


@dataclass
class Rig:
    faults: FaultInjector
    server: EmulatorServer
    http: aiohttp.ClientSession


async def _echo(request: web.Request) -> web.Response:
    if request.content_type == "multipart/form-data":
        form = await request.post()
        sizes = {}
        for name, value in form.items():
            sizes[name] = len(value.file.read()) if isinstance(value, web.FileField) else len(value)
        return web.json_response({"multipart": sizes})
    body = await request.read()
    return web.json_response({"method": request.method, "size": len(body)})


def _unauthorized() -> web.Response:
    return web.json_response({"detail": "Not authenticated"}, status=401)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    faults = FaultInjector(seed=7)
    app = web.Application(
        middlewares=[faults.middleware, bearer_auth_middleware(lambda: TOKEN, "/api", _unauthorized)]
    )
    app.router.add_route("*", "/api/echo", _echo)
    app.router.add_route("*", "/other/echo", _echo)
    holder: dict[str, EmulatorServer] = {}
    add_admin_routes(app, faults, lambda: {"hello": "state"}, lambda: holder.get("server"))
    server = EmulatorServer(app, "127.0.0.1", 0)
    holder["server"] = server
    await server.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(server.base_url + "/", headers=headers, timeout=timeout) as http:
        yield Rig(faults, server, http)
    await server.stop()


async def _status(http: aiohttp.ClientSession, method: str = "GET", path: str = "api/echo", **kw: Any) -> int:
    async with http.request(method, path, **kw) as resp:
        await resp.read()
        return resp.status


async def _set_faults(http: aiohttp.ClientSession, **switches: Any) -> dict[str, Any]:
    async with http.post("_emulator/faults", json=switches) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def test_iso_now_has_the_atlas_timestamp_shape() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}", iso_now())


async def test_bearer_auth_guards_only_its_prefix(rig: Rig) -> None:
    assert await _status(rig.http) == 200
    assert await _status(rig.http, headers={"Authorization": "Bearer nope"}) == 401
    assert await _status(rig.http, headers={"Authorization": TOKEN}) == 401
    assert (
        await _status(rig.http, headers={"Authorization": f"bearer {TOKEN}"}) == 200
    )  # scheme is case-blind
    async with aiohttp.ClientSession(rig.server.base_url + "/") as anonymous:
        async with anonymous.get("api/echo") as resp:
            assert resp.status == 401 and await resp.json() == {"detail": "Not authenticated"}
        assert await _status(anonymous, path="other/echo") == 200


async def test_admin_endpoints_read_set_validate_and_clear(rig: Rig) -> None:
    async with rig.http.get("_emulator/faults") as resp:
        initial = await resp.json()
    assert initial["settings"]["error_rate"] == 0 and initial["injected"] == {}
    body = await _set_faults(rig.http, error_rate=0.25, retry_after=3)
    assert body["settings"]["error_rate"] == 0.25 and body["settings"]["retry_after"] == 3
    for bad in ({"error_rate": 2}, {"no_such_switch": 1}, {"error_status": 404}):
        async with rig.http.post("_emulator/faults", json=bad) as resp:
            assert resp.status == 422, bad
    async with rig.http.post("_emulator/faults", data=b"[1, 2]") as resp:
        assert resp.status == 422
    assert rig.faults.settings.error_rate == 0.25  # a rejected change leaves the switches as they were
    async with rig.http.delete("_emulator/faults") as resp:
        assert (await resp.json())["settings"]["error_rate"] == 0
    async with rig.http.get("_emulator/state") as resp:
        assert await resp.json() == {"hello": "state"}


async def test_error_share_answers_the_configured_5xx(rig: Rig) -> None:
    await _set_faults(rig.http, error_rate=1.0, error_status=502)
    assert [await _status(rig.http) for _ in range(5)] == [502] * 5
    await _set_faults(rig.http, error_rate=0.5, error_status=503)
    statuses = [await _status(rig.http) for _ in range(60)]
    assert 10 <= statuses.count(503) <= 50 and statuses.count(503) + statuses.count(200) == 60
    assert rig.faults.injected["502"] == 5 and rig.faults.injected["503"] == statuses.count(503)
    # The admin endpoints are never faulted, so a client can always switch faults off again.
    async with rig.http.delete("_emulator/faults") as resp:
        assert resp.status == 200
    assert await _status(rig.http) == 200


async def test_rate_limit_answers_429_with_retry_after(rig: Rig) -> None:
    await _set_faults(rig.http, rate_limit_rate=1.0, retry_after=2.5)
    async with rig.http.get("api/echo") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "2.5"
        assert (await resp.json())["detail"] == "Too Many Requests"


async def test_faults_can_target_a_path_prefix_and_methods(rig: Rig) -> None:
    await _set_faults(rig.http, error_rate=1.0, path_prefix="/api", methods=["post"])
    assert await _status(rig.http, "POST", json={}) == 503
    assert await _status(rig.http, "GET") == 200
    assert await _status(rig.http, "POST", path="other/echo", json={}) == 200


async def test_latency_delays_every_answer(rig: Rig) -> None:
    await _set_faults(rig.http, latency=0.3)
    started = time.monotonic()
    assert await _status(rig.http) == 200
    assert time.monotonic() - started >= 0.3
    assert rig.faults.injected["latency"] == 1


async def test_slow_uploads_take_longer_and_arrive_whole(rig: Rig) -> None:
    body = bytes(range(256)) * 40  # 10 KiB at 20 KiB/s: at least half a second
    await _set_faults(rig.http, upload_bytes_per_sec=20_000)
    started = time.monotonic()
    async with rig.http.post("api/echo", data=body) as resp:
        assert (await resp.json())["size"] == len(body)
    assert time.monotonic() - started >= len(body) / 20_000 * 0.9

    # Multipart bodies, too, reach the handler intact after the slow read (the handler reads them as a
    # stream, not from the cached bytes).
    form = aiohttp.FormData()
    form.add_field("files", body, filename="a.bin")
    form.add_field("files2", b"xyz", filename="b.bin")
    async with rig.http.post("api/echo", data=form) as resp:
        assert await resp.json() == {"multipart": {"files": len(body), "files2": 3}}
    assert rig.faults.injected["slow_upload"] == 2


async def test_refuse_for_really_refuses_then_recovers(rig: Rig) -> None:
    port = rig.server.port
    await rig.server.refuse_for(0.5)
    assert rig.server.refusing
    with pytest.raises(aiohttp.ClientConnectionError):
        await _status(rig.http)
    recovered_after = None
    for attempt in range(60):  # bounded: 60 x 50 ms
        await asyncio.sleep(0.05)
        try:
            assert await _status(rig.http) == 200
        except aiohttp.ClientConnectionError:
            continue
        recovered_after = attempt
        break
    assert recovered_after is not None and not rig.server.refusing and rig.server.port == port


async def test_refuse_admin_endpoint_answers_then_refuses(rig: Rig) -> None:
    for bad in ({"seconds": 0}, {"seconds": "soon"}, [5]):
        async with rig.http.post("_emulator/refuse", json=bad) as resp:
            assert resp.status == 422, bad
    async with rig.http.post("_emulator/refuse", json={"seconds": 0.4}) as resp:
        assert await resp.json() == {"refusing_for": 0.4}
    refused = False
    for _ in range(40):  # bounded: the outage starts ~50 ms after the answer
        try:
            await _status(rig.http)
        except aiohttp.ClientConnectionError:
            refused = True
            break
        await asyncio.sleep(0.02)
    assert refused
    for _ in range(60):
        await asyncio.sleep(0.05)
        try:
            if await _status(rig.http) == 200:
                break
        except aiohttp.ClientConnectionError:
            continue
    assert not rig.server.refusing


async def test_initial_switches_come_from_config() -> None:
    faults = FaultInjector({"rate_limit_rate": 1.0, "retry_after": 7})
    assert faults.settings.rate_limit_rate == 1.0 and faults.settings.retry_after == 7
    with pytest.raises(ValueError):
        FaultInjector({"error_rate": -1})
