"""The HTTP server both emulators run: an aiohttp app on host:port that can really refuse connections
(stop listening) for a while, bearer auth on the API paths, and where the admin endpoints live
(`ADMIN_PREFIX`, common.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

ADMIN_PREFIX = "/_emulator"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        # While refusing, the port stays bound (not listening: connections are refused) so that no
        # other server on the machine is given it meanwhile and answers this one's clients.
        self._held: socket.socket | None = None
        self.refusing = False
        # A connection accepted just before a refusal began (its handler not yet registered, so not
        # aborted with the others) must not be served either: an outage serves nothing.
        app.middlewares.insert(0, self._refuse_while_refusing)

    @web.middleware
    async def _refuse_while_refusing(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.refusing:
            if request.transport is not None:
                request.transport.abort()  # the client sees its connection reset, nothing served
            return web.Response(status=503)  # never sent: the transport is gone
        return await handler(request)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        sock, self._held = self._held, None
        if sock is None:
            sock = self._bind()
        self._site = web.SockSite(self._runner, sock)  # asyncio's server calls listen() on it
        await self._site.start()
        self.refusing = False

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        return sock

    async def refuse_for(self, seconds: float) -> None:
        """Close the listening socket and every open connection; listen again after `seconds`. The
        port stays bound meanwhile, so connections to it are refused (nothing listens)."""
        self.refusing = True  # first: a request arriving while the site stops is not served
        if self._site is not None:
            await self._site.stop()
            self._site = None
            self._held = self._bind()
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
        if self._held is not None:
            self._held.close()
            self._held = None
