"""Archetype lens REST client (aiohttp): lenses, sessions, `events/process` and the SSE consumer.

Every call has its own connect and read timeouts (aiohttp's default is one 300 s total). Failures
become the typed exceptions of `edge_agent.lens.errors`. Retries: transport failures, 5xx and 429
(after `Retry-After`) are retried with capped, jittered exponential backoff up to `attempts`
times; 401/403 and other 4xx are raised at once (a wrong key does not get better by repetition).

The create reply echoes the caller's API key in `api_key`; it is removed from the reply before
anything else sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from edge_agent.backoff import Backoff
from edge_agent.lens.errors import (
    LensError,
    LensProtocolError,
    LensTransportError,
    error_texts,
    http_error,
)
from edge_agent.lens.sse import SseEvent, SseParser
from edge_agent.lens.status import SessionStatus, status_of
from edge_agent.logs import get_logger

log = get_logger(__name__)

ECHOED_SECRET_KEYS = ("api_key", "apiKey")
USER_AGENT = "edge-agent"


@dataclass(slots=True)
class RetryPolicy:
    attempts: int = 4
    base: float = 0.5
    cap: float = 10.0


NO_RETRY = RetryPolicy(attempts=1)


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
    ) -> None:
        if not api_key:
            raise ValueError("no lens API key configured (lens.api_key, lens.api_key_file or ATAI_API_KEY)")
        self.api_url = api_url.rstrip("/")
        self._key = api_key
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}", "User-Agent": USER_AGENT}

    async def __aenter__(self) -> LensClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self.auth_headers)
        return self._session

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
        )
        lens_id = body.get("lens_id") if isinstance(body, dict) else None
        if not isinstance(lens_id, str) or not lens_id:
            raise LensProtocolError("register answered without a lens_id")
        return lens_id

    async def delete_lens(self, lens_id: str) -> None:
        await self.call("POST", "/lens/delete", json_body={"lens_id": lens_id})

    # -- sessions ---------------------------------------------------------------------------------

    async def create_session(self, lens_id: str, retry: RetryPolicy | None = None) -> SessionInfo:
        body = await self.call("POST", "/lens/sessions/create", json_body={"lens_id": lens_id}, retry=retry)
        return self._session_info(body, lens_id)

    async def destroy_session(self, session_id: str, retry: RetryPolicy | None = None) -> dict[str, Any]:
        body = await self.call(
            "POST", "/lens/sessions/destroy", json_body={"session_id": session_id}, retry=retry
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
        )
        if not isinstance(body, dict):
            raise LensProtocolError("events/process answered something that is not a JSON object")
        return body

    async def session_status(self, session_id: str, retry: RetryPolicy | None = None) -> SessionStatus:
        return status_of(await self.process_event(session_id, {"type": "session.status"}, retry=retry))

    def _session_info(self, body: Any, lens_id: str) -> SessionInfo:
        if not isinstance(body, dict) or not isinstance(body.get("session_id"), str):
            raise LensProtocolError("session create answered without a session_id")
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
        url = f"{self.api_url}/lens/sessions/consumer/{quote(session_id)}"
        try:
            async with self._http().get(url, headers=headers) as response:
                if response.status != 200:
                    raise await self._http_failure(response, f"GET /lens/sessions/consumer/{session_id}")
                parser = SseParser()
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LensTransportError(f"SSE consumer for {session_id}: {_describe(exc)}") from None

    # -- plumbing ---------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """One API call with the retry policy; returns the decoded JSON body."""
        policy = retry or self.retry
        backoff = Backoff(base=policy.base, cap=policy.cap, jitter=1.0)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, path, json_body, params)
            except LensError as exc:
                if not exc.retryable or attempt >= policy.attempts:
                    raise
                delay = backoff.next_delay()
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.warning(
                    "lens_api_retry",
                    method=method,
                    path=path,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=str(exc),
                )
                await self._sleep(delay)

    async def _once(self, method: str, path: str, json_body: Any, params: dict[str, str] | None) -> Any:
        summary = f"{method} {path}"
        try:
            async with self._http().request(
                method, self.api_url + path, json=json_body, params=params
            ) as response:
                if response.status not in (200, 201):
                    raise await self._http_failure(response, summary)
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LensTransportError(f"{summary}: {_describe(exc)}") from None
        try:
            body = strip_secrets(json.loads(text)) if text.strip() else {}
        except ValueError:
            raise LensProtocolError(
                f"{summary}: answer is not JSON", message=self._scrub(text[:200])
            ) from None
        errors, message = error_texts(body)
        if errors:
            # The API also reports failures inside a 200 (e.g. "Failed to allocate lens runner").
            raise http_error(200, summary, self._scrub_all(errors), self._scrub(message), None)
        return body

    async def _http_failure(self, response: aiohttp.ClientResponse, summary: str) -> LensError:
        text = await response.text(errors="replace")
        try:
            body: Any = strip_secrets(json.loads(text))
        except ValueError:
            body = {"message": text[:200]} if text.strip() else {}
        errors, message = error_texts(body)
        return http_error(
            response.status, summary, self._scrub_all(errors), self._scrub(message), _retry_after(response)
        )

    def _scrub(self, text: str | None) -> str | None:
        """Servers echo inputs in error text; the key must not ride along into an exception."""
        if text is None:
            return None
        return text.replace(self._key, "***")

    def _scrub_all(self, texts: list[str]) -> list[str]:
        return [t.replace(self._key, "***") for t in texts]


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """Lists come as a bare array, or wrapped as {key: [...]} / {"items": [...]} (both seen)."""
    if isinstance(body, dict):
        body = body.get(key, body.get("items", []))
    if not isinstance(body, list):
        raise LensProtocolError(f"expected a list of {key}")
    return [item for item in body if isinstance(item, dict)]


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: rare for APIs; the backoff covers it


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
