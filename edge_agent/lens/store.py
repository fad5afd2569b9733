"""Durable record of the sessions (and registered lenses) this agent holds, in the state directory.

A session that outlives its agent keeps one of the account's runner slots until its TTL (a day)
runs out, so the id is written *before* streaming starts and removed only after destroy succeeded;
the next start destroys whatever is still listed. Writes go through `edge_agent.state_files` (atomic,
0600) so a crash leaves the old or the new file, never half of one.

A create whose answer never arrived (timeout, reset, 5xx, unreadable reply) may still have made a
session that nobody knows the id of. Such a create is kept as a `PendingCreate` (lens and send time)
until a listing of the org's sessions has been searched for it (lifecycle.reap_unknown_creates).

A damaged file (not UTF-8, not JSON, empty, not our shape) is set aside as
`lens_sessions.json.damaged-<UTC>` (state_files) and the agent starts with an empty record; but the
sessions it listed are still alive somewhere. So the fresh record carries `records_lost_at`: the
lifecycle turns it into an unknown create of its lens spanning all time up to then, and the org's
session list is searched for them like for any lost create answer.

Methods are blocking (one small file, read-modify-write under a lock so concurrent callers in worker
threads never lose each other's change); the agent calls them through `asyncio.to_thread`.

Only ids and times are stored: never a key (the create reply's echoed `api_key` is dropped by the
client before it gets here).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.state_files import read_json_state, set_aside, write_json
from edge_agent.state_health import StateFileHealth

STATE_FILE_NAME = "lens_sessions.json"
_FORMAT_VERSION = 1


@dataclass(slots=True, frozen=True)
class SessionRecord:
    session_id: str
    lens_id: str
    created_at: float  # Unix seconds


@dataclass(slots=True, frozen=True)
class LensRecord:
    """A lens this agent registered (lenses persist server-side until deleted)."""

    lens_id: str
    registered_at: float


@dataclass(slots=True, frozen=True)
class PendingCreate:
    """Session creates of `lens_id` sent between `since` and `until` (Unix s) whose outcome is not
    known: a session made by any of them is an orphan nobody knows the id of. `in_flight` marks the
    one create being sent now (written before it is sent, so a crash during the call leaves it)."""

    lens_id: str
    since: float
    until: float
    in_flight: bool = False


@dataclass(slots=True)
class LensState:
    sessions: list[SessionRecord]
    lenses: list[LensRecord]
    client_id: str
    pending_creates: list[PendingCreate] = field(default_factory=list)
    # When a damaged record was set aside (Unix s): the sessions it listed are unknown (module doc).
    records_lost_at: float | None = None


class SessionStore:
    """Reads and rewrites `state_dir/lens_sessions.json`; one agent per state dir."""

    def __init__(
        self,
        state_dir: Path,
        *,
        health: StateFileHealth | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(state_dir) / STATE_FILE_NAME
        self.health = health
        self._wall = wall_clock
        self._lock = threading.RLock()

    def load(self) -> LensState:
        """The record; a damaged file is set aside and replaced by an empty record that says so."""
        with self._lock:
            existed = self.path.exists()
            doc = read_json_state(self.path, what="lens sessions", health=self.health)
            if doc is None:
                # There and read as nothing: damaged, now set aside (one agent per state dir).
                lost = self._wall() if existed else None
                state = LensState(sessions=[], lenses=[], client_id="", records_lost_at=lost)
                if lost is not None:
                    self.save(state)
                return state
            try:
                return _state_of(doc)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                set_aside(
                    self.path, f"not a lens state file ({exc})", what="lens sessions", health=self.health
                )
                state = LensState(sessions=[], lenses=[], client_id="", records_lost_at=self._wall())
                self.save(state)
                return state

    def save(self, state: LensState) -> None:
        doc = {
            "version": _FORMAT_VERSION,
            "client_id": state.client_id,
            "sessions": [asdict(s) for s in state.sessions],
            "lenses": [asdict(lens) for lens in state.lenses],
            "pending_creates": [asdict(p) for p in state.pending_creates],
            "records_lost_at": state.records_lost_at,
        }
        with self._lock:
            write_json(self.path, doc, health=self.health)

    def fold_lost_records(self, lens_id: str | None) -> bool:
        """Turn `records_lost_at` into an unknown create of `lens_id` spanning all time up to then, so
        the org's session list is searched for what the damaged record listed (None: no lens to
        search for, just forget it). True if there was one."""
        with self._lock:
            state = self.load()
            if state.records_lost_at is None:
                return False
            lost = state.records_lost_at
            if lens_id:
                state.pending_creates = [*state.pending_creates, PendingCreate(lens_id, 0.0, lost)]
            state.records_lost_at = None
            self.save(state)
            return True

    def add_session(self, record: SessionRecord, resolves: PendingCreate | None = None) -> None:
        """Record a session; `resolves` is the pending create it answered, dropped in the same write."""
        with self._lock:
            state = self.load()
            state.sessions = [s for s in state.sessions if s.session_id != record.session_id] + [record]
            if resolves is not None:
                state.pending_creates = [p for p in state.pending_creates if p != resolves]
            self.save(state)

    def remove_session(self, session_id: str) -> None:
        with self._lock:
            state = self.load()
            kept = [s for s in state.sessions if s.session_id != session_id]
            if len(kept) != len(state.sessions):
                state.sessions = kept
                self.save(state)

    def add_pending_create(self, pending: PendingCreate) -> None:
        with self._lock:
            state = self.load()
            state.pending_creates = [*state.pending_creates, pending]
            self.save(state)

    def settle_pending_create(self, pending: PendingCreate, *, outcome_known: bool) -> None:
        """Known outcome (an answer, or a refusal that made no session): forget the create. Unknown:
        fold it into the lens's one interval of unknown creates, so a long outage with a retry a
        minute keeps one record per lens, not thousands."""
        with self._lock:
            state = self.load()
            rest = [p for p in state.pending_creates if p != pending]
            if not outcome_known:
                interval = [p for p in rest if p.lens_id == pending.lens_id and not p.in_flight]
                rest = [p for p in rest if p not in interval]
                merged = [pending, *interval]
                since, until = min(p.since for p in merged), max(p.until for p in merged)
                rest.append(PendingCreate(pending.lens_id, since, until, in_flight=False))
            state.pending_creates = rest
            self.save(state)

    def remove_pending_creates(self, resolved: list[PendingCreate]) -> None:
        with self._lock:
            state = self.load()
            kept = [p for p in state.pending_creates if p not in resolved]
            if len(kept) != len(state.pending_creates):
                state.pending_creates = kept
                self.save(state)

    def add_lens(self, record: LensRecord) -> None:
        with self._lock:
            state = self.load()
            state.lenses = [lens for lens in state.lenses if lens.lens_id != record.lens_id] + [record]
            self.save(state)

    def remove_lens(self, lens_id: str) -> None:
        with self._lock:
            state = self.load()
            kept = [lens for lens in state.lenses if lens.lens_id != lens_id]
            if len(kept) != len(state.lenses):
                state.lenses = kept
                self.save(state)

    def client_id(self, configured: str = "") -> str:
        """The `session.read` client id: the configured one, else one generated once and kept, so a
        restarted agent reads as the same client."""
        if configured:
            return configured
        with self._lock:
            state = self.load()
            if not state.client_id:
                state.client_id = "edge-agent-" + secrets.token_hex(8)
                self.save(state)
            return state.client_id


def _state_of(doc: Any) -> LensState:
    if not isinstance(doc, dict):
        raise TypeError("the top level is not an object")
    lost = doc.get("records_lost_at")
    if lost is not None and (isinstance(lost, bool) or not isinstance(lost, int | float)):
        raise TypeError("records_lost_at is not a time")
    return LensState(
        sessions=[SessionRecord(**_fields(item, SessionRecord)) for item in doc.get("sessions", [])],
        lenses=[LensRecord(**_fields(item, LensRecord)) for item in doc.get("lenses", [])],
        client_id=str(doc.get("client_id", "")),
        pending_creates=[
            PendingCreate(**_fields(item, PendingCreate)) for item in doc.get("pending_creates", [])
        ],
        records_lost_at=None if lost is None else float(lost),
    )


def _fields(item: Any, kind: type[SessionRecord] | type[LensRecord] | type[PendingCreate]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise TypeError("record is not an object")
    return {name: item[name] for name in kind.__dataclass_fields__}
