"""Reading an HTTP answer for the transport: a 2xx body decoded as the caller needs it, a non-2xx
answer turned into a `Failure` (its body read up to `MAX_ERROR_BYTES`, scrubbed of the client's
secrets, then cut), and the server's clock from its `Date` header.
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from edge_agent.http.errors import Failure, Kind, classify, status_reason
from edge_agent.http.retry_after import parse_retry_after
from edge_agent.http.scrub import Scrubber

MAX_ERROR_BYTES = 64 * 1024  # of an error body read at all (a proxy page can be megabytes)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def decode_body(method: str, path: str, status: int, text: str, need_body: bool) -> Any:
    """A 2xx answer's JSON; an empty or non-JSON body is None, or a `PROTOCOL` failure where the
    caller needs a result (outcome unknown unless a GET)."""
    if not text.strip():
        if need_body:
            raise Failure(method, path, Kind.PROTOCOL, status=status, reason="the answer is empty",
                          outcome_unknown=method != "GET")  # fmt: skip
        return None
    try:
        return json.loads(text)
    except ValueError:
        if need_body:
            raise Failure(method, path, Kind.PROTOCOL, status=status, reason="the answer is not JSON",
                          outcome_unknown=method != "GET") from None  # fmt: skip
        return None


async def failure_of(
    method: str,
    path: str,
    response: aiohttp.ClientResponse,
    scrubber: Scrubber,
    max_error_chars: int,
    clock: Callable[[], float],
) -> Failure:
    """A non-2xx answer as a `Failure`: body read (bounded), scrubbed, then cut to `max_error_chars`.
    A `Retry-After` date is read against the answer's `Date` (else `clock()`, the local wall clock)."""
    status = response.status
    verdict = classify(status)
    raw = await _read_bounded(response, MAX_ERROR_BYTES)
    text = raw.decode("utf-8", "replace")
    body: Any = None
    try:
        body = scrubber.scrub_value(json.loads(text)) if text.strip() else None
    except ValueError:
        body = None
    if body is not None:
        readable = json.dumps(body, ensure_ascii=False)
    else:
        # An HTML page (a proxy's): its words, not its markup. Scrubbed before and after the tags
        # go, since markup can split a token that the text then joins again.
        readable = _SPACE.sub(" ", _TAG.sub(" ", scrubber.scrub(text))).strip()
    kind = verdict.kind if verdict.kind is not Kind.SUCCESS else Kind.PERMANENT
    reason = status_reason(status)
    if 300 <= status < 400:
        reason = f"an unexpected redirect (HTTP {status}) that is not followed"
    server_now = server_time(response)
    retry_after = parse_retry_after(
        response.headers.get("Retry-After"), server_now if server_now is not None else clock()
    )
    return Failure(
        method,
        path,
        kind,
        status=status,
        reason=reason,
        body=body,
        text=scrubber.scrub_and_cut(readable, max_error_chars),
        retry_after=retry_after if kind.retryable else None,
        outcome_unknown=verdict.outcome_unknown,
    )


def server_time(response: aiohttp.ClientResponse) -> float | None:
    """The answer's `Date` header as Unix time; None when it has none or it is unreadable or zoneless."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.timestamp() if when.tzinfo is not None else None


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError):
        pass  # the status is what matters; the text is a courtesy
    return b"".join(chunks)
