"""What both emulators share: the admin endpoints and Atlas's timestamps here; run-time fault
injection in faults.py; the server that can really refuse connections (stop listening) for a while,
and bearer auth, in server.py (their names are re-exported here).

Admin endpoints (no auth; the emulators listen on loopback):
  GET    /_emulator/faults     current fault switches
  POST   /_emulator/faults     set some switches (JSON object, partial), answers the new state
  DELETE /_emulator/faults     all switches off
  GET    /_emulator/state      everything the emulator holds, as JSON (for demos and tests)
  POST   /_emulator/refuse     {"seconds": N}: stop listening for N seconds (ECONNREFUSED)

The fault switches and what each does: `FaultSettings` (faults.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from edge_agent.emulators.faults import FaultInjector as FaultInjector
from edge_agent.emulators.faults import FaultSettings as FaultSettings
from edge_agent.emulators.server import ADMIN_PREFIX as ADMIN_PREFIX
from edge_agent.emulators.server import EmulatorServer as EmulatorServer
from edge_agent.emulators.server import Handler as Handler
from edge_agent.emulators.server import bearer_auth_middleware as bearer_auth_middleware


def iso_now() -> str:
    """Atlas's timestamp shape: ISO 8601, microseconds, no timezone (UTC)."""
    return iso_at(time.time())


def iso_at(unix: float) -> str:
    """`unix` in Atlas's timestamp shape."""
    return datetime.fromtimestamp(unix, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def add_admin_routes(
    app: web.Application,
    faults: FaultInjector,
    state: Callable[[], dict[str, Any]],
    server: Callable[[], EmulatorServer | None],
) -> None:
    """Mount the /_emulator endpoints described in the module docstring."""

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "settings": faults.settings.model_dump(),
                "injected": dict(faults.injected),
                "requests": dict(faults.requests),
            }
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
            {
                "settings": faults.settings.model_dump(),
                "injected": dict(faults.injected),
                "requests": dict(faults.requests),
            }
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
