"""TLS as the agent does it (edge_agent/tls.py), against real servers on loopback with certificates of a
test CA (trustme): the transport and the lens's websocket verify with the process's one context, made
from the CA settings in force (SSL_CERT_FILE here, as a lab with its own CA would set it), refuse a
server whose certificate no trusted CA signed, and the `edge-agent` process imports aiohttp without
the CA bundle aiohttp would load for a context the agent never uses."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from edge_agent.http import Failure, RetryPolicy, Transport
from edge_agent.lens.outputs import OutputHandler
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.streamer import StreamDropped, Streamer, StreamSettings
from edge_agent.lens.windower import Window
from edge_agent.tls import client_context

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[trustme.CA]:
    """A CA the agent is told to trust, as a lab's own would be: its PEM is SSL_CERT_FILE."""
    ca = trustme.CA()
    pem = tmp_path / "lab-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-ca-dir"))  # nothing else is trusted
    yield ca


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@asynccontextmanager
async def https_server(ca: trustme.CA, seen: list[str]) -> AsyncIterator[int]:
    """An HTTPS server on 127.0.0.1 with a certificate `ca` signed: /api/ping answers JSON, /ws
    accepts a websocket and closes it; every request's path goes to `seen`. Yields its port."""

    async def ping(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.json_response({"pong": True})

    async def websocket(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/ping", ping)
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(ca))
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def https_transport(port: int) -> Transport:
    return Transport(
        f"https://127.0.0.1:{port}/api", "token-1", service="test", retry=RetryPolicy(attempts=1)
    )


async def test_https_is_verified_with_the_ca_in_force_and_an_unknown_signer_is_refused(
    lab_ca: trustme.CA,
) -> None:
    seen: list[str] = []
    async with https_server(lab_ca, seen) as port:
        http = https_transport(port)
        try:
            assert (await http.request("GET", "/ping")).body == {"pong": True}
        finally:
            await http.close()
    assert seen == ["/api/ping"]

    stranger = trustme.CA()  # signs the next server's certificate; nobody trusts it
    async with https_server(stranger, seen) as port:
        http = https_transport(port)
        try:
            with pytest.raises(Failure) as refused:
                await http.request("GET", "/ping")
        finally:
            await http.close()
    # Retried like any connect failure, and says what a person can do about it.
    assert refused.value.retryable and "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert "not trusted" in str(refused.value) and "SSL_CERT_FILE" in str(refused.value)
    assert seen == ["/api/ping"]  # the handshake failed: nothing reached the unverified server


def a_streamer() -> Streamer:
    pacer: WindowPacer[Window] = WindowPacer(10.0, 4, 4)
    settings = StreamSettings(
        connect_timeout=2.0, reply_timeout=5.0, status_interval=60.0, read_interval=60.0
    )
    return Streamer(pacer, OutputHandler("bench", lambda _: None), settings)


async def test_the_lens_websocket_over_wss_is_verified_the_same_way(lab_ca: trustme.CA) -> None:
    seen: list[str] = []
    async with https_server(lab_ca, seen) as port:
        with pytest.raises(StreamDropped):  # the server closes at once, after the upgrade
            await asyncio.wait_for(a_streamer().stream(f"wss://127.0.0.1:{port}/ws", "lsn-1", "key-1"), 10)
    assert seen == ["/ws"]  # the TLS handshake and the upgrade went through

    async with https_server(trustme.CA(), seen) as port:
        with pytest.raises(StreamDropped) as refused:
            await asyncio.wait_for(a_streamer().stream(f"wss://127.0.0.1:{port}/ws", "lsn-1", "key-1"), 10)
    assert "certificate" in str(refused.value).lower()
    assert seen == ["/ws"]


async def test_one_context_per_ca_settings(lab_ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    first, again = await client_context(), await client_context()
    assert first is again
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname
    assert first.cert_store_stats()["x509_ca"] == 1  # the lab's CA, read from SSL_CERT_FILE
    monkeypatch.setenv("SSL_CERT_DIR", os.devnull)
    assert await client_context() is not first  # other CA settings: a context of their own


# What a process holds in aiohttp's own verified context after importing aiohttp the way it does.
_CERTS_IN_AIOHTTP_CONTEXT = """
import json, os, sys
if sys.argv[1] == "cli":
    from edge_agent import cli
    cli.main(["version"])
import aiohttp.connector
print(json.dumps([aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"],
                  os.environ.get("SSL_CERT_FILE")]))
"""


@pytest.mark.parametrize("how", ["cli", "library"])
def test_the_edge_agent_process_imports_aiohttp_without_a_ca_bundle(lab_ca: trustme.CA, how: str) -> None:
    """`edge-agent` (cli.main) imports aiohttp with an empty default CA file, and puts SSL_CERT_FILE
    back; a process that imports aiohttp otherwise (a test run with the pytest plugin) keeps aiohttp's
    default, here the lab CA."""
    done = subprocess.run(
        [sys.executable, "-c", _CERTS_IN_AIOHTTP_CONTEXT, how],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=True,
    )  # fmt: skip
    certs, ca_file = json.loads(done.stdout.splitlines()[-1])
    assert certs == (0 if how == "cli" else 1)
    assert ca_file == os.environ["SSL_CERT_FILE"]
