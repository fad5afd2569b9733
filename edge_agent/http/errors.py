"""What an HTTP answer (or the lack of one) means, decided once for both cloud clients.

`classify(status)` is the table; `HttpError` is the base of every cloud-call failure in the agent
(the Atlas and lens exception families derive from it); `Failure` is what the transport raises,
which each client turns into its own named exception.

| status                      | kind       | retry | outcome_unknown | why                                   |
|-----------------------------|------------|-------|-----------------|---------------------------------------|
| 2xx                         | success    |       |                 | any 2xx, 204 and empty bodies too     |
| 401, 403                    | auth       | no    | no              | a human must fix the credential       |
| 404, 410                    | not_found  | no    | no              | the object does not exist (any more)  |
| 422                         | invalid    | no    | no              | the request is wrong, field by field  |
| 408, 425, 429               | transient  | yes   | no              | refused before being processed        |
| 409                         | transient  | yes   | yes             | usually "already there": look first   |
| 413                         | permanent  | no    | no              | too large: the same body fails again  |
| other 4xx                   | permanent  | no    | no              | the request itself is wrong           |
| 5xx                         | transient  | yes   | yes             | the server (or a proxy) may have acted|
| 1xx, 3xx not followed       | permanent  | no    | no              | nothing this client can do            |
| no answer: refused/connect  | transient  | yes   | no              | nothing was sent                      |
| no answer: after sending    | transient  | yes   | yes             | timeout, reset: may have been applied |
| 2xx the caller cannot read  | protocol   | yes   | yes (not GET)   | the server acted; look for the result |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    SUCCESS = "success"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    TRANSIENT = "transient"
    PROTOCOL = "protocol"  # a success answer the caller cannot use: transient, outcome unknown
    PERMANENT = "permanent"

    @property
    def retryable(self) -> bool:
        return self in (Kind.TRANSIENT, Kind.PROTOCOL)


NOT_PROCESSED_STATUSES = frozenset({408, 425, 429})
RETRY_STATUSES = frozenset({408, 409, 425, 429})
AUTH_STATUSES = frozenset({401, 403})


@dataclass(slots=True, frozen=True)
class StatusClass:
    kind: Kind
    outcome_unknown: bool


def classify(status: int) -> StatusClass:
    """The table of the module docstring, for an HTTP status."""
    if 200 <= status < 300:
        return StatusClass(Kind.SUCCESS, False)
    if status in AUTH_STATUSES:
        return StatusClass(Kind.AUTH, False)
    if status in (404, 410):
        return StatusClass(Kind.NOT_FOUND, False)
    if status == 422:
        return StatusClass(Kind.INVALID, False)
    if status in RETRY_STATUSES:
        return StatusClass(Kind.TRANSIENT, status not in NOT_PROCESSED_STATUSES)
    if 500 <= status < 600:
        return StatusClass(Kind.TRANSIENT, True)
    return StatusClass(Kind.PERMANENT, False)


def status_reason(status: int) -> str:
    """A readable reason for statuses whose server text is often a proxy's HTML page."""
    if status == 413:
        return "the server or a proxy refused the request body as too large (HTTP 413); it is not retried"
    if status in (502, 503, 504):
        return "the server or a proxy in front of it is unavailable"
    return ""


class HttpError(Exception):
    """Base of every failure of a cloud call (Atlas, lens). What a retry decision needs, and nothing
    secret: every text in it was scrubbed before it was built."""

    retryable: bool = False
    status: int | None = None
    outcome_unknown: bool = False
    retry_after: float | None = None


class Failure(HttpError):
    """A failed request as the transport saw it: `kind`, the status (None without an HTTP answer),
    the server's body decoded (`body`, scrubbed JSON or None) and as text (`text`, scrubbed, cut),
    and a readable `reason`."""

    def __init__(
        self,
        method: str,
        path: str,
        kind: Kind,
        *,
        status: int | None = None,
        reason: str = "",
        body: Any = None,
        text: str = "",
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.method = method
        self.path = path
        self.kind = kind
        self.status = status
        self.reason = reason
        self.body = body
        self.text = text
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.retryable = kind.retryable
        parts = [f"{method} {path}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        parts += [p for p in (reason, text) if p]
        super().__init__(": ".join(parts))
