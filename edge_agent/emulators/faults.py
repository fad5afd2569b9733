"""Run-time fault injection for both emulators: the switches (`FaultSettings`) and the aiohttp
middleware that applies the HTTP-level ones to the API paths (never the admin ones).

Besides the outages (latency, 5xx, 429, slow uploads), the switches answer the way real
infrastructure in front of an API does (a proxy's 413 page, 204s, redirects, an error page echoing
the Authorization header, a skewed clock) and the way the API pages allow but the emulators do not
by default (oldest-first lists, null fields, soft-deleted comments). Refused connections are the
server's (server.py). Every API request is counted by method and path (`requests`), so tests can
assert attempt counts.
"""

from __future__ import annotations

import asyncio
import html
import random
import re
import time
from collections import Counter
from email.utils import formatdate
from typing import Any, Literal

from aiohttp import StreamReader, web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_agent.emulators.server import ADMIN_PREFIX, Handler

REDIRECTED_MARK = "_emulator_redirected"  # query marker of a same-origin redirect's second hop
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class FaultSettings(BaseModel):
    """Fault switches. Rates are shares of requests (0..1) on the API paths (never the admin ones)."""

    model_config = ConfigDict(extra="forbid")

    latency: float = Field(0.0, ge=0, description="Seconds added before every API answer.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with `error_status`.")
    error_status: int = Field(503, ge=500, le=599)
    error_after_apply: bool = Field(
        False,
        description="Those errors come after the request was applied: the answer is lost, not the request.",
    )
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered 429.")
    retry_after: float = Field(1.0, ge=0, description="Retry-After seconds sent with a 429.")
    retry_after_date: bool = Field(False, description="429s carry Retry-After as an HTTP date, not seconds.")
    path_prefix: str = Field("", description="Only requests whose path starts with this are faulted.")
    path_pattern: str = Field(
        "", description="Only requests whose path matches this regular expression (searched) are faulted."
    )
    methods: list[str] = Field(
        default_factory=list, description="Only these methods are faulted (empty = all)."
    )
    proxy_status: int = Field(
        0, description="Answer with this status and a proxy's HTML page (e.g. 413 on uploads); 0 = off."
    )
    max_upload_bytes: int = Field(
        0,
        ge=0,
        description="Requests with a body larger than this many bytes get the proxy's 413 page (nginx's"
        " client_max_body_size); 0 = off. Path and method filters apply.",
    )
    no_content: bool = Field(
        False, description="A success is answered 204 with no body (the request is applied all the same)."
    )
    redirect_status: int = Field(0, description="Answer with this redirect (301..308) first; 0 = off.")
    redirect_to: str = Field(
        "", description="Redirect target origin (http://host:port); empty = the same origin, same path."
    )
    echo_auth_status: int = Field(
        0, description="Answer with this status and an HTML error page that echoes the Authorization header."
    )
    echo_auth_cut: int = Field(
        -1, description="The echo page ends after this many characters of the credential (-1: whole page)."
    )
    clock_offset: float = Field(
        0.0, description="Seconds added to the emulator's clock: timestamps it makes and the Date header."
    )
    list_order: Literal["newest_first", "oldest_first"] = Field(
        "newest_first", description="Atlas: order of the issue and session lists."
    )
    null_attachment_id: bool = Field(
        False, description="Atlas: upload-files answers attachment_id null (the files are not attached)."
    )
    null_issue_status: bool = Field(False, description="Atlas: issues are answered with status null.")
    soft_delete_comments: bool = Field(
        False, description="Atlas: a deleted comment stays in the list with is_deleted true."
    )
    report_delay: float | None = Field(
        None,
        ge=0,
        description="Atlas: seconds a report requested from now on takes to finish (null: the emulator's"
        " own `report_delay`).",
    )
    report_outcome: Literal["completed", "failed", "cancelled"] = Field(
        "completed", description="Atlas: how a report requested from now on ends (`failed`: no summary)."
    )
    upload_bytes_per_sec: float = Field(
        0.0, ge=0, description="Slow uploads: request bodies read at this rate."
    )
    ws_drop_every: float = Field(0.0, ge=0, description="Archetype: close session websockets after N s.")
    session_expire_after: float = Field(0.0, ge=0, description="Archetype: sessions expire N s after create.")
    no_free_runner: bool = Field(False, description="Archetype: session create answers 'no runner' errors.")
    runner_error_text: str = Field(
        "", description="Archetype: the text of that error (empty: 'Failed to allocate lens runner ...')."
    )
    lens_routes: dict[str, Literal["both", "session_read", "sse"]] = Field(
        default_factory=dict,
        description="Archetype: where a lens (by id) delivers its outputs; unlisted lenses: both.",
    )

    @field_validator("redirect_status")
    @classmethod
    def _redirect(cls, value: int) -> int:
        if value and value not in REDIRECT_STATUSES:
            raise ValueError(f"redirect_status must be 0 or one of {sorted(REDIRECT_STATUSES)}")
        return value

    @field_validator("path_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        re.compile(value)
        return value


class FaultInjector:
    """Holds the switches and applies the HTTP-level ones as an aiohttp middleware."""

    def __init__(self, initial: dict[str, Any] | None = None, seed: int | None = None) -> None:
        self.settings = FaultSettings.model_validate(initial or {})
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # "METHOD /path" of every API request
        self._rng = random.Random(seed)

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        merged = {**self.settings.model_dump(), **changes}
        self.settings = FaultSettings.model_validate(merged)
        return self.settings

    def reset(self) -> None:
        self.settings = FaultSettings()

    def _applies(self, request: web.Request) -> bool:
        s = self.settings
        if request.path.startswith(ADMIN_PREFIX):
            return False
        if s.path_prefix and not request.path.startswith(s.path_prefix):
            return False
        if s.path_pattern and not re.search(s.path_pattern, request.path):
            return False
        return not (s.methods and request.method.upper() not in {m.upper() for m in s.methods})

    def now(self) -> float:
        """The emulator's clock: Unix time plus the `clock_offset` switch."""
        return time.time() + self.settings.clock_offset

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        self.requests[f"{request.method} {request.path}"] += 1
        second_hop = REDIRECTED_MARK in request.query
        if second_hop:
            request = request.clone(rel_url=request.rel_url.without_query_params(REDIRECTED_MARK))
        if not self._applies(request):
            return self._dated(await handler(request))
        return self._dated(await self._faulted(request, handler, second_hop))

    def _dated(self, response: web.StreamResponse) -> web.StreamResponse:
        if self.settings.clock_offset and not response.prepared:
            response.headers["Date"] = formatdate(self.now(), usegmt=True)
        return response

    async def _faulted(self, request: web.Request, handler: Handler, second_hop: bool) -> web.StreamResponse:
        s = self.settings
        if s.latency > 0:
            self.injected["latency"] += 1
            await asyncio.sleep(s.latency)
        if s.echo_auth_status:
            self.injected["echo_auth"] += 1
            return _echo_page(s.echo_auth_status, request.headers.get("Authorization", ""), s.echo_auth_cut)
        if s.proxy_status:
            self.injected[f"proxy_{s.proxy_status}"] += 1
            return _proxy_page(s.proxy_status)
        if s.max_upload_bytes and await _body_size(request) > s.max_upload_bytes:
            self.injected["too_large"] += 1
            return _proxy_page(413)
        if s.redirect_status and not second_hop:
            self.injected[f"redirect_{s.redirect_status}"] += 1
            return _redirect(request, s.redirect_status, s.redirect_to)
        roll = self._rng.random()
        if roll < s.rate_limit_rate:
            self.injected["429"] += 1
            when = formatdate(self.now() + s.retry_after, usegmt=True) if s.retry_after_date else None
            return web.json_response(
                {"detail": "Too Many Requests", "errors": ["rate limited"]},
                status=429,
                headers={"Retry-After": when or f"{s.retry_after:g}"},
            )
        if roll < s.rate_limit_rate + s.error_rate:
            self.injected[str(s.error_status)] += 1
            if s.error_after_apply:
                self.injected["applied_then_error"] += 1
                await handler(request)
            return web.json_response(
                {"detail": "injected server error", "errors": ["injected server error"]},
                status=s.error_status,
            )
        if s.upload_bytes_per_sec > 0 and request.can_read_body:
            self.injected["slow_upload"] += 1
            body = await _read_slowly(request, s.upload_bytes_per_sec)
            _replay_body(request, body)
        response = await handler(request)
        if s.no_content and 200 <= response.status < 300 and not response.prepared:
            self.injected["no_content"] += 1
            return web.Response(status=204)
        return response


_REASONS = {
    413: "Request Entity Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}


def _proxy_page(status: int) -> web.Response:
    """What nginx in front of an API answers: HTML, not the API's JSON."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


def _echo_page(status: int, authorization: str, cut: int) -> web.Response:
    """A debugging proxy's error page that prints the request's headers, the credential among them;
    with `cut` >= 0 the page stops after that many characters of the credential (a cut page)."""
    scheme, _, credential = authorization.partition(" ")
    shown = credential if cut < 0 else credential[:cut]
    page = (
        "<html><head><title>Bad Request</title></head><body><h1>Bad Request</h1>"
        f"<p>The request could not be processed.</p><pre>Authorization: {html.escape(scheme)} {shown}"
    )
    if cut < 0:
        page += "\nUser-Agent: edge-agent</pre></body></html>"
    return web.Response(status=status, text=page, content_type="text/html")


def _redirect(request: web.Request, status: int, to: str) -> web.Response:
    """To another origin (`to`) with the same path and query, or to this one with a marker that makes
    the second hop reach the API."""
    if to:
        location = to.rstrip("/") + str(request.rel_url)
    else:
        location = str(request.rel_url.update_query({REDIRECTED_MARK: "1"}))
    return web.Response(status=status, headers={"Location": location})


async def _body_size(request: web.Request) -> int:
    """The request body's size: its Content-Length, else (chunked) read and made readable again."""
    if request.content_length is not None:
        return request.content_length
    if not request.can_read_body:
        return 0
    body = await request.read()
    _replay_body(request, body)
    return len(body)


async def _read_slowly(request: web.Request, rate: float) -> bytes:
    chunks = []
    chunk_size = max(1, int(rate / 10))
    while True:
        chunk = await request.content.read(chunk_size)
        if not chunk:
            break
        chunks.append(chunk)
        await asyncio.sleep(len(chunk) / rate)
    return b"".join(chunks)


def _replay_body(request: web.Request, body: bytes) -> None:
    """Make the body read slowly readable again by the handler, however it reads it.

    `.read()`/`.json()` are served from `_read_bytes`, but `.multipart()`/`.post()` read the payload
    stream, which the slow read has drained: give them a fresh stream holding the same bytes.
    """
    replay = StreamReader(request.protocol, limit=max(len(body), 2**16), loop=asyncio.get_running_loop())
    if body:
        replay.feed_data(body)
    replay.feed_eof()
    request._payload = replay
    request._read_bytes = body
