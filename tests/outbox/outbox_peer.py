"""A real HTTP peer for the outbox tests (imported by name: conftest puts this folder on sys.path).

`ScriptedPeer` is a tiny item service on 127.0.0.1: `POST /items {"key", "after"}` creates a record,
`GET /items?key=K` finds it. Each key can carry a script of behaviours consumed one per POST (fail
with a status, 429 with Retry-After, hang past the client's timeout after creating, drop the
connection after creating...), so the outbox is tested against real sockets and real failures.
`ItemHandler` is the outbox handler that talks to it, shaped like the Atlas reporter's will be.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from edge_agent.outbox import Job, Json, Retryable, error_for_status, parse_retry_after


@dataclass
class Act:
    """One scripted answer. kind: ok | status | hang_after_create | drop_after_create | delay."""

    kind: str
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def fail(status: int, body: str = "", **headers: str) -> Act:
    return Act("status", status=status, body=body, headers=headers)


@dataclass
class ScriptedPeer:
    records: dict[str, Json] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)
    posts: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, key), every POST
    lookups: Counter[str] = field(default_factory=Counter)
    scripts: dict[str, list[Act]] = field(default_factory=dict)
    default: Act | None = None  # answer when a key has no script left (None = create)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/items", self._create)
        self.app.router.add_get("/items", self._find)
        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.1)
        self.site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self.site is None and self.runner.server is None:
            await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()
        sockets = self.runner.addresses
        self.port = int(sockets[0][1])

    async def refuse(self) -> None:
        """Stop listening (connections are refused) until `start()` again on the same port."""
        if self.site is not None:
            await self.site.stop()
            self.site = None

    async def stop(self) -> None:
        await self.runner.cleanup()

    def script(self, key: str, *acts: Act) -> None:
        self.scripts.setdefault(key, []).extend(acts)

    def _create_record(self, key: str, body: Json) -> Json:
        self.creates[key] += 1
        record = {"id": f"item-{len(self.records) + 1}", "key": key, "after": body.get("after", [])}
        self.records[key] = record
        return record

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        key = str(body["key"])
        self.posts.append((time.monotonic(), key))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            queue = self.scripts.get(key)
            act = queue.pop(0) if queue else self.default
            if act is None or act.kind == "ok":
                return web.json_response(self._create_record(key, body), status=201)
            if act.kind == "delay":
                await asyncio.sleep(act.seconds)
                return web.json_response(self._create_record(key, body), status=201)
            if act.kind == "status":
                return web.Response(status=act.status, text=act.body, headers=act.headers)
            self._create_record(key, body)
            if act.kind == "hang_after_create":
                await asyncio.sleep(act.seconds)
                return web.json_response({"late": True}, status=201)
            if act.kind == "drop_after_create":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=201)
            raise AssertionError(f"unknown act {act.kind}")
        finally:
            self.in_flight -= 1

    async def _find(self, request: web.Request) -> web.Response:
        key = request.query["key"]
        self.lookups[key] += 1
        record = self.records.get(key)
        return web.json_response({"items": [record] if record else [], "count": 1 if record else 0})


class ItemHandler:
    """Outbox handler for kind "item": payload {"key": ...}; sends the ids of its dependencies' results."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self.base_url = base_url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.seen_deps: dict[str, dict[int, Json]] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self.timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        key = str(job.payload["key"])
        self.seen_deps[key] = dict(deps)
        body = {"key": key, "after": [deps[d]["id"] for d in job.deps]}
        try:
            async with self.http.post(self.base_url + "/items", json=body) as resp:
                if resp.status >= 300:
                    text = await resp.text()
                    after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
                    raise error_for_status(resp.status, text, after)
                result: Json = await resp.json()
                return result
        except aiohttp.ClientConnectorError as exc:  # refused: nothing was sent
            raise Retryable(None, None, f"connect: {exc}", outcome_unknown=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # sent, answer lost: outcome unknown
            raise Retryable(None, None, f"{type(exc).__name__}: {exc}") from exc

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        key = str(job.payload["key"])
        try:
            async with self.http.get(self.base_url + "/items", params={"key": key}) as resp:
                if resp.status >= 300:
                    raise error_for_status(resp.status, await resp.text())
                found: dict[str, Any] = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(None, None, f"lookup: {type(exc).__name__}: {exc}") from exc
        items = found["items"]
        return dict(items[0]) if items else None
