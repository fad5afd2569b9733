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

What a status means is not decided here but by the shared transport (`edge_agent.http`); this module
gives its verdicts Atlas's names (`from_failure`) and reads Atlas's FastAPI-style `detail`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edge_agent.http import Failure, HttpError, Kind
from edge_agent.http import parse_retry_after as parse_retry_after  # the one parser, re-exported

Detail = str | list[Any] | None

LOGIN_HINT = "run `atlas login` again or set ATLAS_TOKEN (or atlas.token / atlas.token_file)"


class AtlasError(HttpError):
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
    """404 (or 410): the session, issue, run, card or step does not exist (any more)."""


class AtlasRequestError(AtlasError):
    """Any other 4xx (400, 405, 413, ...), or a redirect that is not followed (to another origin, too
    many hops): the request itself is wrong. Never retried."""


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


def from_failure(failure: Failure) -> AtlasError:
    """The transport's verdict under Atlas's exception names, with Atlas's `detail` when the body has
    one (FastAPI: a string, or a list of 422 items), else the server's (scrubbed, cut) text."""
    detail = _detail(failure)
    kw: dict[str, Any] = {"status": failure.status, "detail": detail, "reason": failure.reason}
    if failure.kind is Kind.AUTH:
        return AtlasAuthError(failure.method, failure.path, **kw)
    if failure.kind is Kind.NOT_FOUND:
        return AtlasNotFound(failure.method, failure.path, **kw)
    if failure.kind is Kind.INVALID:
        return AtlasValidationError(failure.method, failure.path, **kw)
    if failure.kind is Kind.PROTOCOL:
        return AtlasProtocolError(failure.method, failure.path, outcome_unknown=failure.outcome_unknown, **kw)
    if failure.retryable:
        return AtlasRetryableError(
            failure.method,
            failure.path,
            retry_after=failure.retry_after,
            outcome_unknown=failure.outcome_unknown,
            **kw,
        )
    return AtlasRequestError(failure.method, failure.path, **kw)


def _detail(failure: Failure) -> Detail:
    body = failure.body
    if isinstance(body, dict) and "detail" in body:
        raw = body["detail"]
        return raw if isinstance(raw, str | list) else json.dumps(raw)
    return failure.text or None


def invalid(method: str, path: str, problems: Sequence[str]) -> AtlasValidationError:
    """A request rejected locally, before anything was sent."""
    return AtlasValidationError(method, path, detail="; ".join(problems), reason="rejected before sending")
