"""The SSE consumer of the Archetype emulator (research §5.1): start, heartbeats, outputs with ids,
Last-Event-ID resume, end on destroy and on idle."""

from __future__ import annotations

from typing import Any

import aiohttp
from archetype_helpers import TIMEOUT, collect, new_session, push

from edge_agent.emulators.archetype import ArchetypeEmulator


async def test_stream_start_heartbeat_results_and_end_on_destroy(
    archetype_http: aiohttp.ClientSession,
) -> None:
    sid = await new_session(archetype_http)
    headers = {"Accept": "text/event-stream"}
    async with archetype_http.get(f"lens/sessions/consumer/{sid}", headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        first = await collect(resp, "sse.stream.start")
        assert first[0]["event"] == "message"
        assert first[0]["data"] == {
            "type": "sse.stream.start",
            "event_data": {"session_id": sid, "reader_id": first[0]["data"]["event_data"]["reader_id"]},
        }
        beat = (await collect(resp, "sse.stream.heartbeat"))[-1]["data"]  # every 0.2 s in these tests
        assert set(beat["event_data"]) == {
            "session_id",
            "session_status",
            "num_messages",
            "num_bytes",
            "message_timeout",
        }
        assert not beat["event_data"]["session_status"].startswith("LensSessionStatus.")

        for value in (1.0, 2.0):
            await push(archetype_http, sid, [[value, value + 1.0]])
        results = [
            f for f in await collect(resp, "inference.result") if f["data"]["type"] == "inference.result"
        ]
        results += [
            f for f in await collect(resp, "inference.result") if f["data"]["type"] == "inference.result"
        ]
        assert len(results) == 2
        assert all(f["event"] == "message" for f in results)
        assert results[0]["data"]["event_data"]["response"][0] == "normal"

        async with archetype_http.post("lens/sessions/destroy", json={"session_id": sid}):
            pass
        rest = await collect(resp, "sse.stream.end")
        assert rest[-1]["data"] == {"type": "sse.stream.end"}
        assert await resp.content.read() == b""  # the server closed the stream

    ids = [int(f["id"]) for f in first + results + rest]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_last_event_id_replays_what_came_after_it(archetype_http: aiohttp.ClientSession) -> None:
    sid = await new_session(archetype_http)
    async with archetype_http.get(f"lens/sessions/consumer/{sid}") as resp:
        await collect(resp, "sse.stream.start")
        for value in (1.0, 2.0, 3.0):
            await push(archetype_http, sid, [[value]])
        seen: list[dict[str, Any]] = []
        for _ in range(3):
            seen += [
                f for f in await collect(resp, "inference.result") if f["data"]["type"] == "inference.result"
            ]
    assert len(seen) == 3

    # Reconnect after the first result: exactly the two later ones come back, then live frames.
    headers = {"Last-Event-ID": seen[0]["id"]}
    async with archetype_http.get(f"lens/sessions/consumer/{sid}", headers=headers) as resp:
        got = await collect(resp, "sse.stream.heartbeat")
    replayed = [f for f in got if f["data"]["type"] == "inference.result"]
    assert [f["id"] for f in replayed] == [seen[1]["id"], seen[2]["id"]]
    assert [f["data"] for f in replayed] == [seen[1]["data"], seen[2]["data"]]

    # Without Last-Event-ID the stream is live-only (research §5.1).
    async with archetype_http.get(f"lens/sessions/consumer/{sid}") as resp:
        live = await collect(resp, "sse.stream.heartbeat")
    assert [f["data"]["type"] for f in live] == ["sse.stream.start", "sse.stream.heartbeat"]


async def test_idle_stream_ends_and_unknown_session_is_404(archetype_settings: Any) -> None:
    async with (
        ArchetypeEmulator(archetype_settings, sse_heartbeat=0.05, sse_idle_timeout=0.3) as emulator,
        aiohttp.ClientSession(
            emulator.base_url + "/",
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        ) as http,
    ):
        sid = await new_session(http)
        async with http.get(f"lens/sessions/consumer/{sid}") as resp:
            got = await collect(resp, "sse.stream.end")
        kinds = [f["data"]["type"] for f in got]
        assert kinds[0] == "sse.stream.start" and kinds[-1] == "sse.stream.end"
        assert "sse.stream.heartbeat" in kinds
        assert emulator.state()["sse_readers"] == 0

        async with http.get("lens/sessions/consumer/lsn-missing") as resp:
            assert resp.status == 404
            assert (await resp.json())["errors"]
