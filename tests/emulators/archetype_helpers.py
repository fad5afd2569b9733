"""SSE and session helpers of the Archetype emulator tests (imported by name: the conftest puts this
folder on sys.path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

TIMEOUT = 5.0


async def frames(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Minimal SSE framing: yields {"id", "event", "data"} per blank-line-terminated frame."""
    frame: dict[str, Any] = {}
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), timeout=TIMEOUT)
        if not raw:
            return
        line = raw.decode().rstrip("\n")
        if not line:
            if frame:
                yield frame
            frame = {}
            continue
        name, _, value = line.partition(": ")
        frame[name] = json.loads(value) if name == "data" else value


async def collect(resp: aiohttp.ClientResponse, until: str, limit: int = 200) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async for frame in frames(resp):
        got.append(frame)
        if frame["data"]["type"] == until or len(got) >= limit:
            break
    return got


async def new_session(http: aiohttp.ClientSession) -> str:
    async with http.post("lens/sessions/create", json={"lens_id": "lns-emulated-machine-state"}) as resp:
        session_id: str = (await resp.json())["session_id"]
        return session_id


async def push(http: aiohttp.ClientSession, session_id: str, values: list[list[float]]) -> None:
    event = {
        "type": "session.update",
        "event_data": {"type": "data.json", "event_data": {"sensor_data": values}},
    }
    async with http.post(
        "lens/sessions/events/process", json={"session_id": session_id, "event": event}
    ) as r:
        assert (await r.json())["event_data"]["accepted"] is True
