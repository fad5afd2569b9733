"""Lens session status values in every form the service has been seen to send.

`session.status` replies say `LensSessionStatus.SESSION_STATUS_RUNNING` or `"3"`, the metadata list
and SSE heartbeats say `SESSION_STATUS_RUNNING`, older pages say `CREATED`/`STALE`. Only 3=RUNNING
and 6=FAILED are attested as numbers; other numbers map to UNKNOWN rather than to a guess.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class SessionStatus(StrEnum):
    REGISTERED = "REGISTERED"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    DESTROYED = "DESTROYED"
    STALE = "STALE"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """The session will never run again: it has to be replaced."""
        return self in _TERMINAL


_TERMINAL = frozenset({SessionStatus.FAILED, SessionStatus.DESTROYED, SessionStatus.STALE})
_NUMERIC = {3: SessionStatus.RUNNING, 6: SessionStatus.FAILED}
_BY_NAME = {member.value: member for member in SessionStatus}


def parse_status(value: Any) -> SessionStatus:
    """`LensSessionStatus.SESSION_STATUS_X`, `SESSION_STATUS_X`, `X`, `"3"` or `3` -> SessionStatus."""
    if isinstance(value, bool) or value is None:
        return SessionStatus.UNKNOWN
    if isinstance(value, int):
        return _NUMERIC.get(value, SessionStatus.UNKNOWN)
    if not isinstance(value, str):
        return SessionStatus.UNKNOWN
    text = value.strip()
    if text.isdigit():
        return _NUMERIC.get(int(text), SessionStatus.UNKNOWN)
    name = text.rpartition(".")[2].upper()
    name = name.removeprefix("SESSION_STATUS_")
    return _BY_NAME.get(name, SessionStatus.UNKNOWN)


def status_of(record: Any) -> SessionStatus:
    """The status carried by a session record or a `session.status` reply (`session_status`, or
    `status` in the older documented example), wherever it sits."""
    if not isinstance(record, dict):
        return SessionStatus.UNKNOWN
    for key in ("session_status", "status"):
        if key in record:
            return parse_status(record[key])
    inner = record.get("event_data")
    if isinstance(inner, dict):
        return status_of(inner)
    return SessionStatus.UNKNOWN
