"""The emulators' switches for answers real infrastructure gives (issue 11): a proxy's 413 page, 204s,
redirects, an error page echoing the Authorization header, a skewed clock; and answers the pages allow
but the emulators do not give by default: oldest-first lists, null fields, soft-deleted comments,
runner-error texts, per-lens output routing. Raw HTTP here: what the emulator says, not a client."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from archetype_helpers import collect, new_session, push

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.emulators.atlas_models import parse_timestamp

P = "api/v1"


async def _json(resp: aiohttp.ClientResponse) -> Any:
    assert resp.status < 300, (resp.status, await resp.text())
    return await resp.json()


async def _issue(http: aiohttp.ClientSession, title: str, **fields: Any) -> dict[str, Any]:
    async with http.post(f"{P}/issues", json={"title": title, "description": [], **fields}) as resp:
        body: dict[str, Any] = await _json(resp)
        return body


async def test_proxy_413_page_on_uploads_only(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    atlas_emulator.faults.update({"proxy_status": 413, "path_pattern": r"/upload-files$"})
    async with atlas_http.post(f"{P}/sessions", json={"title": "s"}) as resp:
        sid = (await _json(resp))["session_id"]
    form = aiohttp.FormData()
    form.add_field("files", b"x" * 10, filename="e.csv", content_type="text/csv")
    async with atlas_http.post(f"{P}/sessions/{sid}/upload-files", data=form) as resp:
        assert resp.status == 413 and resp.content_type == "text/html"
        assert "413 Request Entity Too Large" in await resp.text()
    assert atlas_emulator.store.attachments == {}


async def test_no_content_applies_the_change(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    issue = await _issue(atlas_http, "t")
    atlas_emulator.faults.update({"no_content": True, "methods": ["PATCH"]})
    async with atlas_http.patch(f"{P}/issues/{issue['uuid']}", json={"status": "resolved"}) as resp:
        assert resp.status == 204 and await resp.read() == b""
    assert atlas_emulator.store.issues[issue["uuid"]].fields.status == "resolved"
    assert atlas_emulator.faults.requests[f"PATCH /api/v1/issues/{issue['uuid']}"] == 1


async def test_redirects_same_and_cross_origin(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    atlas_emulator.faults.update({"redirect_status": 307, "path_prefix": "/api/v1/sessions"})
    async with atlas_http.post(f"{P}/sessions?x=1", json={"title": "moved"}, allow_redirects=False) as resp:
        assert resp.status == 307
        location = resp.headers["Location"]
    assert (
        location.startswith("/api/v1/sessions?") and "x=1" in location and atlas_emulator.store.sessions == {}
    )
    async with atlas_http.post(location.lstrip("/"), json={"title": "moved"}, allow_redirects=False) as resp:
        assert resp.status == 201  # the second hop reaches the API
    atlas_emulator.faults.update({"redirect_status": 308, "redirect_to": "http://127.0.0.1:9"})
    async with atlas_http.get(f"{P}/sessions", allow_redirects=False) as resp:
        assert resp.status == 308 and resp.headers["Location"] == "http://127.0.0.1:9/api/v1/sessions"


async def test_echo_page_cut_inside_the_credential(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    atlas_emulator.faults.update({"echo_auth_status": 400, "echo_auth_cut": 5})
    async with atlas_http.get(f"{P}/issues") as resp:
        text = await resp.text()
    assert resp.status == 400 and text.endswith("Authorization: Bearer " + atlas_emulator.token[:5])
    atlas_emulator.faults.update({"echo_auth_cut": -1})
    async with atlas_http.get(f"{P}/issues") as resp:
        assert atlas_emulator.token in await resp.text()


async def test_oldest_first_null_fields_and_soft_deleted_comments(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    first, second = await _issue(atlas_http, "first"), await _issue(atlas_http, "second")
    async with atlas_http.get(f"{P}/issues") as resp:
        assert [i["title"] for i in (await _json(resp))["items"]] == ["second", "first"]
    atlas_emulator.faults.update(
        {"list_order": "oldest_first", "null_issue_status": True, "null_attachment_id": True,
         "soft_delete_comments": True}
    )  # fmt: skip
    async with atlas_http.get(f"{P}/issues") as resp:
        items = (await _json(resp))["items"]
    assert [i["title"] for i in items] == ["first", "second"] and {i["status"] for i in items} == {None}
    async with atlas_http.post(f"{P}/sessions", json={"title": "s"}) as resp:
        sid = (await _json(resp))["session_id"]
    form = aiohttp.FormData()
    form.add_field("files", b"x", filename="e.csv", content_type="text/csv")
    async with atlas_http.post(f"{P}/sessions/{sid}/upload-files", data=form) as resp:
        assert [(a["attachment_name"], a["attachment_id"]) for a in await _json(resp)] == [("e.csv", None)]
    async with atlas_http.get(f"{P}/sessions/{sid}") as resp:
        assert (await _json(resp))["attachments"] == []  # not attached
    async with atlas_http.post(f"{P}/issues/{first['uuid']}/comments", json={"content": "c"}) as resp:
        comment = await _json(resp)
    async with atlas_http.delete(f"{P}/issues/{first['uuid']}/comments/{comment['uuid']}") as resp:
        assert resp.status == 204
    async with atlas_http.get(f"{P}/issues/{first['uuid']}/comments") as resp:
        assert [(c["uuid"], c["is_deleted"]) for c in (await _json(resp))["items"]] == [
            (comment["uuid"], True)
        ]
    assert second["status"] == "open"


async def test_clock_offset_moves_timestamps_and_the_date_header(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    atlas_emulator.faults.update({"clock_offset": -600.0})
    async with atlas_http.post(f"{P}/sessions", json={"title": "s"}) as resp:
        created = parse_timestamp((await _json(resp))["session_created_at"]).timestamp()
        date = parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert abs(created - (time.time() - 600)) < 30 and abs(date - (time.time() - 600)) < 30


async def test_retry_after_as_a_date(
    archetype_emulator: ArchetypeEmulator, archetype_http: aiohttp.ClientSession
) -> None:
    archetype_emulator.faults.update({"rate_limit_rate": 1.0, "retry_after": 4, "retry_after_date": True})
    async with archetype_http.get("lens/metadata") as resp:
        assert resp.status == 429
        wait = parsedate_to_datetime(resp.headers["Retry-After"]).timestamp() - time.time()
    assert 2.0 <= wait <= 5.0


async def test_runner_error_text_in_a_200(
    archetype_emulator: ArchetypeEmulator, archetype_http: aiohttp.ClientSession
) -> None:
    archetype_emulator.faults.update(
        {"no_free_runner": True, "runner_error_text": "Failed to fetch session_runner!"}
    )
    async with archetype_http.post(
        "lens/sessions/create", json={"lens_id": "lns-emulated-machine-state"}
    ) as resp:
        assert resp.status == 200 and await resp.json() == {"errors": ["Failed to fetch session_runner!"]}


async def test_lens_routes_deliver_to_one_reader_only(
    archetype_emulator: ArchetypeEmulator, archetype_http: aiohttp.ClientSession
) -> None:
    archetype_emulator.faults.update({"lens_routes": {"lns-emulated-machine-state": "sse"}})
    sid = await new_session(archetype_http)
    read = {"type": "session.read", "event_data": {"client_id": "c1"}}

    async def mailbox() -> Any:
        async with archetype_http.post(
            "lens/sessions/events/process", json={"session_id": sid, "event": read}
        ) as resp:
            return (await resp.json())["event_data"]

    assert await mailbox() is None
    async with archetype_http.get(
        f"lens/sessions/consumer/{sid}", headers={"Accept": "text/event-stream"}
    ) as resp:
        await collect(resp, "sse.stream.start")
        await push(archetype_http, sid, [[1.0, 2.0]])
        got = await collect(resp, "inference.result")
        assert got[-1]["data"]["type"] == "inference.result"
    assert await mailbox() is None  # SSE-routed: the mailbox stays empty
    # Routed to session.read: the SSE consumer gets heartbeats only, the mailbox the result.
    archetype_emulator.faults.update({"lens_routes": {"lns-emulated-machine-state": "session_read"}})
    async with archetype_http.get(
        f"lens/sessions/consumer/{sid}", headers={"Accept": "text/event-stream"}
    ) as resp:
        await collect(resp, "sse.stream.start")
        await push(archetype_http, sid, [[3.0, 4.0]])
        beats = await collect(resp, "sse.stream.heartbeat")
        beats += await collect(resp, "sse.stream.heartbeat")
        for _ in range(50):
            delivered = await mailbox()
            if delivered:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no result in the mailbox")
    assert [m["type"] for m in delivered["messages"]] == ["inference.result"]
    assert all(f["data"]["type"] == "sse.stream.heartbeat" for f in beats)
