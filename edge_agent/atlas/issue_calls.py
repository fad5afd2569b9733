"""Atlas issues and their comments: create, list and page through, read, update, find by tag after a
create whose outcome is unknown; comments within their documented limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from edge_agent.atlas.api import AtlasApi, segment
from edge_agent.atlas.errors import invalid
from edge_agent.atlas.models import ISSUE_PRIORITIES, ISSUE_STATUSES, Comment, Issue, Page
from edge_agent.atlas.values import (
    MAX_COMMENT_ATTACHMENTS,
    MAX_COMMENT_CHARS,
    MAX_COMMENT_PAGE,
    MAX_ISSUE_PAGE,
    MAX_ISSUE_SCAN,
    enum_problems,
    truncate_comment,
)
from edge_agent.logs import get_logger

log = get_logger(__name__)


class IssueCalls(AtlasApi):
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
        problems += enum_problems("priority", priority, ISSUE_PRIORITIES)
        problems += enum_problems("status", status, ISSUE_STATUSES)
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
        problems = [p for s in status for p in enum_problems("status", s, ISSUE_STATUSES)]
        problems += [p for s in priority for p in enum_problems("priority", s, ISSUE_PRIORITIES)]
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
        path = f"/issues/{segment(issue_id)}"
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
        path = f"/issues/{segment(issue_id)}"
        problems = enum_problems("status", status, ISSUE_STATUSES)
        problems += enum_problems("priority", priority, ISSUE_PRIORITIES)
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
        path = f"/issues/{segment(issue_id)}/comments"
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
        path = f"/issues/{segment(issue_id)}/comments"
        if not 1 <= limit <= MAX_COMMENT_PAGE or offset < 0:
            raise invalid("GET", path, [f"limit must be 1..{MAX_COMMENT_PAGE} and offset >= 0"])
        params = [("limit", str(limit)), ("offset", str(offset))]
        return self._page(Comment, await self.call("GET", path, params=params), "GET", path)
