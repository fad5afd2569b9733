"""Fault injection on the Atlas emulator, as a client sees it: each switch (by config or at run time)
changes what comes back. Times are asserted only as lower bounds."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas import AtlasEmulator

ISSUE = {"title": "Power rail undervoltage at startup", "description": [], "priority": "high"}


async def _post_issue(http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
    async with http.post("api/v1/issues", json=ISSUE) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def _switch(http: aiohttp.ClientSession, **switches: object) -> None:
    async with http.post("_emulator/faults", json=switches) as resp:
        assert resp.status == 200, await resp.text()


async def test_faults_from_config_apply_from_the_first_request(atlas_settings: EmulatorSection) -> None:
    settings = atlas_settings.model_copy(update={"faults": {"error_rate": 1.0, "error_status": 500}})
    async with AtlasEmulator(settings) as emulator:
        headers = {"Authorization": f"Bearer {emulator.token}"}
        async with aiohttp.ClientSession(emulator.base_url + "/", headers=headers) as http:
            assert (await _post_issue(http))[0] == 500
            await _switch(http, error_rate=0.0)
            assert (await _post_issue(http))[0] == 201
        assert emulator.state()["counts"]["issues"] == 1  # the failed create stored nothing


async def test_5xx_share_and_429_with_retry_after(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    await _switch(atlas_http, error_rate=0.5)
    statuses = [(await _post_issue(atlas_http))[0] for _ in range(40)]
    failed = statuses.count(503)
    assert 5 <= failed <= 35 and statuses.count(201) == 40 - failed
    assert atlas_emulator.state()["counts"]["issues"] == 40 - failed

    await _switch(atlas_http, error_rate=0.0, rate_limit_rate=1.0, retry_after=4)
    status, headers = await _post_issue(atlas_http)
    assert status == 429 and headers["Retry-After"] == "4"
    assert atlas_emulator.state()["faults_injected"]["429"] == 1


async def test_latency_is_added_to_answers(atlas_http: aiohttp.ClientSession) -> None:
    await _switch(atlas_http, latency=0.25)
    started = time.monotonic()
    assert (await _post_issue(atlas_http))[0] == 201
    assert time.monotonic() - started >= 0.25


async def test_refusing_connections_then_recovery(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    async with atlas_http.post("_emulator/refuse", json={"seconds": 0.5}) as resp:
        assert resp.status == 200
    outcomes: list[str] = []
    for _ in range(100):  # bounded: about 5 s at most
        try:
            status, _ = await _post_issue(atlas_http)
            outcomes.append(str(status))
            if "refused" in outcomes:
                break
        except aiohttp.ClientConnectionError:
            outcomes.append("refused")
        await asyncio.sleep(0.05)
    assert "refused" in outcomes and outcomes[-1] == "201"
    assert not atlas_emulator.server.refusing


async def test_slow_uploads_take_longer_and_store_every_byte(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    async with atlas_http.post("api/v1/sessions", json={"title": "slow"}) as resp:
        session_id = (await resp.json())["session_id"]
    evidence = bytes(range(256)) * 64  # 16 KiB at 32 KiB/s: at least half a second
    await _switch(atlas_http, upload_bytes_per_sec=32_768, path_prefix="/api/v1/sessions")
    form = aiohttp.FormData()
    form.add_field("files", evidence, filename="evidence.csv", content_type="text/csv")
    form.add_field("files", b'{"ok": true}', filename="summary.json")
    started = time.monotonic()
    async with atlas_http.post(f"api/v1/sessions/{session_id}/upload-files", data=form) as resp:
        assert resp.status == 200
        attachments = await resp.json()
    assert time.monotonic() - started >= len(evidence) / 32_768 * 0.9
    assert atlas_emulator.attachment_bytes(attachments[0]["attachment_id"]) == evidence
    assert atlas_emulator.attachment_bytes(attachments[1]["attachment_id"]) == b'{"ok": true}'
    assert atlas_emulator.state()["faults_injected"]["slow_upload"] == 1
