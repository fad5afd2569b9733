"""Outbox handlers for the reporter's Atlas job kinds: session create, evidence upload, issue (or the
repeat comment), comment. Each one can tell after an attempt of unknown outcome whether that attempt
made something (`find_existing`), so an outage, a timeout or a SIGKILL never makes a duplicate.

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
from edge_agent.atlas.narrative import anomaly_tag, has_marker
from edge_agent.logs import get_logger
from edge_agent.outbox import DeliveryError, Job, Json, Outbox, Permanent, Retryable

log = get_logger(__name__)

KIND_SESSION = "atlas.session"
KIND_UPLOAD = "atlas.upload"
KIND_ISSUE = "atlas.issue"
KIND_COMMENT = "atlas.comment"

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


class IssueHandler:
    """Payload `{anomaly_id, title, priority, tags, description, session_id?,
    repeat?, comment}`. Creates the anomaly's issue; or, when `repeat` names the issue of an earlier
    anomaly of the same (rule, source, channel) and Atlas says that issue is still open or in progress
    now, comments on it (`comment`, with the new evidence) instead. Result `{issue_id, via}`."""

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
                raise Retryable(425, 1.0, "previous issue not created yet", outcome_unknown=False)
        previous = repeat.get("anomaly_id")
        if isinstance(previous, str) and previous:
            found = await self.client.find_issue_by_tag(anomaly_tag(previous))
            return found.uuid if found is not None else None
        return None

    async def _open_issue(self, repeat: Mapping[str, Any] | None) -> str | None:
        if not repeat:
            return None
        try:
            issue_id = await self._previous_issue(repeat)
            if issue_id is None:
                return None
            issue = await self.client.get_issue(issue_id)
        except AtlasNotFound:
            return None  # deleted in Atlas: a new issue it is
        except AtlasError as err:
            raise delivery_error(err) from None
        if issue.status is None:
            # The issues page allows a null status: unknown is not closed. A comment on an issue someone
            # closed is seen and harmless; a second issue for the same fault is a duplicate.
            log.info("atlas_issue_status_unknown", issue_id=issue.uuid, treated_as="open")
            return issue.uuid
        return issue.uuid if issue.status in OPEN_STATUSES else None

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        payload = job.payload
        if payload.get("lookup_first"):
            found = await self.find_existing(job, deps)
            if found is not None:
                return found
        attachment_ids = _attachment_ids(payload, deps)
        open_issue = await self._open_issue(payload.get("repeat"))
        try:
            if open_issue is not None:
                comment = await self.client.add_comment(
                    open_issue,
                    str(payload["comment"]),
                    attachment_ids=attachment_ids[:MAX_COMMENT_ATTACHMENTS],
                )
                return {"issue_id": open_issue, "via": "comment", "comment_id": comment.uuid}
            session_id = resolve(payload, deps, "session_id")
            issue = await self.client.create_issue(
                str(payload["title"]),
                description=list(payload.get("description", [])),
                priority=payload.get("priority"),
                tags=list(payload.get("tags", [])),
                session_ids=[session_id],
                attachment_ids=attachment_ids,
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"issue_id": issue.uuid, "via": "create"}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        payload = job.payload
        try:
            issue = await self.client.find_issue_by_tag(anomaly_tag(str(payload["anomaly_id"])))
        except AtlasError as err:
            raise delivery_error(err) from None
        if issue is not None:
            return {"issue_id": issue.uuid, "via": "create"}
        repeat = payload.get("repeat")
        if not repeat:
            return None
        # The lost attempt may have been the repeat comment: look for its marker on the old issue.
        try:
            previous = await self._previous_issue(repeat)
        except AtlasError as err:
            raise delivery_error(err) from None
        if previous is None:
            return None
        comment_id = await find_marked_comment(self.client, previous, str(payload["marker"]))
        if comment_id is None:
            return None
        return {"issue_id": previous, "via": "comment", "comment_id": comment_id}


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
    """Payload `{anomaly_id, marker, content, issue_id? | issue_anomaly_id?, skip_if_commented?}`; the
    issue and the attachments otherwise come from the deps (the issue job, the upload job).

    `skip_if_commented`: the opening comment of an anomaly whose issue job turned out to be a repeat
    comment on an open issue (that comment already said it all) is not posted again."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def _issue(self, job: Job, deps: Mapping[int, Json]) -> tuple[str, bool]:
        payload = job.payload
        skip = bool(payload.get("skip_if_commented")) and any(
            r.get("via") == "comment" for r in deps.values()
        )
        tag_of = payload.get("issue_anomaly_id")
        if payload.get("issue_id") is None and isinstance(tag_of, str):
            # The issue job's result is gone (purged, or a crash before it was recorded): by its tag.
            try:
                found = await self.client.find_issue_by_tag(anomaly_tag(tag_of))
            except AtlasError as err:
                raise delivery_error(err) from None
            if found is None:
                raise Retryable(425, 30.0, f"issue of anomaly {tag_of} not found yet", outcome_unknown=False)
            return found.uuid, False
        return str(resolve(payload, deps, "issue_id")), skip

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        issue_id, skip = await self._issue(job, deps)
        if skip:
            return {"issue_id": issue_id, "skipped": True}
        attachment_ids = _attachment_ids(job.payload, deps)[:MAX_COMMENT_ATTACHMENTS]
        try:
            comment = await self.client.add_comment(
                issue_id, str(job.payload["content"]), attachment_ids=attachment_ids, truncate=True
            )
        except AtlasNotFound as err:
            # The issue was deleted in Atlas: nothing left to comment on, and retrying cannot help.
            raise Permanent(404, detail_text(err.detail), f"issue {issue_id} no longer exists") from None
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"issue_id": issue_id, "comment_id": comment.uuid}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        issue_id, skip = await self._issue(job, deps)
        if skip:
            return {"issue_id": issue_id, "skipped": True}
        comment_id = await find_marked_comment(self.client, issue_id, str(job.payload["marker"]))
        return None if comment_id is None else {"issue_id": issue_id, "comment_id": comment_id}


def register_reporter_handlers(outbox: Outbox, client: AtlasClient) -> None:
    outbox.register(KIND_SESSION, SessionHandler(client))
    outbox.register(KIND_UPLOAD, UploadHandler(client))
    outbox.register(KIND_ISSUE, IssueHandler(client, outbox.job))
    outbox.register(KIND_COMMENT, CommentHandler(client))


def not_before(wall: float, slack: float = 60.0) -> str:
    """Atlas timestamp `slack` seconds before `wall`: a run's objects cannot be older than this."""
    return atlas_timestamp(wall - slack)
