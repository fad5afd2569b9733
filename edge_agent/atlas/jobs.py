"""Outbox handlers for the reporter's Atlas job kinds: session create, evidence upload, issue (filed, or
joined as a repeat), issue update, comment. Each one can tell after an attempt of unknown outcome whether
that attempt made something (`find_existing`), so an outage, a timeout or a SIGKILL never makes a duplicate.

Ids a job needs (session, attachments, issue) come from its payload when they were known at enqueue
time, else from the results of the jobs it depends on: `<name>` in the payload wins over the result of
the job named by `<name>_job`. The reporter inlines what it already knows, so a job never depends on a
delivered job the outbox may have purged.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from edge_agent.atlas.client import (
    MAX_COMMENT_ATTACHMENTS,
    AtlasClient,
    UploadFile,
    atlas_timestamp,
    parse_atlas_timestamp,
)
from edge_agent.atlas.errors import (
    AtlasAuthError,
    AtlasError,
    AtlasNotFound,
    AtlasRetryableError,
    detail_text,
)
from edge_agent.atlas.models import Issue
from edge_agent.atlas.narrative import agent_tag, comment_marker, has_marker
from edge_agent.logs import get_logger
from edge_agent.outbox import DeliveryError, Job, Json, Outbox, Permanent, Retryable, Waiting

log = get_logger(__name__)

KIND_SESSION = "atlas.session"
KIND_UPLOAD = "atlas.upload"
KIND_ISSUE = "atlas.issue"
KIND_COMMENT = "atlas.comment"
KIND_ISSUE_UPDATE = "atlas.issue_update"

OPEN_STATUSES = frozenset({"open", "in_progress"})
# How far back a comment look-up reads (pages of 1000): a thread longer than that is not a bench's.
MAX_COMMENT_PAGES = 5

JobLookup = Callable[[int], Awaitable[Job | None]]


def delivery_error(err: AtlasError) -> DeliveryError:
    """Atlas's typed failure as the outbox's verdict. 401/403 become a Permanent with that status,
    which the outbox turns into its queue-wide `blocked: auth` pause (outbox/policy.py), not a failure."""
    text = str(err)
    if isinstance(err, AtlasRetryableError):
        return Retryable(err.status, err.retry_after, text, outcome_unknown=err.outcome_unknown)
    if isinstance(err, AtlasAuthError):
        return Permanent(err.status, detail_text(err.detail), text)
    return Permanent(err.status, detail_text(err.detail) or text, text)


def resolve(payload: Mapping[str, Any], deps: Mapping[int, Json], name: str) -> Any:
    """`payload[name]`, else `name` from a dependency's result (each kind's result has its own keys:
    `session_id`, `attachment_ids`, `issue_id`), so a payload need not know its deps' ids."""
    value = payload.get(name)
    if value is not None:
        return value
    for result in deps.values():
        if result.get(name) is not None:
            return result[name]
    raise Permanent(None, f"{name} is unknown: neither in the payload nor in a dependency's result")


def content_type_for(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


class SessionHandler:
    """Payload `{title, not_before}`: one Atlas session per bench run."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        try:
            session = await self.client.create_session(str(job.payload["title"]))
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"session_id": session.session_id}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        """Sessions carry no tags: the run's title, created no earlier than the run began, is the match.

        "The run began" (`not_before`) was taken on this host's clock and `session_created_at` is
        Atlas's: the moment is moved onto Atlas's clock by the offset the list answer's `Date` header
        gives, so an agent whose clock is minutes off still finds its session. Of several matches the
        first made is taken, whatever order the list comes in."""
        title = job.payload["title"]
        try:
            sessions = await self.client.list_sessions()
        except AtlasError as err:
            raise delivery_error(err) from None
        since = parse_atlas_timestamp(job.payload.get("not_before"))
        offset = self.client.server_clock_offset
        if since is not None and offset is not None:
            since += offset
        matches: list[tuple[float, str]] = []
        for session in sessions:
            created = parse_atlas_timestamp(session.session_created_at)
            if session.session_title == title and (
                since is None or (created is not None and created >= since)
            ):
                matches.append((created or 0.0, session.session_id))
        return {"session_id": min(matches)[1]} if matches else None


class UploadHandler:
    """Payload `{files: [paths], names: [atlas names], session_id?}`: one multipart POST (the session
    id from the session job's result when the payload has none). Result `{attachment_ids, names,
    missing, unattached}`: `unattached` names the files Atlas answered without an attachment id.

    Files that vanished from disk (a damaged state dir) are skipped and reported in the result: the
    issue still gets created, with what evidence exists, rather than failing with the upload.
    """

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    def _files(self, job: Job) -> tuple[list[UploadFile], list[str]]:
        paths = [Path(p) for p in job.payload.get("files", [])]
        names = list(job.payload.get("names") or [p.name for p in paths])
        present: list[UploadFile] = []
        missing: list[str] = []
        for path, name in zip(paths, names, strict=True):
            if path.is_file():
                present.append((name, path, content_type_for(name)))
            else:
                missing.append(name)
        return present, missing

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        session_id = resolve(job.payload, deps, "session_id")
        present, missing = self._files(job)
        if missing:
            log.warning("evidence_files_missing", job_id=job.id, names=missing)
        if not present:
            return {"attachment_ids": [], "names": [], "missing": missing}
        try:
            attachments = await self.client.upload_files(session_id, present)
        except AtlasError as err:
            raise delivery_error(err) from None
        ids = [a.attachment_id for a in attachments if a.attachment_id]
        # A null attachment_id (the page allows it) means that file is not attached: say which, so the
        # result is not read as "uploaded with all its evidence".
        unattached = [a.attachment_name for a in attachments if not a.attachment_id]
        if unattached:
            note = "Atlas answered no attachment id for these files; they are not linked"
            log.warning("atlas_upload_not_attached", job_id=job.id, names=unattached, note=note)
        names = [f[0] for f in present]
        return {"attachment_ids": ids, "names": names, "missing": missing, "unattached": unattached}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        session_id = resolve(job.payload, deps, "session_id")
        present, missing = self._files(job)
        ids: list[str] = []
        for name, _, _ in present:
            try:
                found = await self.client.find_attachment_by_name(session_id, name)
            except AtlasError as err:
                raise delivery_error(err) from None
            if found is None or not found.attachment_id:
                return None  # all of the job's files must be there to adopt; else upload them again
            ids.append(found.attachment_id)
        return {"attachment_ids": ids, "names": [f[0] for f in present], "missing": missing}


def _attachment_ids(payload: Mapping[str, Any], deps: Mapping[int, Json]) -> list[str]:
    for result in deps.values():
        if "attachment_ids" in result:
            return [str(a) for a in result["attachment_ids"]]
    return [str(a) for a in payload.get("attachment_ids", [])]


SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}


def _issue_status_open(status: str | None) -> bool:
    """An issue a repeat may join. A null status is unknown (the field is nullable), not closed: the
    agent would rather add to an issue a human can still see than file the same fault twice."""
    return status is None or status in OPEN_STATUSES


def _via(deps: Mapping[int, Json], payload: Mapping[str, Any]) -> str | None:
    """How the incident's issue job ended: "create" (it filed the issue) or "repeat" (it joined the
    open issue of the same fault); None when unknown (the issue was found by its tag)."""
    for result in deps.values():
        via = result.get("via")
        if isinstance(via, str):
            return via
    via = payload.get("via")
    return via if isinstance(via, str) else None


class IssueHandler:
    """Payload `{incident_id, title, description, priority, tags, session_id?, repeat?, lookup_first?}`.

    Files the incident's issue, or, when `repeat` names the issue of an earlier incident of the same
    fault and Atlas says it is still open (or says nothing: a null status), joins it: the incident's
    tags (its unique `edge-agent:<incident-id>` among them) are added and its priority raised if
    higher. Either way the issue then carries the incident's tag, which is how every later look-up
    finds it. Result `{issue_id, via: "create" | "repeat"}`."""

    def __init__(self, client: AtlasClient, job_lookup: JobLookup) -> None:
        self.client = client
        self.job_lookup = job_lookup

    async def _previous_issue(self, repeat: Mapping[str, Any]) -> str | None:
        issue_id = repeat.get("issue_id")
        if isinstance(issue_id, str) and issue_id:
            return issue_id
        job_id = repeat.get("job")
        if isinstance(job_id, int):
            job = await self.job_lookup(job_id)
            if job is not None and job.result is not None and job.result.get("issue_id"):
                return str(job.result["issue_id"])
            if job is not None and job.state.value in ("pending", "in_flight"):
                # Same group, so this cannot happen unless the group scheme changes: wait, visibly.
                raise Waiting("previous issue not filed yet", 1.0)
        previous = repeat.get("incident_id")
        if isinstance(previous, str) and previous:
            try:
                found = await self.client.find_issue_by_tag(agent_tag(previous))
            except AtlasError as err:
                raise delivery_error(err) from None
            return found.uuid if found is not None else None
        return None

    async def _join(self, issue_id: str, payload: Mapping[str, Any]) -> bool:
        """Add the incident to the still-open issue `issue_id`; False if it is closed or gone."""
        try:
            issue = await self.client.get_issue(issue_id)
            if not _issue_status_open(issue.status):
                return False
            if issue.status is None:
                log.info("atlas_issue_status_unknown", issue_id=issue.uuid, treated_as="open")
            await _merge_into_issue(self.client, issue, payload, retitle=False)
        except AtlasNotFound:
            return False  # deleted in Atlas: a new issue it is
        except AtlasError as err:
            raise delivery_error(err) from None
        return True

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        payload = job.payload
        if payload.get("lookup_first"):
            found = await self.find_existing(job, deps)
            if found is not None:
                return found
        repeat = payload.get("repeat")
        if repeat:
            previous = await self._previous_issue(repeat)
            if previous is not None and await self._join(previous, payload):
                return {"issue_id": previous, "via": "repeat"}
        session_id = resolve(payload, deps, "session_id")
        try:
            issue = await self.client.create_issue(
                str(payload["title"]),
                description=list(payload.get("description", [])),
                priority=payload.get("priority"),
                tags=list(payload.get("tags", [])),
                session_ids=[session_id],
                attachment_ids=_attachment_ids(payload, deps),
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"issue_id": issue.uuid, "via": "create"}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        payload = job.payload
        try:
            issue = await self.client.find_issue_by_tag(agent_tag(str(payload["incident_id"])))
        except AtlasError as err:
            raise delivery_error(err) from None
        if issue is None:
            return None
        repeat = payload.get("repeat")
        previous = await self._previous_issue(repeat) if repeat else None
        return {"issue_id": issue.uuid, "via": "repeat" if issue.uuid == previous else "create"}


async def _merge_into_issue(
    client: AtlasClient, issue: Issue, payload: Mapping[str, Any], *, retitle: bool
) -> None:
    """PATCH what the incident adds to `issue`: tags (union; PATCH replaces the list), a higher
    priority, and the title when `retitle`. Nothing is sent when nothing changes (idempotent)."""
    fields: dict[str, Any] = {}
    tags = list(dict.fromkeys([*issue.tags, *payload.get("tags", [])]))
    if tags != list(issue.tags):
        fields["tags"] = tags
    wanted = payload.get("priority")
    if isinstance(wanted, str) and SEVERITY_ORDER.get(wanted, -1) > SEVERITY_ORDER.get(
        issue.priority or "", -1
    ):
        fields["priority"] = wanted
    title = payload.get("title")
    if retitle and isinstance(title, str) and title and title != issue.title:
        fields["title"] = title
    if fields:
        await client.patch_issue(issue.uuid, **fields)


async def _incident_issue(client: AtlasClient, job: Job, deps: Mapping[int, Json]) -> str:
    """The incident's issue id: in the payload, in the issue job's result, or by the incident's tag
    (the issue job's result is gone: purged, or a crash before it was recorded)."""
    payload = job.payload
    if payload.get("issue_id") is None:
        for result in deps.values():
            if result.get("issue_id") is not None:
                return str(result["issue_id"])
        tag_of = payload.get("issue_incident_id") or payload.get("incident_id")
        try:
            found = await client.find_issue_by_tag(agent_tag(str(tag_of)))
        except AtlasError as err:
            raise delivery_error(err) from None
        if found is None:
            raise Waiting(f"issue of incident {tag_of} not found yet", 30.0)
        return found.uuid
    return str(payload["issue_id"])


class IssueUpdateHandler:
    """Payload `{incident_id, tags, priority, title, issue_id? | issue_incident_id?, via?}`: members
    joined. Adds their tags, raises the priority, and retitles an issue this incident filed itself
    (never a repeat's: that issue's title is its first incident's). Idempotent: it reads the issue and
    PATCHes only the difference."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        issue_id = await _incident_issue(self.client, job, deps)
        try:
            issue = await self.client.get_issue(issue_id)
            await _merge_into_issue(
                self.client, issue, job.payload, retitle=_via(deps, job.payload) == "create"
            )
        except AtlasNotFound as err:
            raise Permanent(404, detail_text(err.detail), f"issue {issue_id} no longer exists") from None
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"issue_id": issue_id}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None  # re-reading and re-merging is the look-up: deliver is idempotent


async def find_marked_comment(client: AtlasClient, issue_id: str, marker: str) -> str | None:
    """The id of the issue's comment carrying `marker` as a line, or None (also when the issue is gone).

    Every page is read (the list's order is not relied on) up to MAX_COMMENT_PAGES; a deleted comment
    (`is_deleted`) does not count: what it said is no longer there, so it must be posted again."""
    try:
        for page_no in range(MAX_COMMENT_PAGES):
            page = await client.list_comments(issue_id, limit=1000, offset=page_no * 1000)
            for comment in page.items:
                if not comment.is_deleted and has_marker(comment.content, marker):
                    return comment.uuid
            if len(page.items) < 1000:
                return None
    except AtlasNotFound:
        return None
    except AtlasError as err:
        raise delivery_error(err) from None
    log.warning("atlas_comment_lookup_bounded", issue_id=issue_id, comments_read=MAX_COMMENT_PAGES * 1000,
                note="a marker beyond them is not seen")  # fmt: skip
    return None


class CommentHandler:
    """Payload `{incident_id, part, content, content_if_repeat?, attach?, issue_id? | issue_incident_id?}`;
    the issue and the attachments otherwise come from the deps (the issue job, the upload job).

    `content_if_repeat` replaces `content` when the incident's issue job joined an earlier issue;
    `attach`: "always" attaches the upload dep's files, "if_repeat" only on a repeat (a new issue
    carries its snapshot itself). The marker line `edge-agent:<incident-id>:<part>` is in the content."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    def _content(self, job: Job, deps: Mapping[int, Json]) -> tuple[str, list[str]]:
        payload = job.payload
        repeat = _via(deps, payload) == "repeat"
        content = str(
            payload["content_if_repeat"]
            if repeat and payload.get("content_if_repeat")
            else payload["content"]
        )
        attach = payload.get("attach")
        wanted = attach == "always" or (attach == "if_repeat" and repeat)
        attachments = _attachment_ids(payload, deps)[:MAX_COMMENT_ATTACHMENTS] if wanted else []
        return content, attachments

    def _marker(self, job: Job) -> str:
        return comment_marker(str(job.payload["incident_id"]), str(job.payload["part"]))

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        issue_id = await _incident_issue(self.client, job, deps)
        content, attachment_ids = self._content(job, deps)
        try:
            comment = await self.client.add_comment(
                issue_id, content, attachment_ids=attachment_ids, truncate=True
            )
        except AtlasNotFound as err:
            # The issue was deleted in Atlas: nothing left to comment on, and retrying cannot help.
            raise Permanent(404, detail_text(err.detail), f"issue {issue_id} no longer exists") from None
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"issue_id": issue_id, "comment_id": comment.uuid}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        issue_id = await _incident_issue(self.client, job, deps)
        comment_id = await find_marked_comment(self.client, issue_id, self._marker(job))
        return None if comment_id is None else {"issue_id": issue_id, "comment_id": comment_id}


def register_reporter_handlers(outbox: Outbox, client: AtlasClient) -> None:
    outbox.register(KIND_SESSION, SessionHandler(client))
    outbox.register(KIND_UPLOAD, UploadHandler(client))
    outbox.register(KIND_ISSUE, IssueHandler(client, outbox.job))
    outbox.register(KIND_ISSUE_UPDATE, IssueUpdateHandler(client))
    outbox.register(KIND_COMMENT, CommentHandler(client))


def not_before(wall: float, slack: float = 60.0) -> str:
    """Atlas timestamp `slack` seconds before `wall`: a run's objects cannot be older than this."""
    return atlas_timestamp(wall - slack)
