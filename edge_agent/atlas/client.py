"""Atlas REST client (aiohttp): sessions and their files, issues and comments, test runs, cards, steps.

Every request goes through the shared transport (`edge_agent.http`), which decides what an answer
means (any 2xx is success, 204 included), follows same-origin redirects only, reads `Retry-After`,
scrubs the token out of server text and retries idempotent calls a few times. This module holds only
Atlas's calls, its enumerations and limits, and its answer shapes; failures are the typed exceptions
of `edge_agent.atlas.errors` (`retryable`, `outcome_unknown`, `retry_after`).

- POST creates are sent once: Atlas has no idempotency keys, so a blind retry after a lost answer
  could make a duplicate. The durable outbox decides, after looking for the result with
  `find_issue_by_tag` / `find_attachment_by_name`. Reads and updates (GET/PUT/PATCH/DELETE) are
  idempotent and are retried a few times by the transport.
- An update answered without a body (204, or an empty 200) succeeded: the object is read back with a
  GET rather than the PATCH being sent again.
- Look-ups do not depend on list order (not documented): they page through within a bound.

Inputs with documented limits are checked before sending (comment 1..10,000 characters and at most 10
attachments, step title at most 100 characters, the enumerations), so a bad request fails at once with
`AtlasValidationError` (status None) instead of becoming a stored job the server will refuse forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from edge_agent.atlas.errors import LOGIN_HINT, AtlasProtocolError, from_failure, invalid
from edge_agent.atlas.models import (
    EXECUTION_STATUSES,
    ISSUE_PRIORITIES,
    ISSUE_STATUSES,
    REPORT_SCOPES,
    Attachment,
    Card,
    Comment,
    Issue,
    Page,
    Report,
    Session,
    Step,
    TestRun,
)
from edge_agent.config import AtlasSection
from edge_agent.http import NO_RETRY as NO_RETRY
from edge_agent.http import Failure, RetryPolicy, Transport
from edge_agent.logs import get_logger

log = get_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})
MAX_COMMENT_CHARS = 10_000
MAX_COMMENT_ATTACHMENTS = 10
MAX_STEP_TITLE_CHARS = 100
MAX_ISSUE_PAGE = 1000
MAX_COMMENT_PAGE = 1000
# A look-up by tag reads at most this many issues (10 GETs of 1000): bounded cost after an ambiguous
# create, enough for years of a bench's issues; a tenant with more is told in the log.
MAX_ISSUE_SCAN = 10_000

_M = TypeVar("_M", bound=BaseModel)

# One file to upload: (file name as Atlas shows it, bytes or a path streamed from disk, content type).
UploadFile = tuple[str, bytes | Path, str]


AtlasRetryPolicy = RetryPolicy  # the transport's in-call retries, under the name callers know


def atlas_timestamp(value: datetime | float) -> str:
    """Atlas's timestamp shape: ISO 8601, microseconds, no zone, UTC (`2026-04-13T10:30:00.000000`).

    A float is Unix time; a naive datetime is taken as UTC already; an aware one is converted.
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    else:
        moment = datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def parse_atlas_timestamp(text: str | None) -> float | None:
    """Unix time of an Atlas timestamp (no zone means UTC; a zone is honoured); None if unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


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
        self.retry = retry or AtlasRetryPolicy()
        self._upload_timeout = upload_timeout
        self.transport = Transport(
            self.api_base,
            token,
            service="atlas",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=self.retry,
            sleep=sleep,
            clock=clock,
        )

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
        await self.transport.close()

    @property
    def server_clock_offset(self) -> float | None:
        """Atlas's clock minus this host's, from the latest answer's `Date` header (None before one)."""
        return self.transport.clock_offset

    # -- sessions ---------------------------------------------------------------------------------

    async def create_session(self, title: str | None = None) -> Session:
        body: dict[str, Any] = {} if title is None else {"title": title}
        return self._model(Session, await self.call("POST", "/sessions", json_body=body), "POST", "/sessions")

    async def get_session(self, session_id: str, *, retry: AtlasRetryPolicy | None = None) -> Session:
        """`retry=NO_RETRY`: one request, e.g. to probe whether Atlas answers at all."""
        path = f"/sessions/{_seg(session_id)}"
        return self._model(Session, await self.call("GET", path, retry=retry), "GET", path)

    async def list_sessions(self) -> list[Session]:
        return self._page(Session, await self.call("GET", "/sessions"), "GET", "/sessions").items

    async def delete_session(self, session_id: str) -> None:
        await self.call("DELETE", f"/sessions/{_seg(session_id)}", need_body=False)

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
        missing = [name for name, content, _ in files if isinstance(content, Path) and not content.is_file()]
        if missing:
            raise FileNotFoundError(f"no such file to upload: {', '.join(missing)}")
        parts = [("files", name, content, content_type) for name, content, content_type in files]
        body = await self.call("POST", path, files=parts, read_timeout=self._upload_timeout)
        if not isinstance(body, list):
            raise AtlasProtocolError(
                "POST", path, reason="expected a list of attachments", outcome_unknown=True
            )
        return [self._model(Attachment, item, "POST", path) for item in body]

    async def delete_attachment(self, session_id: str, attachment_id: str) -> None:
        path = f"/sessions/{_seg(session_id)}/attachments/{_seg(attachment_id)}"
        await self.call("DELETE", path, need_body=False)

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
        body = await self._patch(path, fields, problems)
        return await self.get_issue(issue_id) if body is None else self._model(Issue, body, "PATCH", path)

    async def find_issue_by_tag(self, tag: str, *, max_items: int = MAX_ISSUE_SCAN) -> Issue | None:
        """An issue carrying `tag` (any status), or None: the outbox's look-up after a create of unknown
        outcome (`edge-agent:<anomaly-id>` tags).

        The list's order is not documented, so nothing is assumed of it: pages of 1000 are read until
        one comes back short or `max_items` issues were read, stopping at the first match. A look-up
        that the bound stopped says so in the log (a match beyond it would be missed).
        """
        page_size = min(max(max_items, 1), MAX_ISSUE_PAGE)
        read = 0
        async for issue in self.iter_issues(page_size=page_size, max_items=max_items + 1):
            if read >= max_items:
                log.warning(
                    "atlas_issue_lookup_bounded",
                    tag=tag,
                    issues_read=read,
                    note="more issues than the look-up reads; a match beyond them is not seen",
                )
                return None
            read += 1
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
        body = await self._patch(path, fields, problems)
        if body is None:
            return await self._read_step(run_id, card_id, step_id)
        return self._model(Step, body, "PATCH", path)

    # -- analysis reports -------------------------------------------------------------------------

    async def create_report(
        self,
        run_id: str,
        scope: str,
        *,
        test_card_id: str | None = None,
        test_step_id: str | None = None,
        analysis_context: str = "",
    ) -> Report:
        """Ask for Atlas's analysis of a run, or of one card or step of it (those ids are required for
        those scopes). Starts `pending`: poll `get_report` until a status of REPORT_FINAL_STATUSES."""
        path = f"/test-runs/{_seg(run_id)}/reports"
        problems = _enum_problems("scope", scope, REPORT_SCOPES)
        if scope in ("card", "step") and not test_card_id:
            problems.append(f"test_card_id is required for scope {scope}")
        if scope == "step" and not test_step_id:
            problems.append("test_step_id is required for scope step")
        if problems:
            raise invalid("POST", path, problems)
        body: dict[str, Any] = {"scope": scope, "analysis_context": analysis_context}
        if test_card_id:
            body["test_card_id"] = test_card_id
        if test_step_id:
            body["test_step_id"] = test_step_id
        return self._model(Report, await self.call("POST", path, json_body=body), "POST", path)

    async def get_report(self, run_id: str, report_id: str) -> Report:
        path = f"/test-runs/{_seg(run_id)}/reports/{_seg(report_id)}"
        return self._model(Report, await self.call("GET", path), "GET", path)

    async def list_reports(self, run_id: str) -> list[Report]:
        path = f"/test-runs/{_seg(run_id)}/reports"
        return self._page(Report, await self.call("GET", path), "GET", path).items

    # -- plumbing ---------------------------------------------------------------------------------

    async def _patch(self, path: str, fields: dict[str, Any], problems: list[str]) -> Any:
        """PATCH only the fields given (None = leave as is); local problems raise before sending.
        None when the server answered without a body (204): the update was applied all the same."""
        body = {k: v for k, v in fields.items() if v is not None}
        if not body:
            problems.append("nothing to update")
        if problems:
            raise invalid("PATCH", path, problems)
        return await self.call("PATCH", path, json_body=body, need_body=False)

    async def _read_step(self, run_id: str, card_id: str, step_id: str) -> Step:
        """A step as the server holds it, read through its run (steps have no GET of their own)."""
        run = await self.get_test_run(run_id)
        for card in run.test_cards:
            if card.uuid == card_id:
                for step in card.test_steps:
                    if step.uuid == step_id:
                        return step
        path = f"/test-runs/{_seg(run_id)}"
        raise AtlasProtocolError("GET", path, reason=f"step {step_id} is not in card {card_id} of the run")

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
        files: Sequence[tuple[str, str, bytes | Path, str]] = (),
        read_timeout: float | None = None,
        retry: AtlasRetryPolicy | None = None,
        need_body: bool = True,
    ) -> Any:
        """One API call: the decoded JSON body (None for an empty answer when `need_body` is False).
        Idempotent methods are retried by `retry` (default: the client's policy); POST is sent once."""
        method = method.upper()
        policy = retry or self.retry
        try:
            reply = await self.transport.request(
                method,
                path,
                json_body=json_body,
                params=params,
                files=files,
                read_timeout=read_timeout,
                retry=policy if method in IDEMPOTENT_METHODS else NO_RETRY,
                need_body=need_body,
            )
        except Failure as failure:
            raise from_failure(failure) from None
        return reply.body

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
