"""Typed failures of the lens API. Each carries the HTTP status (None for transport failures) and
what the server said (`errors` items and `message`), never a credential.

What an HTTP status means is decided by the shared transport (`edge_agent.http`: `classify`); this
module names its verdicts for the lens API (`from_failure`) and reads what only the lens API says:
failures inside a 200 answer, runner shortages and unknown sessions, whatever the status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge_agent.http import Failure, HttpError, Kind, classify

# Runner errors, whatever the status they come with (a 200 included): the service had no runner for
# the session. "Failed to fetch session_runner!" is D-sev's (no node assigned), the others are seen.
_NO_RUNNER_MARKERS = ("allocate lens runner", "no free runner", "runner slot", "session_runner")
_UNKNOWN_SESSION_MARKERS = ("unknown session", "session not found", "no such session")


class LensError(HttpError):
    """Base of every lens failure. `outcome_unknown`: the request may have been applied (a create
    answered 5xx or lost after sending may have made a session)."""

    retryable: bool = False

    def __init__(
        self,
        summary: str,
        *,
        status: int | None = None,
        errors: Sequence[str] = (),
        message: str | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.status = status
        self.errors = list(errors)
        self.message = message
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        detail = "; ".join(self.errors) or (message or "")
        text = summary if status is None else f"{summary} (HTTP {status})"
        super().__init__(f"{text}: {detail}" if detail else text)

    @property
    def server_text(self) -> str:
        return " ".join([*self.errors, self.message or ""]).lower()


class LensTransportError(LensError):
    """No HTTP answer: refused, reset, DNS, connect or read timeout."""

    retryable = True


class LensHttpError(LensError):
    """An HTTP answer that is not a success, or a success whose body carries `errors`."""


class LensAuthError(LensHttpError):
    """401/403: the key is wrong or lacks access. Retrying cannot help; stop and tell the operator."""


class LensRateLimited(LensHttpError):
    """429: wait `retry_after` seconds (when the server says) and try again."""

    retryable = True


class LensServerError(LensHttpError):
    """5xx (or 408/409/425): the service is unwell or busy; try again with backoff."""

    retryable = True


class LensNoRunner(LensHttpError):
    """The service had no runner for the session: no free slot (orphaned sessions or a small quota), or
    "Failed to fetch session_runner!"; also when it says so inside a 200. Retry later, with backoff."""

    retryable = True


class LensNotFound(LensHttpError):
    """404 or an 'unknown session' answer: the lens or session does not exist (any more)."""


class LensRequestError(LensHttpError):
    """Any other 4xx (413 too), or a redirect not followed: the request itself is wrong. Not retried."""


class LensProtocolError(LensError):
    """The server answered something this client cannot read (not JSON, wrong shape)."""

    retryable = True


def error_texts(body: Any) -> tuple[list[str], str | None]:
    """`errors` items (strings, or objects with `message`/`code`) and `message`/`detail` of a body."""
    if not isinstance(body, dict):
        return [], None
    raw = body.get("errors")
    items: list[str] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                items.append(str(item.get("message") or item.get("detail") or item.get("code") or item))
            else:
                items.append(str(item))
    elif isinstance(raw, str) and raw:
        items.append(raw)
    message = body.get("message", body.get("detail"))
    return items, (str(message) if message is not None else None)


def http_error(
    status: int, summary: str, errors: list[str], message: str | None, retry_after: float | None
) -> LensHttpError:
    """The exception class an HTTP failure maps to."""
    kind: type[LensHttpError]
    verdict = classify(status)
    text = " ".join([*errors, message or ""]).lower()
    if verdict.kind is Kind.AUTH:
        kind = LensAuthError
    elif status == 429:
        kind = LensRateLimited
    elif any(marker in text for marker in _NO_RUNNER_MARKERS):
        kind = LensNoRunner
    elif verdict.kind is Kind.TRANSIENT:
        kind = LensServerError
    elif verdict.kind is Kind.NOT_FOUND or any(marker in text for marker in _UNKNOWN_SESSION_MARKERS):
        kind = LensNotFound
    else:
        kind = LensRequestError
    return kind(
        summary,
        status=status,
        errors=errors,
        message=message,
        retry_after=retry_after,
        outcome_unknown=verdict.outcome_unknown,
    )


def from_failure(failure: Failure) -> LensError:
    """The transport's verdict under the lens API's exception names."""
    summary = f"{failure.method} {failure.path}"
    if failure.status is None:
        return LensTransportError(f"{summary}: {failure.reason}", outcome_unknown=failure.outcome_unknown)
    if failure.kind is Kind.PROTOCOL:
        return LensProtocolError(
            f"{summary}: {failure.reason}", status=failure.status, outcome_unknown=failure.outcome_unknown
        )
    errors, message = error_texts(failure.body)
    if failure.body is None or not (errors or message):
        message = failure.text or None
    if failure.reason:
        summary = f"{summary}: {failure.reason}"
    return http_error(failure.status, summary, errors, message, failure.retry_after)


def is_unknown_session(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _UNKNOWN_SESSION_MARKERS)
