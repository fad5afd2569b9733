"""The one HTTP transport (aiohttp) under the Atlas and lens clients. It alone decides:

- success: any 2xx. An empty or non-JSON body is success where the caller needs no result
  (`need_body=False`: a 204 on a PATCH or a lens destroy); where it needs one, it is a `PROTOCOL`
  failure (outcome unknown unless a GET), and the client reads the object back or looks it up.
- redirects: aiohttp's own following is off (it turns a redirected POST into a GET and would carry
  the token anywhere). Same-origin 307/308 are followed keeping method, body and credentials (and
  301/302/303 for a GET, which stays a GET), at most `max_redirects` hops. A redirect to another
  origin (scheme, host or port) is refused with a clear error and nothing is sent there.
- `Retry-After`: one parser (`retry_after.py`), seconds or HTTP date; a date is read against the
  answer's own `Date` header when it has one, so the two clocks need not agree.
- transient versus permanent: the table in `errors.py`. Idempotent calls are retried here, a few
  times, with jittered backoff honouring a short `Retry-After` (each retry logged at debug only); a
  longer one goes up to the caller (the durable outbox, the lens lifecycle) which waits for it durably
  and logs the condition. A call that is not idempotent is retried only when the failure proves
  nothing was applied (refused, 408/425/429).
- secrets: server text is scrubbed of the client's secrets (`scrub.py`) before it is cut, put in an
  exception or logged; error bodies are read up to `MAX_ERROR_BYTES` only (`answers.py`).
- timeouts: per phase, never aiohttp's single 300 s total: `connect_timeout` to connect, a read
  timeout between bytes of an answer (per call for uploads, which wait for the whole body).
- the server's clock: `clock_offset` (server minus local, from the latest `Date` header) lets a
  look-up compare the server's timestamps with a moment taken on this host's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from edge_agent.backoff import Backoff
from edge_agent.http.answers import decode_body, failure_of, server_time
from edge_agent.http.errors import Failure, Kind
from edge_agent.http.scrub import Scrubber
from edge_agent.logs import get_logger
from edge_agent.tls import client_context

log = get_logger(__name__)

USER_AGENT = "edge-agent"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
FOLLOW_ANY_METHOD = frozenset({307, 308})
FOLLOW_SAFE_METHOD = frozenset({301, 302, 303})
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_REDIRECTS = 5
MAX_ERROR_CHARS = 500  # of error text kept in an exception

# One file of a multipart upload: (form field, file name, bytes or a path streamed from disk, type).
UploadPart = tuple[str, str, bytes | Path, str]
Params = Sequence[tuple[str, str]] | Mapping[str, str]


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """In-call retries. A `Retry-After` longer than `max_retry_after` is not slept on here."""

    attempts: int = 3
    base: float = 0.5
    cap: float = 5.0
    max_retry_after: float = 10.0
    jitter: float = 0.5


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(slots=True, frozen=True)
class Reply:
    status: int
    body: Any  # decoded JSON; None for an empty or non-JSON body the caller did not need
    server_time: float | None  # the answer's `Date` header, Unix time


@dataclass(slots=True, frozen=True)
class Origin:
    scheme: str
    host: str
    port: int | None

    @classmethod
    def of(cls, url: URL) -> Origin:
        return cls(url.scheme.lower(), (url.host or "").lower(), url.port)


class Transport:
    """`Transport("https://x/api/v1", token, service="atlas")`: requests relative to that base."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        service: str,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_redirects: int = MAX_REDIRECTS,
        max_error_chars: int = MAX_ERROR_CHARS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = Origin.of(URL(self.base_url))
        self.service = service
        self.retry = retry or RetryPolicy()
        self.max_redirects = max_redirects
        self.max_error_chars = max_error_chars
        self.scrubber = Scrubber([token])
        self.clock_offset: float | None = None
        self.redirects_followed = 0
        self._token = token
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r})"  # never the token

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT}

    def timeout(self, read: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            connect=self._connect_timeout,
            sock_connect=self._connect_timeout,
            sock_read=self._read_timeout if read is None else read,
        )

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Redirects stay on the base's origin (scheme included), so one choice holds for the
            # session: the process's one verifying context for HTTPS (edge_agent/tls.py).
            tls: ssl.SSLContext | bool = await client_context() if self.origin.scheme == "https" else True
            if self._session is None or self._session.closed:  # not made by a request meanwhile
                self._session = aiohttp.ClientSession(
                    timeout=self.timeout(),
                    headers=self.auth_headers,
                    connector=aiohttp.TCPConnector(ssl=tls),
                )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests ---------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Params | None = None,
        files: Sequence[UploadPart] = (),
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool | None = None,
        need_body: bool = True,
    ) -> Reply:
        """One API call, retried per `retry` (default: the transport's policy) as the module says."""
        method = method.upper()
        policy = retry or self.retry
        safe_to_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        backoff = Backoff(base=policy.base, cap=policy.cap, jitter=policy.jitter)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(
                    method, path, json_body, params, files, headers, read_timeout, need_body
                )
            except Failure as failure:
                wait = max(backoff.next_delay(), failure.retry_after or 0.0)
                if (
                    not failure.retryable
                    or attempt >= policy.attempts
                    or (failure.outcome_unknown and not safe_to_repeat)
                    or wait > policy.max_retry_after
                ):
                    raise
                # Debug: one call's few quick retries are detail; a call that still fails goes up to
                # its caller, which logs the condition once (the outbox's pause, the lens lifecycle).
                log.debug(
                    f"{self.service}_api_retry",
                    method=method,
                    path=path,
                    attempt=attempt,
                    delay=round(wait, 3),
                    status=failure.status,
                    error=str(failure),
                )
                await self._sleep(wait)

    async def _once(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Params | None,
        files: Sequence[UploadPart],
        headers: Mapping[str, str] | None,
        read_timeout: float | None,
        need_body: bool,
    ) -> Reply:
        started = time.monotonic()
        response = await self._open(method, path, json_body, params, files, headers, read_timeout)
        try:
            if not 200 <= response.status < 300:
                raise await self._failure(method, path, response)
            try:
                text = await response.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError):
                reason = "connection lost while reading the answer"
                raise self._no_answer(method, path, reason, True) from None
        finally:
            response.release()
        log.debug(
            f"{self.service}_api_call",
            method=method,
            path=path,
            status=response.status,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return Reply(response.status, decode_body(method, path, response.status, text, need_body),
                     server_time(response))  # fmt: skip

    async def iter_chunks(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """A streamed answer (SSE), chunk by chunk; no retry (the reader owns its reconnect loop).
        Every failure, also one in the middle of the stream, is a `Failure`."""
        response = await self._open(method.upper(), path, None, None, (), headers, None)
        try:
            if not 200 <= response.status < 300:
                raise await self._failure(method, path, response)
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._no_answer(method, path, _describe(exc), True) from None
        finally:
            response.release()

    # -- one exchange, redirects followed ---------------------------------------------------------

    async def _open(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Params | None,
        files: Sequence[UploadPart],
        headers: Mapping[str, str] | None,
        read_timeout: float | None,
    ) -> aiohttp.ClientResponse:
        """The final answer of one attempt (not yet read), after following what may be followed."""
        url: str | URL = self.base_url + path
        for _ in range(self.max_redirects + 1):
            with contextlib.ExitStack() as stack:
                data = _form(files, stack) if files else None
                try:
                    response = await (await self._http()).request(
                        method,
                        url,
                        json=json_body,
                        params=params,
                        data=data,
                        headers=headers,
                        timeout=self.timeout(read_timeout),
                        allow_redirects=False,
                    )
                # The order matters: a connect timeout is also a ServerTimeoutError, and it sent nothing.
                except aiohttp.ConnectionTimeoutError:
                    raise self._no_answer(method, path, "connect timed out", False) from None
                except aiohttp.ClientConnectorCertificateError as exc:
                    # Retried like any connect failure (the CA may be installed meanwhile), but a person
                    # has to act: say what to do.
                    reason = (
                        "cannot connect: the server's TLS certificate is not trusted"
                        f" ({exc.certificate_error}); if a lab CA or a TLS-inspecting proxy signs it, point"
                        " SSL_CERT_FILE at that CA"
                    )
                    raise self._no_answer(method, path, reason, False) from None
                except aiohttp.ClientConnectorError as exc:
                    reason = f"cannot connect ({exc.strerror or 'refused'})"
                    raise self._no_answer(method, path, reason, False) from None
                except (aiohttp.ServerTimeoutError, TimeoutError):
                    raise self._no_answer(method, path, "timed out waiting for the answer", True) from None
                except aiohttp.ClientError as exc:
                    raise self._no_answer(method, path, _describe(exc), True) from None
            self._note_server_time(response)
            if not self._follows(method, response.status):
                return response
            location = response.headers.get("Location", "")
            current = response.url
            response.release()
            url = self._redirect_target(method, path, response.status, current, location)
            params = None  # the Location carries its own query
            self.redirects_followed += 1
            log.info(f"{self.service}_api_redirect_followed", method=method, path=path,
                     status=response.status, to=self.scrubber.scrub(str(url)))  # fmt: skip
        reason = f"more than {self.max_redirects} redirects; set the service URL to the final address"
        raise Failure(method, path, Kind.PERMANENT, reason=reason)

    @staticmethod
    def _follows(method: str, status: int) -> bool:
        return status in FOLLOW_ANY_METHOD or (status in FOLLOW_SAFE_METHOD and method in SAFE_METHODS)

    def _redirect_target(self, method: str, path: str, status: int, current: URL, location: str) -> URL:
        if not location:
            raise Failure(method, path, Kind.PERMANENT, status=status, reason="a redirect without a Location")
        try:
            target = current.join(URL(location))
        except ValueError:
            target = None
        shown = self.scrubber.scrub_and_cut(location, self.max_error_chars)
        if target is None or not target.is_absolute():
            raise Failure(method, path, Kind.PERMANENT, status=status,
                          reason=f"a redirect to an unreadable Location ({shown})")  # fmt: skip
        if Origin.of(target) != self.origin:
            raise Failure(
                method,
                path,
                Kind.PERMANENT,
                status=status,
                reason=(
                    f"redirected to another origin ({shown}); not followed, so the credential is not sent"
                    f" there. If the service moved, set its URL to the new address"
                ),
            )
        return target

    # -- failures ---------------------------------------------------------------------------------

    def _no_answer(self, method: str, path: str, reason: str, sent: bool) -> Failure:
        return Failure(method, path, Kind.TRANSIENT, reason=self.scrubber.scrub(reason), outcome_unknown=sent)

    async def _failure(self, method: str, path: str, response: aiohttp.ClientResponse) -> Failure:
        """A non-2xx answer as a `Failure` (answers.py), scrubbed of this transport's secrets."""
        return await failure_of(method, path, response, self.scrubber, self.max_error_chars, self._clock)

    # -- the server's clock -----------------------------------------------------------------------

    def _note_server_time(self, response: aiohttp.ClientResponse) -> None:
        server = server_time(response)
        if server is not None:
            self.clock_offset = server - self._clock()


def _form(files: Sequence[UploadPart], stack: contextlib.ExitStack) -> aiohttp.FormData:
    """A fresh multipart body (a FormData is spent once sent, and a redirect sends it again).
    Paths are streamed from disk by aiohttp, not read whole."""
    form = aiohttp.FormData()
    for field, name, content, content_type in files:
        data: Any = stack.enter_context(content.open("rb")) if isinstance(content, Path) else content
        form.add_field(field, data, filename=name, content_type=content_type)
    return form


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    name = type(exc).__name__
    return f"connection lost ({name})"
