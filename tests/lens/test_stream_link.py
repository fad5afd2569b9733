"""How the session websocket ends (edge_agent/lens/streamer.py), against real peers on loopback: the
emulator refusing a wrong key on the upgrade, and small aiohttp servers that answer the upgrade with
an error status, accept and close, or send a message over the size limit. Each ends in the exception
the lens service acts on: LensAuthError (stop), SessionGone (replace the session), StreamDropped
(reconnect)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.lens import streamer as streamer_module
from edge_agent.lens.errors import LensAuthError
from edge_agent.lens.outputs import OutputHandler
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.streamer import SessionGone, StreamDropped, Streamer, StreamSettings
from edge_agent.lens.windower import Window

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def a_streamer() -> Streamer:
    pacer: WindowPacer[Window] = WindowPacer(10.0, 4, 4)
    settings = StreamSettings(
        connect_timeout=2.0, reply_timeout=5.0, status_interval=60.0, read_interval=60.0
    )
    return Streamer(pacer, OutputHandler("bench", lambda _: None), settings)


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 answering every GET with `handler`; yields its ws:// URL."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}/v0.5/lens/sessions/lsn-1"
    finally:
        await runner.cleanup()


async def test_a_wrong_key_on_the_upgrade_stops_with_an_auth_error(emulator: ArchetypeEmulator) -> None:
    endpoint = emulator.base_url.replace("http://", "ws://") + "/lens/sessions/lsn-unknown"
    with pytest.raises(LensAuthError) as caught:
        await asyncio.wait_for(a_streamer().stream(endpoint, "lsn-unknown", "not-the-key"), 10)
    assert caught.value.status == 401
    assert "not-the-key" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "raised"),
    [
        (401, LensAuthError),
        (403, LensAuthError),
        (404, SessionGone),
        (410, SessionGone),
        (502, StreamDropped),
    ],
)
async def test_an_upgrade_answered_with_an_error_status(status: int, raised: type[Exception]) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "no"}, status=status)

    async with server(refuse) as endpoint:
        with pytest.raises(raised) as caught:
            await asyncio.wait_for(a_streamer().stream(endpoint, "lsn-1", "key-1"), 10)
    if isinstance(caught.value, LensAuthError):
        assert caught.value.status == status
    else:
        assert f"HTTP {status}" in str(caught.value)


async def test_a_closed_port_is_a_dropped_stream() -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response()

    async with server(answer) as endpoint:
        pass  # the server is gone: its port refuses
    with pytest.raises(StreamDropped, match="connect failed"):
        await asyncio.wait_for(a_streamer().stream(endpoint, "lsn-1", "key-1"), 10)


async def test_a_server_that_closes_the_socket_drops_the_stream() -> None:
    async def close_at_once(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    async with server(close_at_once) as endpoint:
        streamer = a_streamer()
        with pytest.raises(StreamDropped, match="closed"):
            await asyncio.wait_for(streamer.stream(endpoint, "lsn-1", "key-1"), 10)
    assert streamer.stats.connects == 1
    assert streamer.stats.drops == 1


async def test_a_message_over_the_size_limit_drops_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamer_module, "MAX_MESSAGE_BYTES", 1024)

    async def send_too_much(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("x" * 4096)
        await ws.receive()  # until the client gives up on the connection
        return ws

    async with server(send_too_much) as endpoint:
        with pytest.raises(StreamDropped, match="connection"):
            await asyncio.wait_for(a_streamer().stream(endpoint, "lsn-1", "key-1"), 10)
