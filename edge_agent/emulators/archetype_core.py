"""Sans-I/O core of the Archetype lens emulator: the service of one org, with its lenses, sessions
and runner slots, and the one-reply-per-event dispatcher. One session (its window buffer, inference
and output mailboxes) is `archetype_session`.

No sockets and no clocks: every method that depends on time takes `now` (Unix seconds). The
aiohttp adapter (`archetype.py`) owns the timing (warm-up, inference pace, expiry) and the I/O.

Sources for shapes and rules are in shared/research/archetype-protocol.md (§ numbers below);
what no source settles is marked INFERRED.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from edge_agent.emulators.archetype_session import (
    BOTH,
    DEFAULT_LENS_CONFIG,
    DEFAULT_TTL_SEC,
    DESTROYED,
    FAILED,
    NO_RUNNER_ERROR,
    SLOT_HOLDING,
    Event,
    Lens,
    LensSession,
    Route,
    error_event,
    unknown_session,
)
from edge_agent.emulators.lens_model import LensModelFactory


class RequestError(Exception):
    """A REST request the service refuses: HTTP status + the `errors` array."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        # Items are objects with a `code` (the official client's ApiError reads error["code"], §2.4).
        return {"errors": [{"code": self.code, "message": self.message}]}


class LensService:
    """Everything the lens service holds for one org, driven by calls that pass the time in."""

    def __init__(
        self,
        *,
        model_factory: LensModelFactory,
        runner_slots: int = 2,
        warmup: float = 2.0,
        buffer_windows: int = 20,
        inference_interval: float = 1.0,
        retain_outputs: int = 1000,
        org_id: str = "emulated-org",
        seed: int | None = None,
        route_of: Callable[[str], Route] | None = None,
    ) -> None:
        self.model_factory = model_factory
        self.runner_slots = runner_slots
        self.warmup = warmup
        self.buffer_windows = buffer_windows
        self.inference_interval = inference_interval
        self.retain_outputs = retain_outputs
        self.org_id = org_id
        self.ws_base = "ws://127.0.0.1:0/v0.5"  # set by the adapter once it knows its port
        self.lenses: dict[str, Lens] = {}
        self.sessions: dict[str, LensSession] = {}
        self._rng = random.Random(seed)
        self.route_of = route_of or (lambda lens_id: BOTH)

    # -- lenses ------------------------------------------------------------------------------------

    def add_lens(
        self, lens_id: str, lens_name: str, lens_config: dict[str, Any], now: float, modifiable: bool
    ) -> Lens:
        lens = Lens(lens_id, lens_name, lens_config or dict(DEFAULT_LENS_CONFIG), modifiable, now)
        self.lenses[lens_id] = lens
        return lens

    def register_lens(self, body: Any, now: float) -> Lens:
        """`POST /lens/register` body: `{"lens_config": {"lens_name": ..., "lens_config": {...}}}` (§2.1)."""
        outer = body.get("lens_config") if isinstance(body, dict) else None
        name = outer.get("lens_name") if isinstance(outer, dict) else None
        if not isinstance(outer, dict) or not isinstance(name, str) or not name.strip():
            raise RequestError(400, "invalid_request", "lens_config.lens_name is required")
        config = outer.get("lens_config", {})
        if not isinstance(config, dict):
            raise RequestError(400, "invalid_request", "lens_config.lens_config must be an object")
        # The id embeds the first 16 characters of the name: clients find their own lenses and sessions
        # by the prefix "lns-" + name[:16] (§1). Lower-case/hyphens as in "lns-test-lens-b2ba0058": INFERRED.
        slug = name[:16].lower().replace(" ", "-")
        lens_id = f"lns-{slug}-{self._rng.getrandbits(32):08x}"
        return self.add_lens(lens_id, name, config, now, modifiable=True)

    def delete_lens(self, body: Any) -> dict[str, Any]:
        lens_id = body.get("lens_id") if isinstance(body, dict) else None
        if not isinstance(lens_id, str) or not lens_id:
            raise RequestError(400, "invalid_request", "lens_id is required")
        if self.lenses.pop(lens_id, None) is None:
            raise RequestError(404, "lens_not_found", f"Unknown lens id: {lens_id}")
        return {"is_valid": True, "lens_id": lens_id, "errors": []}

    def lens_metadata(self, shard_index: int, max_items: int, lens_id: str) -> list[dict[str, Any]]:
        lenses = [lens for lens in self.lenses.values() if not lens_id or lens.lens_id == lens_id]
        return [lens.metadata() for lens in _shard(lenses, shard_index, max_items)]

    # -- sessions ----------------------------------------------------------------------------------

    @property
    def slots_in_use(self) -> int:
        return sum(1 for s in self.sessions.values() if s.status in SLOT_HOLDING)

    def create_session(
        self, body: Any, now: float, *, no_free_runner: bool = False, runner_error: str = ""
    ) -> LensSession:
        """RequestError for a bad request; NoRunner when every runner slot is held (the adapter
        answers that 200 `{"errors": [...]}`: the official client checks `"errors" in response` on
        a 2xx, §2.2)."""
        lens_id = body.get("lens_id") if isinstance(body, dict) else None
        if not isinstance(lens_id, str) or not lens_id:
            raise RequestError(400, "invalid_request", "lens_id is required")
        lens = self.lenses.get(lens_id)
        if lens is None:
            raise RequestError(404, "lens_not_found", f"Unknown lens id: {lens_id}")
        used = {s.runner for s in self.sessions.values() if s.status in SLOT_HOLDING}
        free = [i for i in range(self.runner_slots) if _runner_name(i) not in used]
        if no_free_runner or not free:
            raise NoRunner(runner_error or NO_RUNNER_ERROR)
        stamp = time.strftime("%y%m%d", time.gmtime(now))
        session_id = f"lsn-{stamp}{self._rng.getrandbits(96):024x}"
        session = LensSession(
            session_id=session_id,
            lens=lens,
            org_id=self.org_id,
            runner=_runner_name(free[0]),
            endpoint=f"{self.ws_base}/lens/sessions/{session_id}",
            registration_timestamp=now,
            ready_at=now + self.warmup,
            model=self.model_factory(),
            buffer_windows=self.buffer_windows,
            retain_outputs=self.retain_outputs,
            last_event_timestamp=now,
            last_update_timestamp=now,
            route=lambda: self.route_of(lens.lens_id),
        )
        self.sessions[session_id] = session
        return session

    def live_session(self, session_id: str, now: float) -> LensSession | None:
        session = self.sessions.get(session_id)
        if session is None or not session.live:
            return None
        session.refresh(now)
        return session

    def end_session(self, session_id: str, status: str, now: float) -> LensSession | None:
        """Destroy/expire a session; frees its slot. None if unknown; a no-op if already ended."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        if session.live:
            session.refresh(now)
            session.terminate(status, now)
        return session

    def fail_session(self, session_id: str, now: float) -> LensSession | None:
        session = self.live_session(session_id, now)
        if session is not None:
            session.status = FAILED
            session.last_update_timestamp = now
            session.buffer.clear()
        return session

    def due_to_expire(self, now: float, expire_after: float) -> list[str]:
        """Sessions past the fault switch `session_expire_after` (age) or the inactivity TTL."""
        due = []
        for session in self.sessions.values():
            if not session.live:
                continue
            aged = expire_after > 0 and now - session.registration_timestamp >= expire_after
            idle = now - session.last_event_timestamp >= DEFAULT_TTL_SEC
            if aged or idle:
                due.append(session.session_id)
        return due

    def sessions_metadata(self, shard_index: int, max_items: int, session_id: str, now: float) -> list[Any]:
        """Org-wide list of sessions that still exist (ended ones are gone from the service)."""
        live = []
        for session in self.sessions.values():
            if session.live and (not session_id or session.session_id == session_id):
                session.refresh(now)
                live.append(session)
        return [s.metadata_item(now) for s in _shard(live, shard_index, max_items)]

    # -- events (WS and POST /lens/sessions/events/process share this) ------------------------------

    def handle_event(self, session_id: str, event: Any, now: float) -> Event:
        """Exactly one reply per event (§3.3)."""
        if not isinstance(event, dict):
            return error_event("An event must be a JSON object with a `type`")
        kind = event.get("type")
        if not isinstance(kind, str) or not kind:
            return error_event("An event must have a string `type`")
        session = self.live_session(session_id, now)
        if session is None:
            return unknown_session(session_id)
        session.counts.events += 1
        session.last_event_timestamp = now
        data = event.get("event_data")
        if kind == "session.status":
            # The one event whose reply is the bare session record, not `<event>.response` (§3.3).
            return session.record()
        if kind == "session.update":
            return self._update(session, data)
        if kind == "session.read":
            client_id = data.get("client_id") if isinstance(data, dict) else None
            if not isinstance(client_id, str) or not client_id:
                return error_event("session.read needs event_data.client_id")
            messages = session.read(client_id)
            return _reply(kind, None if messages is None else {"messages": messages})
        if kind == "session.heartbeat":
            session.counts.heartbeats += 1
            return _reply(kind, None)
        if kind == "session.destroy":
            self.end_session(session_id, DESTROYED, now)
            return _reply(kind, session.destroy_item(now))
        if kind == "session.validate":
            return _reply(kind, {"is_valid": True, "error_messages": []})
        if kind == "session.get":
            params = dict(session.lens.lens_config.get("model_parameters", {}))
            params.update(session.params)
            return _reply(kind, params)
        if kind == "session.modify":
            if not isinstance(data, dict):
                return error_event("session.modify needs an event_data object")
            session.params.update(data)
            session.last_update_timestamp = now
            return _reply(kind, {"is_valid": True, "error_messages": []})
        if kind in ("input_stream.set", "output_stream.set"):
            return _reply(kind, {"is_valid": True, "error_messages": []})
        return error_event(f"Unknown event type: {kind}")

    def _update(self, session: LensSession, data: Any) -> Event:
        session.counts.updates += 1
        window, problem = parse_window(data)
        if window is None:
            session.counts.invalid_updates += 1
            return error_event(f"session.update rejected: {problem}")
        if session.status == FAILED:
            return _reply(
                "session.update",
                {"accepted": False, "queued": 0, "error_messages": [f"Session is {session.status}"]},
            )
        # INFERRED reply body (§13 q1): no source shows a session.update reply; the one-reply rule
        # demands one, and accepted/queued let a client see the ~20-window buffer fill.
        accepted = session.push(window)
        return _reply("session.update", {"accepted": accepted, "queued": len(session.buffer)})

    def state(self, now: float) -> dict[str, Any]:
        for session in self.sessions.values():
            if session.live:
                session.refresh(now)
        return {
            "lenses": [lens.metadata() for lens in self.lenses.values()],
            "sessions": [s.state(now) for s in self.sessions.values()],
            "runner_slots": {"total": self.runner_slots, "in_use": self.slots_in_use},
        }


class NoRunner(Exception):
    """No runner slot is free: create answers 200 `{"errors": [message]}`."""


def parse_window(data: Any) -> tuple[list[list[float]] | None, str]:
    """`{"type": "data.json", "event_data": {"sensor_data": [[...], ...], "sensor_metadata": {...}}}`
    (§4.1) -> the channel-first window, or None and the reason."""
    if not isinstance(data, dict) or data.get("type") != "data.json":
        return None, 'event_data must be {"type": "data.json", "event_data": {...}}'
    inner = data.get("event_data")
    rows = inner.get("sensor_data") if isinstance(inner, dict) else None
    if not isinstance(rows, list) or not rows:
        return None, "event_data.event_data.sensor_data must be a non-empty list of channels"
    window: list[list[float]] = []
    width = -1
    for channel in rows:
        if not isinstance(channel, list) or not channel:
            return None, "each sensor_data channel must be a non-empty list of numbers (channel-first)"
        if width not in (-1, len(channel)):
            return None, "all sensor_data channels must have the same number of samples"
        width = len(channel)
        for value in channel:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return None, f"sensor_data values must be finite numbers (got {value!r})"
        window.append([float(v) for v in channel])
    metadata = inner.get("sensor_metadata") if isinstance(inner, dict) else None
    if metadata is not None and not isinstance(metadata, dict):
        return None, "sensor_metadata must be an object"
    return window, ""


def _reply(kind: str, event_data: Any) -> Event:
    return {"type": f"{kind}.response", "event_data": event_data}


def _runner_name(slot: int) -> str:
    return f"lens_service:runner:lens-node-worker-emulated-{slot}"


def _shard(items: list[Any], shard_index: int, max_items: int) -> list[Any]:
    if shard_index < 0 or max_items <= 0:
        return items
    return items[shard_index * max_items : (shard_index + 1) * max_items]
