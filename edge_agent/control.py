"""The local control API (aiohttp): liveness, readiness, status, Prometheus metrics, and step
start/end for a test sequencer.

Loopback only by default. Every request first passes `control_guard` (a foreign `Host` or `Origin` is
403, a POST that is not `application/json` is 415: what a web page on the bench PC could send). With
a token configured, every route but `/healthz` then needs `Authorization: Bearer <token>` (liveness
stays open so that a container health check needs no secret). The agent's state comes from a
`ControlBackend` the supervisor implements; this module only speaks HTTP. Every error is a JSON
`{"error": ...}`; a malformed request is a 4xx with the reason, never a 500.

    GET  /healthz       200 {"status": "ok"} while the process serves requests
    GET  /readyz        200 {"ready": true, "checks": {...}} or 503 with the checks that fail
    GET  /status        200 the backend's status document
    GET  /metrics       200 Prometheus text exposition
    POST /steps/start   {"name": str, "card": str | null}            -> 200 backend's answer
    POST /steps/end     {"name": str, "verdict": "PASS"|"FAIL"|"ERROR"|"SKIP"|null, "note": str | null}
                        -> 200 backend's answer, with the step's `execution_status` and `exception`
    POST /runs/end      {"note": str | null}: end the test run (the agent goes on; the next step
                        begins the next run) and ask Atlas for its report -> 200 backend's answer
    GET  /, /live/...   the live bench page (edge_agent.live.server), when the agent adds it
                        400 not JSON / not UTF-8, 413 larger than MAX_BODY_BYTES,
                        422 JSON of the wrong shape (with pydantic's detail), 409 a step-state conflict
"""

from __future__ import annotations

import errno
import hmac
import inspect
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.config_errors import FieldError
from edge_agent.control_guard import HostPolicy, guard_middleware, refuse
from edge_agent.logs import get_logger
from edge_agent.metrics import Metrics

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_NOTE_CHARS = 500  # a step's whole note is at most 2000 (steps/outcome.py); this leads it
OPEN_PATHS = frozenset({"/healthz"})

Readiness = tuple[bool, Mapping[str, str]]
_T = TypeVar("_T")


class StepStateError(Exception):
    """A step request that contradicts the current state (end of a step that is not running, start
    of one already running): the backend raises it, the API answers 409 with its message."""


class ControlBackend(Protocol):
    """What the control API asks of the agent. `status` and `readiness` may be plain or async."""

    def status(self) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]: ...

    def readiness(self) -> Readiness | Awaitable[Readiness]:
        """(ready, checks): each check name maps to "ok" or to why it is not ok."""
        ...

    async def start_step(self, name: str, card: str | None) -> Mapping[str, Any]: ...

    async def end_step(self, name: str, verdict: str | None, note: str | None) -> Mapping[str, Any]: ...

    async def end_run(self, note: str | None) -> Mapping[str, Any]: ...


class StepStart(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)  # Atlas step titles are at most 100 characters
    card: str | None = Field(None, min_length=1)


class StepEnd(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    # ERROR: the test itself broke (fails the step); SKIP: not carried out (steps/outcome.py).
    verdict: Literal["PASS", "FAIL", "ERROR", "SKIP"] | None = None
    # What the sequencer says of the step (a failure's message, a skip's reason): leads its note.
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


class RunEnd(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


BACKEND_KEY = web.AppKey("backend", ControlBackend)
METRICS_KEY = web.AppKey("metrics", Metrics)
PROTECTED_KEY = web.AppKey("protected", bool)  # a bearer token guards the app


async def _maybe_await(value: _T | Awaitable[_T]) -> _T:
    if inspect.isawaitable(value):
        return await value
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda obj: json.dumps(obj, default=str))


def _bearer_middleware(
    token: str, open_paths: frozenset[str] = OPEN_PATHS
) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no token guessing by timing
            return _json({"error": "unauthorized"}, status=401)
        return await handler(request)

    return check


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    ready, checks = await _maybe_await(request.app[BACKEND_KEY].readiness())
    return _json({"ready": ready, "checks": dict(checks)}, status=200 if ready else 503)


async def _status(request: web.Request) -> web.Response:
    return _json(dict(await _maybe_await(request.app[BACKEND_KEY].status())))


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    await metrics.refresh()
    body, content_type = metrics.exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel | web.Response:
    """The body as `model`, or the 4xx that says why not. The content type was checked by the guard.
    pydantic parses the bytes itself (`model_validate_json`): its parser has a nesting limit, so a
    body of 10,000 nested arrays is a 400 like any other malformed JSON, not a RecursionError."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _too_large()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past client_max_size
        return _too_large()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _json({"error": f"body is not UTF-8 (byte {exc.start})", "detail": []}, status=400)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        detail = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(item["type"] == "json_invalid" for item in detail):
            return _json({"error": "body is not JSON", "detail": detail}, status=400)
        return _json({"error": "invalid request body", "detail": detail}, status=422)


def _too_large() -> web.Response:
    response = _json({"error": f"body larger than {MAX_BODY_BYTES} bytes", "detail": []}, status=413)
    response.force_close()  # do not read the rest of a body we refuse
    return response


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413) as JSON like ours; an unexpected exception is a 500 whose
    answer says nothing of it (the log has it)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return refuse(exc.status, exc.reason)
    except Exception as exc:
        log.error("control_request_failed", method=request.method, path=request.path, exc_info=exc)
        return refuse(500, "internal error")


async def _step_call(
    request: web.Request, model: type[StepStart] | type[StepEnd] | type[RunEnd]
) -> web.Response:
    """Validate the body (422), hand it to the backend, answer its result or 409 on a step conflict."""
    body = await _body(request, model)
    if isinstance(body, web.Response):
        return body
    backend = request.app[BACKEND_KEY]
    try:
        if isinstance(body, StepStart):
            answer = await backend.start_step(body.name, body.card)
        elif isinstance(body, StepEnd):
            answer = await backend.end_step(body.name, body.verdict, body.note)
        else:
            assert isinstance(body, RunEnd)
            answer = await backend.end_run(body.note)
    except StepStateError as exc:
        return _json({"error": str(exc)}, status=409)
    return _json(dict(answer))


async def _step_start(request: web.Request) -> web.Response:
    return await _step_call(request, StepStart)


async def _step_end(request: web.Request) -> web.Response:
    return await _step_call(request, StepEnd)


async def _run_end(request: web.Request) -> web.Response:
    return await _step_call(request, RunEnd)


def create_control_app(
    backend: ControlBackend,
    metrics: Metrics,
    token: str | None,
    *,
    listen: str = "127.0.0.1:8321",
    allowed_hosts: Iterable[str] = (),
    add_routes: Callable[[web.Application], None] | None = None,
    open_paths: Iterable[str] = (),
) -> web.Application:
    """`listen` and `allowed_hosts` name the hosts a request's `Host` may carry (see control_guard).
    `add_routes` adds more routes (the live page); of those, `open_paths` are served without the token
    (a page shell and its scripts, which carry no data: a browser cannot send a header when it
    navigates, so the page asks for the token and sends it on its own requests)."""
    policy = HostPolicy.of(parse_listen(listen)[0], allowed_hosts)
    middlewares: list[Middleware] = [_json_errors, guard_middleware(policy)]
    if token:
        middlewares.append(_bearer_middleware(token, OPEN_PATHS | frozenset(open_paths)))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[BACKEND_KEY] = backend
    app[METRICS_KEY] = metrics
    app[PROTECTED_KEY] = bool(token)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/steps/start", _step_start)
    app.router.add_post("/steps/end", _step_end)
    app.router.add_post("/runs/end", _run_end)
    if add_routes is not None:
        add_routes(app)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` too) -> (host, port). Port 0 picks a free port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlServer:
    """Serves a control app on `listen` until `stop()`. `bind()` takes the port (the agent does it
    before anything else starts, so that a busy port is a clear config error and not a crash halfway
    through start-up); `start()` binds if that was not done and serves."""

    def __init__(self, app: web.Application, listen: str = "127.0.0.1:8321") -> None:
        self.app = app
        self.listen = listen
        self.host, _ = parse_listen(listen)
        self._sockets: list[socket.socket] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def bind(self) -> None:
        """Listen on every address `host` resolves to; `FieldError("control.listen", ...)` if not."""
        if not self._sockets:
            self._sockets = bind_listen(self.listen)
            self.port = self._sockets[0].getsockname()[1]

    async def start(self) -> None:
        if not is_loopback(self.host) and not self.app.get(PROTECTED_KEY, False):
            log.warning("control_api_exposed_without_token", host=self.host)
        self.bind()
        # lingering_time=0: the body of a refused request (403, 413, 415) is not read to its end; the
        # connection closes after the answer, so no page can keep the API reading megabytes it refuses.
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, lingering_time=0)
        await runner.setup()
        try:
            for sock in self._sockets:
                await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("control_api_listening", host=self.host, port=self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for sock in self._sockets:
            sock.close()
        self._sockets = []


def bind_listen(listen: str) -> list[socket.socket]:
    """Listening sockets on every address the host of `listen` resolves to (port 0: the port the first
    one got, for all); `FieldError("control.listen", reason)` when that cannot be done."""
    host, port = parse_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FieldError("control.listen", f"cannot resolve {host!r}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(infos):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            for taken in sockets:
                taken.close()
            raise FieldError("control.listen", _bind_failure(listen, exc)) from None
        port = port or sock.getsockname()[1]
        sockets.append(sock)
    return sockets


def check_listen(listen: str) -> None:
    """`FieldError` unless `listen` could be bound now (a config reload asks before it stops the
    running agent, so that a reload onto a taken port is refused instead of ending the process)."""
    for sock in bind_listen(listen):
        sock.close()


def _bind_failure(listen: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{listen} is already in use (another edge-agent, or another program, listens there)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {listen}: not an address of this machine"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot listen on {listen}: not allowed (ports below 1024 need privileges)"
    return f"cannot listen on {listen}: {exc.strerror}"
