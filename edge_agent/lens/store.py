"""Durable record of the sessions (and registered lenses) this agent holds, in the state directory.

A session that outlives its agent keeps one of the account's runner slots until its TTL (a day)
runs out, so the id is written *before* streaming starts and removed only after destroy succeeded;
the next start destroys whatever is still listed. Writes are atomic (temp file, fsync, rename,
fsync of the directory) so a crash leaves the old or the new file, never half of one.

A create whose answer never arrived (timeout, reset, 5xx, unreadable reply) may still have made a
session that nobody knows the id of. Such a create is kept as a `PendingCreate` (lens and send time)
until a listing of the org's sessions has been searched for it (lifecycle.reap_unknown_creates).

Only ids and times are stored: never a key (the create reply's echoed `api_key` is dropped by the
client before it gets here).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


class StateFileError(Exception):
    """The state file exists but cannot be read as ours; it is kept aside, never silently lost."""


class SessionStore:
    """Reads and rewrites `state_dir/lens_sessions.json`. Not thread-safe; one agent per state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / STATE_FILE_NAME

    def load(self) -> LensState:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return LensState(sessions=[], lenses=[], client_id="", pending_creates=[])
        try:
            doc = json.loads(raw)
            return LensState(
                sessions=[SessionRecord(**_fields(item, SessionRecord)) for item in doc.get("sessions", [])],
                lenses=[LensRecord(**_fields(item, LensRecord)) for item in doc.get("lenses", [])],
                client_id=str(doc.get("client_id", "")),
                pending_creates=[
                    PendingCreate(**_fields(item, PendingCreate)) for item in doc.get("pending_creates", [])
                ],
            )
        except (ValueError, TypeError, AttributeError) as exc:
            # Keep the unreadable file for a human rather than overwrite the only list of orphans.
            aside = self.path.with_suffix(".corrupt")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            raise StateFileError(f"{self.path} is not a lens state file ({exc}); moved to {aside}") from None

    def save(self, state: LensState) -> None:
        doc = {
            "version": _FORMAT_VERSION,
            "client_id": state.client_id,
            "sessions": [asdict(s) for s in state.sessions],
            "lenses": [asdict(lens) for lens in state.lenses],
            "pending_creates": [asdict(p) for p in state.pending_creates],
        }
        atomic_write_json(self.path, doc)

    def add_session(self, record: SessionRecord, resolves: PendingCreate | None = None) -> None:
        """Record a session; `resolves` is the pending create it answered, dropped in the same write."""
        state = self.load()
        state.sessions = [s for s in state.sessions if s.session_id != record.session_id] + [record]
        if resolves is not None:
            state.pending_creates = [p for p in state.pending_creates if p != resolves]
        self.save(state)

    def remove_session(self, session_id: str) -> None:
        state = self.load()
        kept = [s for s in state.sessions if s.session_id != session_id]
        if len(kept) != len(state.sessions):
            state.sessions = kept
            self.save(state)

    def add_pending_create(self, pending: PendingCreate) -> None:
        state = self.load()
        state.pending_creates = [*state.pending_creates, pending]
        self.save(state)

    def settle_pending_create(self, pending: PendingCreate, *, outcome_known: bool) -> None:
        """Known outcome (an answer, or a refusal that made no session): forget the create. Unknown:
        fold it into the lens's one interval of unknown creates, so a long outage with a retry a
        minute keeps one record per lens, not thousands."""
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
        state = self.load()
        kept = [p for p in state.pending_creates if p not in resolved]
        if len(kept) != len(state.pending_creates):
            state.pending_creates = kept
            self.save(state)

    def add_lens(self, record: LensRecord) -> None:
        state = self.load()
        state.lenses = [lens for lens in state.lenses if lens.lens_id != record.lens_id] + [record]
        self.save(state)

    def remove_lens(self, lens_id: str) -> None:
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
        state = self.load()
        if not state.client_id:
            state.client_id = "edge-agent-" + secrets.token_hex(8)
            self.save(state)
        return state.client_id


def _fields(item: Any, kind: type[SessionRecord] | type[LensRecord] | type[PendingCreate]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise TypeError("record is not an object")
    return {name: item[name] for name in kind.__dataclass_fields__}


def atomic_write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
