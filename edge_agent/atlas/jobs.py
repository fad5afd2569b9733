"""Outbox handlers for the reporter's Atlas job kinds: session create, issue (filed, or joined as a
repeat), issue update, comment; evidence upload (uploads.py) and refused evidence retried
(evidence_retry.py) are registered here too. Each one can tell after an attempt of unknown outcome
whether that attempt made something (`find_existing`), so an outage, a timeout or a SIGKILL never makes
a duplicate.

Ids a job needs (session, attachments, issue) come from its payload when they were known at enqueue
time, else from the results of the jobs it depends on: `<name>` in the payload wins over the result of
the job named by `<name>_job`. The reporter inlines what it already knows, so a job never depends on a
delivered job the outbox may have purged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edge_agent.atlas.client import (
    MAX_COMMENT_ATTACHMENTS,
    AtlasClient,
    atlas_timestamp,
    parse_atlas_timestamp,
)
from edge_agent.atlas.errors import AtlasError, AtlasNotFound, detail_text
from edge_agent.atlas.evidence_files import KIND_PLOT, PlotHandler, plot_missing_note
from edge_agent.atlas.evidence_retry import EvidenceHandler, EvidenceRetry
from edge_agent.atlas.incident_text import insert_before_marker, kept_locally_note
from edge_agent.atlas.job_support import delivery_error, incident_issue, resolve
from edge_agent.atlas.job_support import find_marked_comment as find_marked_comment
from edge_agent.atlas.models import Issue
from edge_agent.atlas.narrative import agent_tag, comment_marker
from edge_agent.atlas.uploads import DEFAULT_UPLOAD_ATTEMPTS, UploadHandler
from edge_agent.atlas.waiting import WaitingEvidence
from edge_agent.logs import get_logger
from edge_agent.outbox import Job, Json, Outbox, Permanent, Waiting

log = get_logger(__name__)

KIND_SESSION = "atlas.session"
KIND_UPLOAD = "atlas.upload"
KIND_ISSUE = "atlas.issue"
KIND_COMMENT = "atlas.comment"
KIND_ISSUE_UPDATE = "atlas.issue_update"
KIND_EVIDENCE = "atlas.evidence"  # refused evidence, retried in a form that fits (evidence_retry.py)

OPEN_STATUSES = frozenset({"open", "in_progress"})

JobLookup = Callable[[int], Awaitable[Job | None]]


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


class IssueUpdateHandler:
    """Payload `{incident_id, tags, priority, title, issue_id? | issue_incident_id?, via?}`: members
    joined. Adds their tags, raises the priority, and retitles an issue this incident filed itself
    (never a repeat's: that issue's title is its first incident's). Idempotent: it reads the issue and
    PATCHes only the difference."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        issue_id = await incident_issue(self.client, job, deps)
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
        deferred = [d for r in deps.values() for d in r.get("deferred") or []]
        if deferred:  # the upload it follows left evidence out: say which, where and why
            content = insert_before_marker(content, kept_locally_note(deferred))
        not_drawn = plot_missing_note(deps)
        if not_drawn:
            content = insert_before_marker(content, not_drawn)
        return content, attachments

    def _marker(self, job: Job) -> str:
        return comment_marker(str(job.payload["incident_id"]), str(job.payload["part"]))

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        issue_id = await incident_issue(self.client, job, deps)
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
        issue_id = await incident_issue(self.client, job, deps)
        comment_id = await find_marked_comment(self.client, issue_id, self._marker(job))
        return None if comment_id is None else {"issue_id": issue_id, "comment_id": comment_id}


def register_reporter_handlers(
    outbox: Outbox,
    client: AtlasClient,
    *,
    waiting: WaitingEvidence | None = None,
    upload_attempts: int = DEFAULT_UPLOAD_ATTEMPTS,
    evidence_retry: EvidenceRetry | None = None,
    stop_deadline: Callable[[], float | None] = lambda: None,
) -> None:
    """`waiting`: where refused evidence keeps its progress (None: in memory only)."""
    waiting = waiting or WaitingEvidence(None)
    outbox.register(KIND_SESSION, SessionHandler(client))
    outbox.register(KIND_PLOT, PlotHandler(stop_deadline))
    outbox.register(KIND_UPLOAD, UploadHandler(client, attempts=upload_attempts, waiting=waiting))
    outbox.register(KIND_ISSUE, IssueHandler(client, outbox.job))
    outbox.register(KIND_ISSUE_UPDATE, IssueUpdateHandler(client))
    outbox.register(KIND_COMMENT, CommentHandler(client))
    outbox.register(KIND_EVIDENCE, EvidenceHandler(client, waiting, evidence_retry))


def not_before(wall: float, slack: float = 60.0) -> str:
    """Atlas timestamp `slack` seconds before `wall`: a run's objects cannot be older than this."""
    return atlas_timestamp(wall - slack)
