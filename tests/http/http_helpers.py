"""Helpers of the transport tests (imported by name: the conftest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """Every request that reached a server: method, path, headers, body."""

    requests: list[Seen] = field(default_factory=list)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # A multipart body is left unread: the handler reads it as a stream, which cannot be replayed.
        body = b"" if request.content_type.startswith("multipart/") else await request.read()
        self.requests.append(
            Seen(request.method, request.path, request.query_string, dict(request.headers), body)
        )
        return await handler(request)


@asynccontextmanager
async def serve(routes: list[tuple[str, str, Handler]]) -> AsyncIterator[tuple[str, Recorder]]:
    """`async with serve([("GET", "/x", handler)]) as (base_url, recorder)`: on 127.0.0.1, any port."""
    recorder = Recorder()
    app = web.Application(middlewares=[recorder.middleware])
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", recorder
    finally:
        await server.close()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=status, headers=headers)

    return handler
