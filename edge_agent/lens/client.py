"""Archetype lens REST client: lenses, sessions, `events/process` and the SSE consumer.

Every request goes through the shared transport (`edge_agent.http`): it decides what an answer means
(any 2xx is success: a destroy answered 204 is done), follows same-origin redirects only, reads
`Retry-After` in both forms, retries what may be retried and scrubs the key out of server text.
Failures become the typed exceptions of `edge_agent.lens.errors`. This module adds what is the lens
API's own: failures reported inside a 200 (`{"errors": [...]}`, e.g. "Failed to allocate lens
runner"), the list shapes, and the SSE framing.

The create reply echoes the caller's API key in `api_key`; it is removed from the reply before
anything else sees it, and its value is added to the secrets scrubbed from server text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from edge_agent.http import Failure, Transport
from edge_agent.http import RetryPolicy as RetryPolicy
from edge_agent.lens.errors import LensProtocolError, error_texts, from_failure, http_error
from edge_agent.lens.sse import SseEvent, SseParser
from edge_agent.lens.status import SessionStatus, status_of
from edge_agent.logs import get_logger

log = get_logger(__name__)

ECHOED_SECRET_KEYS = ("api_key", "apiKey")
# Retries inside one call: transport failures, 5xx, 429 (after a Retry-After up to 30 s; a longer one
# goes up to the caller, which waits it out). 401/403 and other 4xx are raised at once.
DEFAULT_RETRY = RetryPolicy(attempts=4, base=0.5, cap=10.0, max_retry_after=30.0, jitter=1.0)
NO_RETRY = RetryPolicy(attempts=1)
# events/process events that only read: safe to send again after an answer was lost.
READ_ONLY_EVENTS = frozenset({"session.status", "session.validate", "session.get"})


@dataclass(slots=True, frozen=True)
class SessionInfo:
    """A lens session as the create/metadata calls describe it, minus the echoed key."""

    session_id: str
    lens_id: str
    endpoint: str
    status: SessionStatus
    raw: dict[str, Any] = field(repr=False, compare=False)


def strip_secrets(body: Any) -> Any:
    """The reply without the echoed API key (kept out of logs, state and exceptions)."""
    if isinstance(body, dict):
        for key in ECHOED_SECRET_KEYS:
            body.pop(key, None)
    return body


def websocket_url(api_url: str, session_id: str) -> str:
    """Where a session's websocket is when the create reply does not say."""
    parts = urlsplit(api_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path}/lens/sessions/{quote(session_id)}"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class LensClient:
    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("no lens API key configured (lens.api_key, lens.api_key_file or ATAI_API_KEY)")
        self.api_url = api_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or DEFAULT_RETRY
        self.transport = Transport(
            self.api_url,
            api_key,
            service="lens",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=self.retry,
            sleep=sleep,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"LensClient({self.api_url!r})"  # never the key

    @property
    def auth_headers(self) -> dict[str, str]:
        return self.transport.auth_headers

    @property
    def server_clock_offset(self) -> float | None:
        """The service's clock minus this host's, from the latest answer's `Date` header."""
        return self.transport.clock_offset

    async def __aenter__(self) -> LensClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    # -- lenses -----------------------------------------------------------------------------------

    async def list_lenses(self) -> list[dict[str, Any]]:
        body = await self.call("GET", "/lens/metadata")
        return _items(body, "lenses")

    async def register_lens(self, lens_name: str, lens_config: dict[str, Any]) -> str:
        # The double nesting is the API's: {"lens_config": {"lens_name", "lens_config"}}.
        body = await self.call(
            "POST",
            "/lens/register",
            json_body={"lens_config": {"lens_name": lens_name, "lens_config": lens_config}},
            idempotent=False,
        )
        lens_id = body.get("lens_id") if isinstance(body, dict) else None
        if not isinstance(lens_id, str) or not lens_id:
            raise LensProtocolError("register answered without a lens_id")
        return lens_id

    async def delete_lens(self, lens_id: str) -> None:
        await self.call("POST", "/lens/delete", json_body={"lens_id": lens_id}, need_body=False)

    # -- sessions ---------------------------------------------------------------------------------

    async def create_session(self, lens_id: str, retry: RetryPolicy | None = None) -> SessionInfo:
        body = await self.call(
            "POST", "/lens/sessions/create", json_body={"lens_id": lens_id}, retry=retry, idempotent=False
        )
        return self._session_info(body, lens_id)

    async def destroy_session(self, session_id: str, retry: RetryPolicy | None = None) -> dict[str, Any]:
        """The destroyed session's record; {} when the service answered without one (204): done all
        the same. Destroying twice is harmless, so a lost answer is simply asked again."""
        body = await self.call(
            "POST",
            "/lens/sessions/destroy",
            json_body={"session_id": session_id},
            retry=retry,
            need_body=False,
        )
        return body if isinstance(body, dict) else {}

    async def list_sessions(self) -> list[dict[str, Any]]:
        body = await self.call("GET", "/lens/sessions/metadata")
        return _items(body, "sessions")

    async def session_metadata(self, session_id: str) -> dict[str, Any] | None:
        body = await self.call("GET", "/lens/sessions/metadata", params={"session_id": session_id})
        for item in _items(body, "sessions"):
            if item.get("session_id") == session_id:
                return item
        return None

    async def process_event(
        self, session_id: str, event: dict[str, Any], retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        body = await self.call(
            "POST",
            "/lens/sessions/events/process",
            json_body={"session_id": session_id, "event": event},
            retry=retry,
            idempotent=event.get("type") in READ_ONLY_EVENTS,
        )
        if not isinstance(body, dict):
            raise LensProtocolError("events/process answered something that is not a JSON object")
        return body

    async def session_status(self, session_id: str, retry: RetryPolicy | None = None) -> SessionStatus:
        return status_of(await self.process_event(session_id, {"type": "session.status"}, retry=retry))

    def _session_info(self, body: Any, lens_id: str) -> SessionInfo:
        if not isinstance(body, dict) or not isinstance(body.get("session_id"), str):
            raise LensProtocolError("session create answered without a session_id", outcome_unknown=True)
        session_id = body["session_id"]
        endpoint = body.get("session_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            endpoint = websocket_url(self.api_url, session_id)
        return SessionInfo(
            session_id=session_id,
            lens_id=str(body.get("lens_id") or lens_id),
            endpoint=endpoint,
            status=status_of(body),
            raw=body,
        )

    # -- SSE consumer -----------------------------------------------------------------------------

    async def sse_events(self, session_id: str, last_event_id: str | None = None) -> AsyncIterator[SseEvent]:
        """One SSE connection to the session's output consumer (no retry here: the reader owns the
        reconnect loop because it owns `Last-Event-ID`)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        parser = SseParser()
        try:
            async for chunk in self.transport.iter_chunks(
                "GET", f"/lens/sessions/consumer/{quote(session_id)}", headers=headers
            ):
                for event in parser.feed(chunk):
                    yield event
        except Failure as failure:
            raise from_failure(failure) from None

    # -- plumbing ---------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = True,
        need_body: bool = True,
    ) -> Any:
        """One API call with the retry policy; returns the decoded JSON body, without an echoed key.
        `idempotent=False`: retried only when nothing can have been applied (refused, 429)."""
        try:
            reply = await self.transport.request(
                method,
                path,
                json_body=json_body,
                params=params,
                retry=retry or self.retry,
                idempotent=idempotent,
                need_body=need_body,
            )
        except Failure as failure:
            raise from_failure(failure) from None
        body = self._forget_echoed_key(reply.body) if reply.body is not None else {}
        errors, message = error_texts(body)
        if errors:
            # The API also reports failures inside a 200 (e.g. "Failed to allocate lens runner").
            scrub = self.transport.scrubber.scrub
            raise http_error(
                reply.status, f"{method} {path}", [scrub(e) for e in errors], message and scrub(message), None
            )
        return body

    def _forget_echoed_key(self, body: Any) -> Any:
        if isinstance(body, dict):
            for key in ECHOED_SECRET_KEYS:
                value = body.get(key)
                if isinstance(value, str):
                    self.transport.scrubber.add(value)
        return strip_secrets(body)


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """Lists come as a bare array, or wrapped as {key: [...]} / {"items": [...]} (both seen)."""
    if isinstance(body, dict):
        body = body.get(key, body.get("items", []))
    if not isinstance(body, list):
        raise LensProtocolError(f"expected a list of {key}")
    return [item for item in body if isinstance(item, dict)]
