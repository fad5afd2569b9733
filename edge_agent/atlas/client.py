"""Atlas REST client (aiohttp): sessions and their files, issues and comments, test runs, cards, steps.

Discipline (the same as the lens client's):
- Per-phase timeouts, never aiohttp's single 300 s total: `connect_timeout` to connect, `read_timeout`
  between bytes of an answer; an upload gets `upload_timeout` instead, because the server says nothing
  until it has the whole body.
- Failures are the typed exceptions of `edge_agent.atlas.errors`, which say whether a retry may help
  and whether the request may have been acted on (`outcome_unknown`).
- POST creates are sent once: Atlas has no idempotency keys, so a blind retry after a lost answer could
  make a duplicate. The durable outbox decides, after looking for the result with `find_issue_by_tag` /
  `find_attachment_by_name`. Reads and updates (GET/PUT/PATCH/DELETE) are idempotent and are retried a
  few times here, with backoff, honouring a short `Retry-After`.
- `outcome_unknown` is conservative: a refused connection or a connect timeout sent nothing (False);
  any disconnect after that is True, even the common case of a pooled keep-alive connection the
  server had already closed, because from here that cannot be told from a server that took the
  request and died. The cost is one lookup by the outbox before it re-sends.
- Redirects are not followed: aiohttp would turn a redirected POST into a GET.
- The token lives in the session's headers only; server text is scrubbed of it before it reaches an
  exception or a log line.

Inputs with documented limits are checked before sending (comment 1..10,000 characters and at most 10
attachments, step title at most 100 characters, the enumerations), so a bad request fails at once with
`AtlasValidationError` (status None) instead of becoming a stored job the server will refuse forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from edge_agent.atlas.errors import (
    LOGIN_HINT,
    AtlasError,
    AtlasProtocolError,
    AtlasRequestError,
    AtlasRetryableError,
    Detail,
    http_error,
    invalid,
    parse_retry_after,
    scrub,
)
from edge_agent.atlas.models import (
    EXECUTION_STATUSES,
    ISSUE_PRIORITIES,
    ISSUE_STATUSES,
    Attachment,
    Card,
    Comment,
    Issue,
    Page,
    Session,
    Step,
    TestRun,
)
from edge_agent.backoff import Backoff
from edge_agent.config import AtlasSection
from edge_agent.logs import get_logger

log = get_logger(__name__)

USER_AGENT = "edge-agent"
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})
MAX_COMMENT_CHARS = 10_000
MAX_COMMENT_ATTACHMENTS = 10
MAX_STEP_TITLE_CHARS = 100
MAX_ISSUE_PAGE = 1000
MAX_COMMENT_PAGE = 1000
MAX_DETAIL_CHARS = 500  # of a non-JSON error body kept in an exception

_M = TypeVar("_M", bound=BaseModel)

# One file to upload: (file name as Atlas shows it, bytes or a path streamed from disk, content type).
UploadFile = tuple[str, bytes | Path, str]


@dataclass(slots=True, frozen=True)
class AtlasRetryPolicy:
    """In-client retries of idempotent calls. A `Retry-After` longer than `max_retry_after` is not
    slept on here: the error goes up and the caller (the outbox) schedules the wait durably."""

    attempts: int = 3
    base: float = 0.5
    cap: float = 5.0
    max_retry_after: float = 10.0


NO_RETRY = AtlasRetryPolicy(attempts=1)


def atlas_timestamp(value: datetime | float) -> str:
    """Atlas's timestamp shape: ISO 8601, microseconds, no zone, UTC (`2026-04-13T10:30:00.000000`).

    A float is Unix time; a naive datetime is taken as UTC already; an aware one is converted.
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    else:
        moment = datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def truncate_comment(text: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """`text` cut to `limit` characters with a visible note of how much was dropped."""
    if len(text) <= limit:
        return text
    # The note's own length depends on the count it reports; reserve for the largest possible count.
    reserve = len(f"\n… [truncated: {len(text)} more characters]")
    kept = text[: max(0, limit - reserve)]
    return f"{kept}\n… [truncated: {len(text) - len(kept)} more characters]"


def split_comment(text: str, limit: int = MAX_COMMENT_CHARS) -> list[str]:
    """`text` as consecutive comments of at most `limit` characters, each prefixed `(i/n) `, split at
    line ends where possible. Whitespace-only pieces are dropped (Atlas wants 1+ characters)."""
    if len(text) <= limit:
        return [text] if text.strip() else []
    body_limit = limit - 24  # room for "(9999/9999) "
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > body_limit:  # a single over-long line is cut hard
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:body_limit])
            line = line[body_limit:]
        if len(current) + len(line) > body_limit:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    pieces = [p for p in pieces if p.strip()]
    return [f"({i}/{len(pieces)}) {p}" for i, p in enumerate(pieces, 1)]


def _seg(value: str) -> str:
    """An id as one path segment: ids come from the server and must not be able to change the path."""
    return quote(value, safe="")


class AtlasClient:
    """`async with AtlasClient(api_base, token) as atlas: await atlas.create_session("bench-03 run")`.

    `api_base` is the API root, `$ATLAS_URL/api/v1` (`AtlasSection.api_base`).
    """

    def __init__(
        self,
        api_base: str,
        token: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        upload_timeout: float = 120.0,
        retry: AtlasRetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ValueError(f"no Atlas token configured: {LOGIN_HINT}")
        if not api_base.startswith(("http://", "https://")):
            raise ValueError("no Atlas URL configured: set atlas.url or ATLAS_URL, or run `atlas login`")
        self.api_base = api_base.rstrip("/")
        self._token = token
        self.retry = retry or AtlasRetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._upload_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=upload_timeout
        )
        self._http_session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, section: AtlasSection, **kwargs: Any) -> AtlasClient:
        token = section.token.get_secret_value() if section.token is not None else ""
        if not section.url:
            raise ValueError("no Atlas URL configured: set atlas.url or ATLAS_URL, or run `atlas login`")
        return cls(
            section.api_base,
            token,
            connect_timeout=section.connect_timeout,
            read_timeout=section.read_timeout,
            upload_timeout=section.upload_timeout,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"AtlasClient({self.api_base!r})"  # never the token

    async def __aenter__(self) -> AtlasClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http_session is not None:
            await self._http_session.close()
            self._http_session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._http_session is None or self._http_session.closed:
            self._http_session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT},
            )
        return self._http_session

    # -- sessions ---------------------------------------------------------------------------------

    async def create_session(self, title: str | None = None) -> Session:
        body: dict[str, Any] = {} if title is None else {"title": title}
        return self._model(Session, await self.call("POST", "/sessions", json_body=body), "POST", "/sessions")

    async def get_session(self, session_id: str) -> Session:
        path = f"/sessions/{_seg(session_id)}"
        return self._model(Session, await self.call("GET", path), "GET", path)

    async def list_sessions(self) -> list[Session]:
        return self._page(Session, await self.call("GET", "/sessions"), "GET", "/sessions").items

    async def delete_session(self, session_id: str) -> None:
        await self.call("DELETE", f"/sessions/{_seg(session_id)}")

    async def upload_files(self, session_id: str, files: Sequence[UploadFile]) -> list[Attachment]:
        """One multipart POST, one `files` part per file, in order; one attachment per file back.

        Paths are streamed from disk in chunks by aiohttp, not read whole. A missing path raises
        FileNotFoundError before anything is sent.
        """
        path = f"/sessions/{_seg(session_id)}/upload-files"
        problems = [] if files else ["at least one file is needed"]
        problems += [f"file {i}: empty file name" for i, (name, _, _) in enumerate(files) if not name]
        if problems:
            raise invalid("POST", path, problems)
        with contextlib.ExitStack() as stack:
            form = aiohttp.FormData()
            for name, content, content_type in files:
                data: Any = stack.enter_context(content.open("rb")) if isinstance(content, Path) else content
                form.add_field("files", data, filename=name, content_type=content_type)
            body = await self.call("POST", path, data=form, phase_timeouts=self._upload_timeout)
        if not isinstance(body, list):
            raise AtlasProtocolError(
                "POST", path, reason="expected a list of attachments", outcome_unknown=True
            )
        return [self._model(Attachment, item, "POST", path) for item in body]

    async def delete_attachment(self, session_id: str, attachment_id: str) -> None:
        await self.call("DELETE", f"/sessions/{_seg(session_id)}/attachments/{_seg(attachment_id)}")

    async def find_attachment_by_name(self, session_id: str, name: str) -> Attachment | None:
        """The session's attachment called `name` that has an id (the newest one if an ambiguous
        upload made several), or None. The outbox's lookup after an upload of unknown outcome."""
        session = await self.get_session(session_id)
        matches = [a for a in session.attachments if a.attachment_name == name and a.attachment_id]
        if not matches:
            return None
        # Stable: by creation time, then by position; the timestamp shape sorts as text.
        return max(enumerate(matches), key=lambda im: (im[1].attachment_created_at or "", im[0]))[1]

    # -- issues -----------------------------------------------------------------------------------

    async def create_issue(
        self,
        title: str,
        *,
        description: Sequence[Any] = (),
        priority: str | None = None,
        tags: Sequence[str] = (),
        session_ids: Sequence[str] = (),
        attachment_ids: Sequence[str] = (),
        status: str | None = None,
        owner: str | None = None,
        resolution_summary: str | None = None,
    ) -> Issue:
        """`description` defaults to `[]`, the only documented-safe value (the block grammar is not
        public). Omitted optional fields take the server's defaults (open, low, Unassigned)."""
        problems = [] if title.strip() else ["title must not be empty"]
        problems += _enum_problems("priority", priority, ISSUE_PRIORITIES)
        problems += _enum_problems("status", status, ISSUE_STATUSES)
        if problems:
            raise invalid("POST", "/issues", problems)
        body: dict[str, Any] = {
            "title": title,
            "description": list(description),
            "tags": list(tags),
            "session_ids": list(session_ids),
            "attachment_ids": list(attachment_ids),
        }
        optional = {"priority": priority, "status": status, "owner": owner}
        body.update({k: v for k, v in optional.items() if v is not None})
        if resolution_summary is not None:
            body["resolution_summary"] = resolution_summary
        return self._model(Issue, await self.call("POST", "/issues", json_body=body), "POST", "/issues")

    async def list_issues(
        self,
        *,
        status: Sequence[str] = (),
        priority: Sequence[str] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> Page[Issue]:
        """One page, newest first (INFERRED: the docs do not give the order)."""
        problems = [p for s in status for p in _enum_problems("status", s, ISSUE_STATUSES)]
        problems += [p for s in priority for p in _enum_problems("priority", s, ISSUE_PRIORITIES)]
        if not 1 <= limit <= MAX_ISSUE_PAGE:
            problems.append(f"limit must be 1..{MAX_ISSUE_PAGE}")
        if offset < 0:
            problems.append("offset must be >= 0")
        if problems:
            raise invalid("GET", "/issues", problems)
        params = [("status", s) for s in status] + [("priority", p) for p in priority]
        params += [("limit", str(limit)), ("offset", str(offset))]
        return self._page(Issue, await self.call("GET", "/issues", params=params), "GET", "/issues")

    async def iter_issues(
        self,
        *,
        status: Sequence[str] = (),
        priority: Sequence[str] = (),
        page_size: int = 100,
        max_items: int | None = None,
    ) -> AsyncIterator[Issue]:
        """Every matching issue, page by page (offset += len(items)) until a page comes back short
        (whether `count` is a total is not documented, so it is not trusted), or `max_items`."""
        offset = 0
        seen = 0
        while max_items is None or seen < max_items:
            page = await self.list_issues(status=status, priority=priority, limit=page_size, offset=offset)
            for issue in page.items:
                if max_items is not None and seen >= max_items:
                    return
                seen += 1
                yield issue
            if len(page.items) < page_size:
                return
            offset += len(page.items)

    async def get_issue(self, issue_id: str) -> Issue:
        path = f"/issues/{_seg(issue_id)}"
        return self._model(Issue, await self.call("GET", path), "GET", path)

    async def patch_issue(
        self,
        issue_id: str,
        *,
        title: str | None = None,
        status: str | None = None,
        priority: str | None = None,
        tags: Sequence[str] | None = None,
        owner: str | None = None,
        resolution_summary: str | None = None,
    ) -> Issue:
        """Only the fields given are sent (PATCH semantics). `tags` replaces the whole list."""
        path = f"/issues/{_seg(issue_id)}"
        problems = _enum_problems("status", status, ISSUE_STATUSES)
        problems += _enum_problems("priority", priority, ISSUE_PRIORITIES)
        fields: dict[str, Any] = {
            "title": title,
            "status": status,
            "priority": priority,
            "tags": None if tags is None else list(tags),
            "owner": owner,
            "resolution_summary": resolution_summary,
        }
        return self._model(Issue, await self._patch(path, fields, problems), "PATCH", path)

    async def find_issue_by_tag(self, tag: str, *, recent: int = 200) -> Issue | None:
        """The newest issue carrying `tag` among the `recent` newest issues (any status), or None.

        The outbox's lookup after a create of unknown outcome (`edge-agent:<anomaly-id>` tags). Relies on
        the list being newest first (INFERRED); `recent` bounds the cost when the tenant is large.
        """
        async for issue in self.iter_issues(page_size=min(max(recent, 1), MAX_ISSUE_PAGE), max_items=recent):
            if tag in issue.tags:
                return issue
        return None

    # -- comments ---------------------------------------------------------------------------------

    async def add_comment(
        self,
        issue_id: str,
        content: str,
        *,
        attachment_ids: Sequence[str] = (),
        truncate: bool = False,
    ) -> Comment:
        """Content must be 1..10,000 characters. Longer content is rejected (AtlasValidationError)
        unless `truncate=True`, which cuts it with a visible note (`truncate_comment`); to keep all of a
        long narrative, post the pieces of `split_comment` one by one instead."""
        path = f"/issues/{_seg(issue_id)}/comments"
        if truncate:
            content = truncate_comment(content)
        problems = [] if content.strip() else ["content must not be empty"]
        if len(content) > MAX_COMMENT_CHARS:
            problems.append(f"content is {len(content)} characters, at most {MAX_COMMENT_CHARS} allowed")
        if len(attachment_ids) > MAX_COMMENT_ATTACHMENTS:
            problems.append(f"at most {MAX_COMMENT_ATTACHMENTS} attachment ids, got {len(attachment_ids)}")
        if problems:
            raise invalid("POST", path, problems)
        body: dict[str, Any] = {"content": content}
        if attachment_ids:
            body["attachment_ids"] = list(attachment_ids)
        return self._model(Comment, await self.call("POST", path, json_body=body), "POST", path)

    async def list_comments(self, issue_id: str, *, limit: int = 50, offset: int = 0) -> Page[Comment]:
        path = f"/issues/{_seg(issue_id)}/comments"
        if not 1 <= limit <= MAX_COMMENT_PAGE or offset < 0:
            raise invalid("GET", path, [f"limit must be 1..{MAX_COMMENT_PAGE} and offset >= 0"])
        params = [("limit", str(limit)), ("offset", str(offset))]
        return self._page(Comment, await self.call("GET", path, params=params), "GET", path)

    # -- test runs, cards, steps ------------------------------------------------------------------

    async def create_test_run(self, title: str, system_id: str, description: str = "") -> TestRun:
        if not title.strip() or not system_id:
            raise invalid("POST", "/test-runs", ["title and system_id are required"])
        body = {"title": title, "system_id": system_id, "description": description}
        return self._model(
            TestRun, await self.call("POST", "/test-runs", json_body=body), "POST", "/test-runs"
        )

    async def get_test_run(self, run_id: str) -> TestRun:
        path = f"/test-runs/{_seg(run_id)}"
        return self._model(TestRun, await self.call("GET", path), "GET", path)

    async def create_card(
        self, run_id: str, title: str, description: str = "", order: int | None = None
    ) -> Card:
        path = f"/test-runs/{_seg(run_id)}/cards"
        if not title.strip():
            raise invalid("POST", path, ["title must not be empty"])
        body: dict[str, Any] = {"title": title, "description": description}
        if order is not None:
            body["order"] = order
        return self._model(Card, await self.call("POST", path, json_body=body), "POST", path)

    async def create_step(
        self, run_id: str, card_id: str, title: str, description: str = "", order: int | None = None
    ) -> Step:
        path = f"/test-runs/{_seg(run_id)}/cards/{_seg(card_id)}/steps"
        problems = _step_title_problems(title)
        if problems:
            raise invalid("POST", path, problems)
        body: dict[str, Any] = {"title": title, "description": description}
        if order is not None:
            body["order"] = order
        return self._model(Step, await self.call("POST", path, json_body=body), "POST", path)

    async def patch_step(
        self,
        run_id: str,
        card_id: str,
        step_id: str,
        *,
        execution_status: str | None = None,
        exception: str | None = None,
        started_at: datetime | float | None = None,
        ended_at: datetime | float | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> Step:
        """Record an outcome. Times are Unix seconds or datetimes, sent in Atlas's shape (UTC, no zone)."""
        path = f"/test-runs/{_seg(run_id)}/cards/{_seg(card_id)}/steps/{_seg(step_id)}"
        problems = _enum_problems("execution_status", execution_status, EXECUTION_STATUSES)
        if title is not None:
            problems += _step_title_problems(title)
        fields: dict[str, Any] = {
            "execution_status": execution_status,
            "exception": exception,
            "started_at": None if started_at is None else atlas_timestamp(started_at),
            "ended_at": None if ended_at is None else atlas_timestamp(ended_at),
            "title": title,
            "description": description,
        }
        return self._model(Step, await self._patch(path, fields, problems), "PATCH", path)

    # -- plumbing ---------------------------------------------------------------------------------

    async def _patch(self, path: str, fields: dict[str, Any], problems: list[str]) -> Any:
        """PATCH only the fields given (None = leave as is); local problems raise before sending."""
        body = {k: v for k, v in fields.items() if v is not None}
        if not body:
            problems.append("nothing to update")
        if problems:
            raise invalid("PATCH", path, problems)
        return await self.call("PATCH", path, json_body=body)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
        data: aiohttp.FormData | None = None,
        phase_timeouts: aiohttp.ClientTimeout | None = None,
        retry: AtlasRetryPolicy | None = None,
    ) -> Any:
        """One API call: the decoded JSON body (None for a 204). Idempotent methods are retried by
        `retry` (default: the client's policy); POST is sent exactly once."""
        method = method.upper()
        policy = retry or self.retry
        attempts = policy.attempts if method in IDEMPOTENT_METHODS else 1
        backoff = Backoff(base=policy.base, cap=policy.cap, jitter=0.5)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, path, json_body, params, data, phase_timeouts)
            except AtlasError as exc:
                wait = backoff.next_delay()
                if exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                if not exc.retryable or attempt >= attempts or wait > policy.max_retry_after:
                    raise
                log.warning(
                    "atlas_api_retry",
                    method=method,
                    path=path,
                    attempt=attempt,
                    delay=round(wait, 3),
                    status=exc.status,
                    error=str(exc),
                )
                await self._sleep(wait)

    async def _once(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Sequence[tuple[str, str]] | None,
        data: aiohttp.FormData | None,
        phase_timeouts: aiohttp.ClientTimeout | None,
    ) -> Any:
        started = time.monotonic()
        try:
            async with self._http().request(
                method,
                self.api_base + path,
                json=json_body,
                params=params,
                data=data,
                timeout=phase_timeouts or self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                text = await response.text(errors="replace")
                retry_after_header = response.headers.get("Retry-After")
                location = response.headers.get("Location", "")
        # The order matters: a connect timeout is also a ServerTimeoutError, and it sent nothing.
        except aiohttp.ConnectionTimeoutError:
            raise self._no_answer(method, path, "connect timed out", sent=False) from None
        except aiohttp.ClientConnectorError as exc:
            raise self._no_answer(
                method, path, f"cannot connect ({exc.strerror or 'refused'})", sent=False
            ) from None
        except (aiohttp.ServerTimeoutError, TimeoutError):
            raise self._no_answer(method, path, "timed out waiting for the answer", sent=True) from None
        except aiohttp.ClientError as exc:
            raise self._no_answer(
                method, path, f"connection lost ({type(exc).__name__})", sent=True
            ) from None
        log.debug(
            "atlas_api_call",
            method=method,
            path=path,
            status=status,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        if status == 204:
            return None
        if 200 <= status < 300:
            try:
                return json.loads(text) if text.strip() else None
            except ValueError:
                raise AtlasProtocolError(
                    method, path, status=status, reason="answer is not JSON", outcome_unknown=method != "GET"
                ) from None
        if 300 <= status < 400:
            # The token must not follow a redirect to another host, and a POST must not become a GET.
            raise AtlasRequestError(
                method,
                path,
                status=status,
                reason=f"redirected to {scrub(location, self._token)!s}; set ATLAS_URL to the final address",
            )
        raise http_error(
            method,
            path,
            status,
            self._detail(text),
            parse_retry_after(retry_after_header, self._clock()),
        )

    def _no_answer(self, method: str, path: str, reason: str, *, sent: bool) -> AtlasRetryableError:
        return AtlasRetryableError(method, path, reason=reason, outcome_unknown=sent)

    def _detail(self, text: str) -> Detail:
        """The FastAPI-style `detail` (string or 422 list), else the start of the raw text."""
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            raw = body["detail"]
            detail: Detail = raw if isinstance(raw, str | list) else json.dumps(raw)
        else:
            detail = text.strip()[:MAX_DETAIL_CHARS] or None
        cleaned: Detail = scrub(detail, self._token)
        return cleaned

    def _model(self, model: type[_M], body: Any, method: str, path: str) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
            raise AtlasProtocolError(
                method,
                path,
                reason=f"unexpected answer shape for {model.__name__} (fields: {fields})",
                outcome_unknown=method != "GET",
            ) from None

    def _page(self, model: type[_M], body: Any, method: str, path: str) -> Page[_M]:
        page_model: type[Page[_M]] = Page[model]  # type: ignore[valid-type]
        return self._model(page_model, body, method, path)


def _enum_problems(name: str, value: str | None, allowed: Iterable[str]) -> list[str]:
    allowed_set = set(allowed)
    if value is None or value in allowed_set:
        return []
    return [f"{name} must be one of {', '.join(sorted(allowed_set))}, got {value!r}"]


def _step_title_problems(title: str) -> list[str]:
    if not title.strip():
        return ["title must not be empty"]
    if len(title) > MAX_STEP_TITLE_CHARS:
        return [f"title is {len(title)} characters, at most {MAX_STEP_TITLE_CHARS} allowed"]
    return []


def as_mapping(model: BaseModel) -> Mapping[str, Any]:
    """The whole answer as received (typed fields and extras), e.g. to store as an outbox job result."""
    return model.model_dump(mode="json")
