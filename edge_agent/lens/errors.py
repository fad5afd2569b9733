"""Typed failures of the lens API. Each carries the HTTP status (None for transport failures) and
what the server said (`errors` items and `message`), never a credential.

Which of them a caller may retry is decided here, once: `retryable` and `retry_after`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_NO_RUNNER_MARKERS = ("allocate lens runner", "no free runner", "runner slot")
_UNKNOWN_SESSION_MARKERS = ("unknown session", "session not found", "no such session")


class LensError(Exception):
    """Base of every lens failure."""

    retryable: bool = False

    def __init__(
        self,
        summary: str,
        *,
        status: int | None = None,
        errors: Sequence[str] = (),
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.errors = list(errors)
        self.message = message
        self.retry_after = retry_after
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
    """5xx: the service is unwell; try again with backoff."""

    retryable = True


class LensNoRunner(LensHttpError):
    """Session create found no free runner slot (orphaned sessions or a small quota). Retry later."""

    retryable = True


class LensNotFound(LensHttpError):
    """404 or an 'unknown session' answer: the lens or session does not exist (any more)."""


class LensRequestError(LensHttpError):
    """Any other 4xx: the request itself is wrong. Not retried."""


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
    text = " ".join([*errors, message or ""]).lower()
    if status in (401, 403):
        kind = LensAuthError
    elif status == 429:
        kind = LensRateLimited
    elif any(marker in text for marker in _NO_RUNNER_MARKERS):
        kind = LensNoRunner
    elif status >= 500:
        kind = LensServerError
    elif status == 404 or any(marker in text for marker in _UNKNOWN_SESSION_MARKERS):
        kind = LensNotFound
    else:
        kind = LensRequestError
    return kind(summary, status=status, errors=errors, message=message, retry_after=retry_after)


def is_unknown_session(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _UNKNOWN_SESSION_MARKERS)
