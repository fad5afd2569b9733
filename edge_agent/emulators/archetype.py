"""Archetype AI lens-service emulator (aiohttp): the REST API under `/v0.5`, the session websocket,
the SSE consumer, the emulated lens model's pacing, and run-time fault injection.

Faithful to shared/api/archetype-lens-sessions-create.md and shared/research/archetype-protocol.md;
the state and rules live in the sans-I/O `archetype_core` and `archetype_session`, this module owns
the REST routes, the runner's timing and the server-side endings; the SSE consumer is
`archetype_sse`, the session websocket `archetype_sockets`.

Routes (Bearer auth on all of them, including the websocket upgrade):
  GET  /v0.5/lens/metadata                     array of lenses (seeded from [emulator] lenses)
  POST /v0.5/lens/register | /lens/delete
  POST /v0.5/lens/sessions/create | /destroy   GET /v0.5/lens/sessions/metadata (org-wide)
  POST /v0.5/lens/sessions/events/process      one event in, its one reply out (REST twin of the WS)
  GET  /v0.5/lens/sessions/consumer/{id}       SSE: sse.stream.start, heartbeats, outputs, sse.stream.end
  GET  /v0.5/lens/sessions/{id}                the session websocket
Admin (no auth, loopback), besides common.py's /_emulator/faults, /state, /refuse:
  POST /_emulator/sessions/{id}/destroy | /expire | /fail     server-side session endings
  POST /_emulator/websockets/drop  [{"session_id": ...}]      cut open session websockets now

Outputs go both to the SSE consumers and to the `session.read` mailboxes by default, so a client can
use either against any lens. The real service routes a lens's outputs to one of the two (§5.1),
chosen by the lens's output_streams: the `lens_routes` fault switch ({lens_id: "sse" | "session_read"})
makes a lens do that. The `clock_offset` switch moves every timestamp the service makes (and Date).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from edge_agent.config import EmulatorSection
from edge_agent.emulators.archetype_core import LensService, NoRunner, RequestError
from edge_agent.emulators.archetype_session import (
    BOTH,
    DESTROYED,
    RUNNING,
    SESSION_READ,
    STALE,
    Event,
    LensSession,
)
from edge_agent.emulators.archetype_sockets import SessionSockets
from edge_agent.emulators.archetype_sse import SseConsumers
from edge_agent.emulators.common import add_admin_routes
from edge_agent.emulators.faults import FaultInjector
from edge_agent.emulators.lens_model import LensModelFactory, band_model_factory
from edge_agent.emulators.server import ADMIN_PREFIX, EmulatorServer, Handler
from edge_agent.logs import get_logger

log = get_logger(__name__)

API_PREFIX = "/v0.5"
# Browsers cannot set headers on a websocket upgrade; the docs let them authenticate with this
# subprotocol instead (§3.1, the unofficial client's exact form).
SUBPROTOCOL_AUTH_PREFIX = "authenticationauthorization.bearer."
HOUSEKEEPING_INTERVAL = 0.05


class ArchetypeEmulator:
    """The lens service on 127.0.0.1. `async with ArchetypeEmulator(settings) as emu: emu.base_url`."""

    def __init__(
        self,
        settings: EmulatorSection,
        *,
        host: str | None = None,
        port: int | None = None,
        seed: int | None = None,
        model_factory: LensModelFactory | None = None,
        sse_heartbeat: float = 5.0,
        sse_idle_timeout: float = 58.0,
    ) -> None:
        self.settings = settings
        self.api_key = settings.api_key.get_secret_value()
        self.faults = FaultInjector(settings.faults, seed=seed)
        self.service = LensService(
            model_factory=model_factory
            or band_model_factory(
                baseline_windows=settings.baseline_windows,
                k=settings.band_k,
                normal_label=settings.normal_label,
                anomaly_label=settings.anomaly_label,
            ),
            runner_slots=settings.runner_slots,
            warmup=settings.warmup,
            buffer_windows=settings.buffer_windows,
            inference_interval=settings.inference_interval,
            seed=seed,
            route_of=lambda lens_id: self.faults.settings.lens_routes.get(lens_id, BOTH),
        )
        now = time.time()
        for lens in settings.lenses:
            self.service.add_lens(lens.lens_id, lens.lens_name, lens.lens_config, now, modifiable=False)

        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._sse = SseConsumers(
            self.service, self.faults, heartbeat=sse_heartbeat, idle_timeout=sse_idle_timeout
        )
        self._sockets = SessionSockets(self.service, self.faults, self._dispatch)
        self._housekeeping: asyncio.Task[None] | None = None

        app = web.Application(middlewares=[self.faults.middleware, self._auth_middleware])
        self._add_api_routes(app)
        add_admin_routes(app, self.faults, self.state, lambda: self.server)
        self._add_admin_routes(app)
        self.server = EmulatorServer(
            app, host=host or settings.host, port=settings.archetype_port if port is None else port
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.server.base_url}{API_PREFIX}"

    async def start(self) -> None:
        await self.server.start()
        self.service.ws_base = f"ws://{self.server.host}:{self.server.port}{API_PREFIX}"
        self._housekeeping = asyncio.create_task(self._housekeep())
        log.info("archetype_emulator_started", base_url=self.base_url)

    async def stop(self) -> None:
        # Long-lived handlers (websockets, SSE) must end first, or the server waits on them.
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for task in self._drivers.values():
            task.cancel()
        self._sse.end_all()
        await self._sockets.close_all()
        pending = [t for t in [self._housekeeping, *self._drivers.values()] if t is not None]
        await asyncio.gather(*pending, return_exceptions=True)
        self._drivers.clear()
        await self.server.stop()
        log.info("archetype_emulator_stopped")

    async def __aenter__(self) -> ArchetypeEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- state and server-side actions -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the emulator holds, JSON-serialisable, never the api key."""
        state = self.service.state(self.faults.now())
        state["faults"] = self.faults.settings.model_dump()
        state["injected"] = dict(self.faults.injected)
        state["requests"] = dict(self.faults.requests)
        state["open_websockets"] = len(self._sockets)
        state["sse_readers"] = self._sse.count()
        return state

    def dump_state(self, path: Path) -> None:
        """Write `state()` as JSON (for a demo to show what the agent created)."""
        path.write_text(json.dumps(self.state(), indent=2, default=str))

    async def destroy_session_server_side(self, session_id: str) -> None:
        self._end(session_id, DESTROYED)

    async def expire_session(self, session_id: str) -> None:
        self._end(session_id, STALE)

    async def fail_session(self, session_id: str) -> None:
        if self.service.fail_session(session_id, self.faults.now()) is not None:
            self._stop_outputs(session_id)

    def drop_websockets(self, session_id: str | None = None) -> int:
        return self._sockets.drop_session(session_id)

    def _end(self, session_id: str, status: str) -> LensSession | None:
        session = self.service.sessions.get(session_id)
        was_live = session is not None and session.live
        session = self.service.end_session(session_id, status, self.faults.now())
        if was_live:
            self._stop_outputs(session_id)
            log.info("lens_session_ended", session_id=session_id, status=status)
        return session

    def _stop_outputs(self, session_id: str) -> None:
        task = self._drivers.pop(session_id, None)
        if task is not None:
            task.cancel()
        self._wakeups.pop(session_id, None)
        self._sse.end(session_id)

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            settings = self.faults.settings
            for session_id in self.service.due_to_expire(self.faults.now(), settings.session_expire_after):
                self.faults.injected["session_expire"] += 1
                self._end(session_id, STALE)
            if settings.ws_drop_every > 0:
                self._sockets.drop_older_than(settings.ws_drop_every)

    # -- the emulated runner: warm-up, then one window per inference_interval ----------------------------

    def _start_driver(self, session: LensSession) -> None:
        self._wakeups[session.session_id] = asyncio.Event()
        self._drivers[session.session_id] = asyncio.create_task(self._drive(session))

    async def _drive(self, session: LensSession) -> None:
        await asyncio.sleep(max(0.0, session.ready_at - self.faults.now()))
        session.refresh(self.faults.now())
        wakeup = self._wakeups[session.session_id]
        interval = self.service.inference_interval
        while session.status == RUNNING:
            if not session.buffer:
                wakeup.clear()
                await wakeup.wait()
                continue
            # The model "takes" one interval per window: that is the ~1 inference/s pace (§7).
            await asyncio.sleep(interval)
            output = session.infer(self.faults.now(), query_time_sec=interval)
            if output is not None and session.route() != SESSION_READ:
                self._sse.publish(session.session_id, output)

    # -- auth --------------------------------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX + "/") and not self._authorised(request):
            return web.json_response(
                {"errors": [{"code": "unauthorized", "message": "Missing or invalid API key"}]}, status=401
            )
        return await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        # compare_digest: the answer time must not tell how much of a guessed key was right.
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.api_key.encode()):
            return True
        expected = (SUBPROTOCOL_AUTH_PREFIX + self.api_key).encode()
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        return any(hmac.compare_digest(p.strip().encode(), expected) for p in offered.split(","))

    # -- REST --------------------------------------------------------------------------------------------

    def _add_api_routes(self, app: web.Application) -> None:
        p = API_PREFIX
        app.router.add_get(f"{p}/lens/metadata", self._lens_metadata)
        app.router.add_post(f"{p}/lens/register", self._lens_register)
        app.router.add_post(f"{p}/lens/delete", self._lens_delete)
        app.router.add_post(f"{p}/lens/sessions/create", self._session_create)
        app.router.add_post(f"{p}/lens/sessions/destroy", self._session_destroy)
        app.router.add_get(f"{p}/lens/sessions/metadata", self._sessions_metadata)
        app.router.add_post(f"{p}/lens/sessions/events/process", self._events_process)
        app.router.add_get(f"{p}/lens/sessions/consumer/{{session_id}}", self._sse.handle)
        app.router.add_get(f"{p}/lens/sessions/{{session_id}}", self._sockets.handle)

    async def _lens_metadata(self, request: web.Request) -> web.Response:
        try:
            shard, per_shard = _shard_params(request)
            lenses = self.service.lens_metadata(shard, per_shard, request.query.get("lens_id", ""))
        except RequestError as exc:
            return _error(exc)
        return web.json_response(lenses)

    async def _lens_register(self, request: web.Request) -> web.Response:
        try:
            lens = self.service.register_lens(await _json_body(request), self.faults.now())
        except RequestError as exc:
            return _error(exc)
        return web.json_response(lens.metadata())

    async def _lens_delete(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.service.delete_lens(await _json_body(request)))
        except RequestError as exc:
            return _error(exc)

    async def _session_create(self, request: web.Request) -> web.Response:
        try:
            faults = self.faults.settings
            session = self.service.create_session(
                await _json_body(request),
                self.faults.now(),
                no_free_runner=faults.no_free_runner,
                runner_error=faults.runner_error_text,
            )
        except RequestError as exc:
            return _error(exc)
        except NoRunner as exc:
            return web.json_response({"errors": [str(exc)]})
        self._start_driver(session)
        log.info("lens_session_created", session_id=session.session_id, lens_id=session.lens.lens_id)
        # The documented response echoes the caller's key (D-create); only this reply carries it.
        record = session.record()
        return web.json_response({"org_id": record.pop("org_id"), "api_key": self.api_key, **record})

    async def _session_destroy(self, request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            session_id = body.get("session_id") if isinstance(body, dict) else None
            if not isinstance(session_id, str) or not session_id:
                raise RequestError(400, "invalid_request", "session_id is required")
            session = self._end(session_id, DESTROYED)
            if session is None:
                raise RequestError(404, "session_not_found", f"Unknown session id: {session_id}")
        except RequestError as exc:
            return _error(exc)
        return web.json_response(session.destroy_item(self.faults.now()))

    async def _sessions_metadata(self, request: web.Request) -> web.Response:
        try:
            shard, per_shard = _shard_params(request)
        except RequestError as exc:
            return _error(exc)
        items = self.service.sessions_metadata(
            shard, per_shard, request.query.get("session_id", ""), self.faults.now()
        )
        return web.json_response(items)

    async def _events_process(self, request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            session_id = body.get("session_id") if isinstance(body, dict) else None
            if not isinstance(session_id, str) or not session_id or "event" not in body:
                raise RequestError(400, "invalid_request", 'body must be {"session_id": ..., "event": {...}}')
        except RequestError as exc:
            return _error(exc)
        return web.json_response(self._dispatch(session_id, body["event"]))

    def _dispatch(self, session_id: str, event: Any) -> Event:
        session = self.service.sessions.get(session_id)
        was_live = session is not None and session.live
        reply = self.service.handle_event(session_id, event, self.faults.now())
        if session is not None and was_live:
            if not session.live:
                self._stop_outputs(session_id)
                log.info("lens_session_ended", session_id=session_id, status=session.status, by="event")
            elif isinstance(event, dict) and event.get("type") == "session.update":
                wakeup = self._wakeups.get(session_id)
                if wakeup is not None:
                    wakeup.set()
        return reply

    # -- admin -------------------------------------------------------------------------------------------

    def _add_admin_routes(self, app: web.Application) -> None:
        async def end(request: web.Request) -> web.Response:
            session_id = request.match_info["session_id"]
            action = request.match_info["action"]
            if session_id not in self.service.sessions:
                return web.json_response({"detail": f"Unknown session id: {session_id}"}, status=404)
            if action == "destroy":
                await self.destroy_session_server_side(session_id)
            elif action == "expire":
                await self.expire_session(session_id)
            else:
                await self.fail_session(session_id)
            self.faults.injected[f"session_{action}"] += 1
            return web.json_response(self.service.sessions[session_id].state(self.faults.now()))

        async def drop(request: web.Request) -> web.Response:
            body: Any = {}
            if request.can_read_body:
                with contextlib.suppress(ValueError):
                    body = json.loads(await request.text())
            session_id = body.get("session_id") if isinstance(body, dict) else None
            return web.json_response({"dropped": self.drop_websockets(session_id)})

        app.router.add_post(f"{ADMIN_PREFIX}/sessions/{{session_id}}/{{action:destroy|expire|fail}}", end)
        app.router.add_post(f"{ADMIN_PREFIX}/websockets/drop", drop)


def _error(exc: RequestError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


async def _json_body(request: web.Request) -> Any:
    # The official client posts JSON without a Content-Type (§1): parse whatever was sent.
    text = await request.text()
    try:
        return json.loads(text) if text else {}
    except ValueError as exc:
        raise RequestError(400, "invalid_json", f"request body is not JSON: {exc}") from None


def _shard_params(request: web.Request) -> tuple[int, int]:
    try:
        return (
            int(request.query.get("shard_index", "-1")),
            int(request.query.get("max_items_per_shard", "-1")),
        )
    except ValueError:
        raise RequestError(
            400, "invalid_request", "shard_index/max_items_per_shard must be integers"
        ) from None
