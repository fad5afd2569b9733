"""Typed failures of the Atlas API, shaped for the durable outbox's three choices: retry, keep as failed,
or look for what an ambiguous attempt may already have created.

Every error carries the HTTP status (None when there was no HTTP answer), the server's `detail`
(FastAPI shape, INFERRED: a string, or for 422 a list of `{loc, msg, type, ...}` items), the method and
the path. None of them ever carries the token: server text is scrubbed before it is stored.

- `retryable`: trying the same request again later may succeed (5xx, 408, 409, 425, 429, no answer).
- `outcome_unknown`: the request may have reached the server and been acted on (a timeout or a
  disconnect after sending, a 5xx, a 409). Before re-sending a create, look for what it made.
  A refused connection, a connect timeout, a 408/425/429 and a rejected request are known not to have
  created anything.
- `retry_after`: seconds the server asked us to wait (`Retry-After`, delta-seconds or HTTP date).
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from typing import Any

Detail = str | list[Any] | None

# The outbox's retry set (outbox/policy.py): 409 usually means "already there", hence outcome unknown.
RETRY_STATUSES = frozenset({408, 409, 425, 429})
NOT_PROCESSED_STATUSES = frozenset({408, 425, 429})
LOGIN_HINT = "run `atlas login` again or set ATLAS_TOKEN (or atlas.token / atlas.token_file)"


class AtlasError(Exception):
    """Base of every Atlas failure."""

    retryable: bool = False

    def __init__(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        detail: Detail = None,
        reason: str = "",
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.reason = reason
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.method} {self.path}"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.reason:
            parts.append(self.reason)
        text = detail_text(self.detail)
        if text:
            parts.append(text)
        return ": ".join(parts)


class AtlasAuthError(AtlasError):
    """401/403: the token is missing, expired or lacks access. Retrying cannot help; a human must act."""

    def _render(self) -> str:
        return f"{super()._render()} ({LOGIN_HINT})"


class AtlasValidationError(AtlasError):
    """The request is invalid: a 422 from the server (`detail` lists the fields), or rejected locally
    before sending (`status` None), e.g. a comment over 10,000 characters. Never retried."""


class AtlasNotFound(AtlasError):
    """404: the session, issue, run, card or step does not exist (any more)."""


class AtlasRequestError(AtlasError):
    """Any other 4xx (400, 405, 413, ...): the request itself is wrong. Never retried."""


class AtlasRetryableError(AtlasError):
    """Try again later: 5xx, 408/409/425/429, or no HTTP answer (refused, reset, timeout)."""

    retryable = True


class AtlasProtocolError(AtlasRetryableError):
    """A success status whose body this client cannot read. The server did act (it said so), so the
    outcome is unknown to us: look for the result before re-sending."""


def detail_text(detail: Detail) -> str:
    """One line for humans: a string as is; 422 items as `body.title: Field required; ...`."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    items: list[str] = []
    for item in detail:
        if isinstance(item, dict):
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else ""
            msg = str(item.get("msg", item))
            items.append(f"{where}: {msg}" if where else msg)
        else:
            items.append(str(item))
    return "; ".join(items)


def scrub(value: Any, secret: str) -> Any:
    """`value` with every occurrence of `secret` replaced (servers echo inputs in error bodies)."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {k: scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secret) for v in value]
    return value


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now` (Unix time): delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zoneless one is malformed
        return None
    return max(0.0, when.timestamp() - now)


def http_error(method: str, path: str, status: int, detail: Detail, retry_after: float | None) -> AtlasError:
    """The exception a non-success HTTP answer maps to."""
    if status in (401, 403):
        return AtlasAuthError(method, path, status=status, detail=detail)
    if status == 404:
        return AtlasNotFound(method, path, status=status, detail=detail)
    if status == 422:
        return AtlasValidationError(method, path, status=status, detail=detail)
    if status in RETRY_STATUSES or status >= 500:
        return AtlasRetryableError(
            method,
            path,
            status=status,
            detail=detail,
            retry_after=retry_after,
            outcome_unknown=status not in NOT_PROCESSED_STATUSES,
        )
    return AtlasRequestError(method, path, status=status, detail=detail)


def invalid(method: str, path: str, problems: Sequence[str]) -> AtlasValidationError:
    """A request rejected locally, before anything was sent."""
    return AtlasValidationError(method, path, detail="; ".join(problems), reason="rejected before sending")
