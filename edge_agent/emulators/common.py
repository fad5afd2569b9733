"""What both emulators share: bearer auth, run-time fault injection, the admin endpoints and a
server wrapper that can really refuse connections (stop listening) for a while.

Admin endpoints (no auth; the emulators listen on loopback):
  GET    /_emulator/faults     current fault switches
  POST   /_emulator/faults     set some switches (JSON object, partial), answers the new state
  DELETE /_emulator/faults     all switches off
  GET    /_emulator/state      everything the emulator holds, as JSON (for demos and tests)
  POST   /_emulator/refuse     {"seconds": N}: stop listening for N seconds (ECONNREFUSED)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ADMIN_PREFIX = "/_emulator"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FaultSettings(BaseModel):
    """Fault switches. Rates are shares of requests (0..1) on the API paths (never the admin ones)."""

    model_config = ConfigDict(extra="forbid")

    latency: float = Field(0.0, ge=0, description="Seconds added before every API answer.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with `error_status`.")
    error_status: int = Field(503, ge=500, le=599)
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered 429.")
    retry_after: float = Field(1.0, ge=0, description="Retry-After seconds sent with a 429.")
    path_prefix: str = Field("", description="Only requests whose path starts with this are faulted.")
    methods: list[str] = Field(
        default_factory=list, description="Only these methods are faulted (empty = all)."
    )
    upload_bytes_per_sec: float = Field(
        0.0, ge=0, description="Slow uploads: request bodies read at this rate."
    )
    ws_drop_every: float = Field(0.0, ge=0, description="Archetype: close session websockets after N s.")
    session_expire_after: float = Field(0.0, ge=0, description="Archetype: sessions expire N s after create.")
    no_free_runner: bool = Field(False, description="Archetype: session create answers 'no runner' errors.")


class FaultInjector:
    """Holds the switches and applies the HTTP-level ones as an aiohttp middleware."""

    def __init__(self, initial: dict[str, Any] | None = None, seed: int | None = None) -> None:
        self.settings = FaultSettings.model_validate(initial or {})
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(seed)

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        merged = {**self.settings.model_dump(), **changes}
        self.settings = FaultSettings.model_validate(merged)
        return self.settings

    def reset(self) -> None:
        self.settings = FaultSettings()

    def _applies(self, request: web.Request) -> bool:
        s = self.settings
        if request.path.startswith(ADMIN_PREFIX):
            return False
        if s.path_prefix and not request.path.startswith(s.path_prefix):
            return False
        return not (s.methods and request.method.upper() not in {m.upper() for m in s.methods})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._applies(request):
            return await handler(request)
        s = self.settings
        if s.latency > 0:
            self.injected["latency"] += 1
            await asyncio.sleep(s.latency)
        roll = self._rng.random()
        if roll < s.rate_limit_rate:
            self.injected["429"] += 1
            return web.json_response(
                {"detail": "Too Many Requests", "errors": ["rate limited"]},
                status=429,
                headers={"Retry-After": f"{s.retry_after:g}"},
            )
        if roll < s.rate_limit_rate + s.error_rate:
            self.injected[str(s.error_status)] += 1
            return web.json_response(
                {"detail": "injected server error", "errors": ["injected server error"]},
                status=s.error_status,
            )
        if s.upload_bytes_per_sec > 0 and request.can_read_body:
            self.injected["slow_upload"] += 1
            body = await _read_slowly(request, s.upload_bytes_per_sec)
            _replay_body(request, body)
        return await handler(request)


async def _read_slowly(request: web.Request, rate: float) -> bytes:
    chunks = []
    chunk_size = max(1, int(rate / 10))
    while True:
        chunk = await request.content.read(chunk_size)
        if not chunk:
            break
        chunks.append(chunk)
        await asyncio.sleep(len(chunk) / rate)
    return b"".join(chunks)


def _replay_body(request: web.Request, body: bytes) -> None:
    """Make the body read slowly readable again by the handler, however it reads it.

    `.read()`/`.json()` are served from `_read_bytes`, but `.multipart()`/`.post()` read the payload
    stream, which the slow read has drained: give them a fresh stream holding the same bytes.
    """
    replay = StreamReader(request.protocol, limit=max(len(body), 2**16), loop=asyncio.get_running_loop())
    if body:
        replay.feed_data(body)
    replay.feed_eof()
    request._payload = replay
    request._read_bytes = body


def bearer_auth_middleware(
    token: Callable[[], str],
    protected_prefix: str,
    unauthorized: Callable[[], web.Response],
) -> Middleware:
    """401 unless `Authorization: Bearer <token>` on every path under `protected_prefix`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(protected_prefix):
            header = request.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            # compare_digest: the answer time must not tell how much of a guessed token was right.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token().encode()
            ):
                return unauthorized()
        return await handler(request)

    return middleware


def iso_now() -> str:
    """Atlas's timestamp shape: ISO 8601, microseconds, no timezone (UTC)."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


class EmulatorServer:
    """Runs an aiohttp app on host:port and can stop listening for a while (a real outage)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._reopen: asyncio.Task[None] | None = None
        self._refusal: asyncio.Future[None] | None = None
        self.refusing = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()
        self.refusing = False

    async def refuse_for(self, seconds: float) -> None:
        """Close the listening socket and every open connection; listen again after `seconds`."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self.refusing = True
        if self._runner is not None and self._runner.server is not None:
            for proto in list(self._runner.server.connections):
                if proto.transport is not None:
                    proto.transport.abort()
        if self._reopen is not None:
            self._reopen.cancel()
        self._reopen = asyncio.create_task(self._reopen_after(seconds))

    def schedule_refusal(self, seconds: float) -> None:
        """`refuse_for` from synchronous code (a timer); the task is kept so it is not collected."""
        self._refusal = asyncio.ensure_future(self.refuse_for(seconds))

    async def _reopen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._listen()

    async def stop(self) -> None:
        if self._refusal is not None and not self._refusal.done():
            self._refusal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refusal
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def add_admin_routes(
    app: web.Application,
    faults: FaultInjector,
    state: Callable[[], dict[str, Any]],
    server: Callable[[], EmulatorServer | None],
) -> None:
    """Mount the /_emulator endpoints described in the module docstring."""

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(
            {"settings": faults.settings.model_dump(), "injected": dict(faults.injected)}
        )

    async def set_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            settings = faults.update(body)
        except (ValueError, ValidationError) as exc:
            return web.json_response({"detail": str(exc)}, status=422)
        return web.json_response({"settings": settings.model_dump(), "injected": dict(faults.injected)})

    async def clear_faults(request: web.Request) -> web.Response:
        faults.reset()
        return web.json_response(
            {"settings": faults.settings.model_dump(), "injected": dict(faults.injected)}
        )

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state(), dumps=lambda obj: json.dumps(obj, default=str))

    async def refuse(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            seconds = float(body.get("seconds", 0)) if isinstance(body, dict) else 0.0
        except (ValueError, TypeError):
            seconds = 0.0
        srv = server()
        if srv is None or not seconds > 0:
            return web.json_response({"detail": "need a running server and seconds > 0"}, status=422)
        # Answer first, then stop listening: the caller must learn that the outage started.
        asyncio.get_running_loop().call_later(0.05, srv.schedule_refusal, seconds)
        return web.json_response({"refusing_for": seconds})

    app.router.add_get(f"{ADMIN_PREFIX}/faults", get_faults)
    app.router.add_post(f"{ADMIN_PREFIX}/faults", set_faults)
    app.router.add_delete(f"{ADMIN_PREFIX}/faults", clear_faults)
    app.router.add_get(f"{ADMIN_PREFIX}/state", get_state)
    app.router.add_post(f"{ADMIN_PREFIX}/refuse", refuse)
