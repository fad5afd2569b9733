"""The Atlas emulator's records (sessions and attachments, issues and comments, test runs with their
cards, steps, data and reports, jobs and job runs) and how each renders as the API pages show it; the
errors a look-up or a reference raises; the list envelopes; and `Tenant`, the tables that hold the
records with the look-ups every resource's rules share (atlas_sessions.py, atlas_test_runs.py,
atlas_reports.py, atlas_jobs.py; atlas_store.py puts them together). No I/O.

Choices the pages leave open are marked INFERRED where they are made.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edge_agent.emulators import atlas_models as m

Json = dict[str, Any]

USER_EMAIL = "engineer@example.com"
SYSTEM_NAME = "Emulated System"


class NotFound(Exception):
    """An id in the path names nothing (404 {"detail": "Not found"})."""


class InvalidReference(Exception):
    """An id in the body names nothing. INFERRED: answered 422 with a FastAPI-style item, like any
    other body validation failure (the pages do not say; 404 would also be plausible)."""

    def __init__(self, loc: tuple[str | int, ...], value: object, what: str) -> None:
        super().__init__(f"unknown {what}")
        self.item: Json = {
            "type": "value_error",
            "loc": ["body", *loc],
            "msg": f"Value error, unknown {what}",
            "input": value,
        }


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Attachment:
    attachment_id: str
    name: str
    session_id: str
    content_type: str
    data: bytes
    created_at: str

    @property
    def attachment_type(self) -> str:
        # Atlas reports the extension ("telemetry.bin" -> "bin"); INFERRED: "" when there is none.
        stem, dot, ext = self.name.rpartition(".")
        return ext.lower() if dot and stem else ""

    def render(self) -> Json:
        return {
            "attachment_id": self.attachment_id,
            "attachment_name": self.name,
            "attachment_type": self.attachment_type,
            "attachment_title": None,
            "attachment_description": None,
            "attachment_citation": None,
            "attachment_source_session_id": self.session_id,
            "attachment_created_by": USER_EMAIL,
            "attachment_created_at": self.created_at,
            "is_visible": True,
        }

    def metadata(self) -> Json:
        return {
            **self.render(),
            "content_type": self.content_type,
            "size": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


@dataclass(slots=True)
class Session:
    session_id: str
    title: str | None
    created_at: str
    description: str | None = None
    is_starred: bool = False
    starred_at: str | None = None
    attachment_ids: list[str] = field(default_factory=list)

    def render(self, attachments: list[Json] | None) -> Json:
        body: Json = {
            "session_id": self.session_id,
            "session_title": self.title,
            "session_description": self.description,
            "session_created_by": USER_EMAIL,
            "session_created_at": self.created_at,
        }
        if attachments is not None:
            body["attachments"] = attachments
        body |= {"imported_projects": [], "is_starred": self.is_starred, "starred_at": self.starred_at}
        return body


@dataclass(slots=True)
class Comment:
    uuid: str
    content: str
    attachment_ids: list[str]
    created_at: str
    updated_at: str
    is_edited: bool = False
    is_deleted: bool = False


@dataclass(slots=True, frozen=True)
class Quirks:
    """Answers the pages allow but the emulator does not give by default (fault switches, common.py):
    lists oldest first, a null `attachment_id` (that file not attached), a null issue `status`,
    deleted comments kept in the list with `is_deleted: true`."""

    oldest_first: bool = False
    null_attachment_id: bool = False
    null_issue_status: bool = False
    soft_delete_comments: bool = False
    report_delay: float | None = None  # None: the store's own report_delay
    report_outcome: str = "completed"  # how reports requested from now on end


@dataclass(slots=True)
class IssueFile:
    uuid: str
    file_name: str
    file_type: str
    attachment_id: str
    created_at: str

    def render(self) -> Json:
        return {
            "uuid": self.uuid,
            "file_name": self.file_name,
            "file_type": self.file_type,
            "attachment_id": self.attachment_id,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Issue:
    uuid: str
    fields: m.IssueCreate
    created_at: str
    comments: list[Comment] = field(default_factory=list)
    files: list[IssueFile] = field(default_factory=list)


@dataclass(slots=True)
class Step:
    uuid: str
    title: str
    description: str
    order: int
    step_type: str
    created_at: str
    updated_at: str
    execution_status: m.ExecutionStatus = "todo"
    exception: str | None = None
    started_at: str | None = None
    ended_at: str | None = None


@dataclass(slots=True)
class Card:
    uuid: str
    title: str
    description: str
    order: int
    created_at: str
    updated_at: str
    steps: list[Step] = field(default_factory=list)


@dataclass(slots=True)
class DataFile:
    uuid: str
    body: m.DataFileCreate
    created_at: str

    def render(self) -> Json:
        assoc = self.body.associate_with
        return {
            "uuid": self.uuid,
            "file_name": self.body.file_name,
            "s3_url": self.body.s3_url,
            "file_size": self.body.file_size,
            "content_type": self.body.content_type,
            "uploaded_by": USER_EMAIL,
            "created_at": self.created_at,
            # INFERRED shape of an association: the same keys as `associate_with`.
            "associations": [assoc.model_dump()] if assoc is not None else [],
        }


@dataclass(slots=True)
class Lifecycle:
    """pending -> running -> `outcome` (completed, or failed/cancelled when a fault switch says so):
    done `delay` seconds after creation or after `polls` reads (when polls > 0), whichever comes
    first; `running` once it has been read but is not done yet."""

    started: float
    delay: float
    polls_needed: int
    polls: int = 0
    final: str | None = None
    outcome: str = "completed"

    def status(self, now: float) -> str:
        if self.final is not None:
            return self.final
        done = now - self.started >= self.delay or (self.polls_needed > 0 and self.polls >= self.polls_needed)
        if done:
            return self.outcome
        return "running" if self.polls else "pending"


@dataclass(slots=True)
class Report:
    uuid: str
    title: str
    body: m.ReportCreate
    job_run_id: str
    created_at: str
    lifecycle: Lifecycle
    content: str = ""
    summary: str = ""


@dataclass(slots=True)
class TestRun:
    __test__ = False  # not a pytest test class

    uuid: str
    test_run_id: str
    body: m.TestRunCreate
    created_at: str
    updated_at: str
    cards: list[Card] = field(default_factory=list)
    data: list[DataFile] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)


@dataclass(slots=True)
class Job:
    uuid: str
    job_type: str
    config: dict[str, Any]
    created_at: str
    source_session_id: str | None
    source_project_id: str | None
    updated_at: str | None = None
    is_deleted: bool = False

    @property
    def name(self) -> str:
        return f"{self.job_type} – {SYSTEM_NAME}"

    def render(self) -> Json:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "description": None,
            "config": self.config,
            "is_deleted": self.is_deleted,
            "created_by": USER_EMAIL,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "source_session_id": self.source_session_id,
            "source_project_id": self.source_project_id,
        }


@dataclass(slots=True)
class JobRun:
    uuid: str
    job: Job
    config: dict[str, Any]
    created_at: str
    lifecycle: Lifecycle

    def render(self, now: float, updated_at: str) -> Json:
        return {
            "uuid": self.uuid,
            "job_id": self.job.uuid,
            "job_name": self.job.name,
            "config": self.config,
            "status": self.lifecycle.status(now),
            "created_by": USER_EMAIL,
            "created_at": self.created_at,
            "updated_at": updated_at,
            "is_deleted": False,
            "output_references": [],
        }


def page(items: list[Json], limit: int, offset: int) -> Json:
    # INFERRED: `count` is the number of matches before paging (the pages do not say).
    return {"items": items[offset : offset + limit], "count": len(items)}


def envelope(items: list[Json]) -> Json:
    return {"items": items, "count": len(items)}


def in_range(created_at: str, query: m._CreatedRange) -> bool:
    created = m.parse_timestamp(created_at)
    if query.created_after is not None and created < m.parse_timestamp(query.created_after):
        return False
    return not (query.created_before is not None and created > m.parse_timestamp(query.created_before))


T = TypeVar("T")


def get_or_404(table: dict[str, T], key: str) -> T:
    try:
        return table[key]
    except KeyError:
        raise NotFound(key) from None


class Tenant:
    """Everything the emulated tenant holds, and the look-ups every resource shares. `now` gives Atlas
    timestamps, `clock` monotonic seconds."""

    def __init__(
        self,
        now: Callable[[], str],
        clock: Callable[[], float],
        *,
        report_delay: float = 1.0,
        report_polls: int = 0,
        quirks: Callable[[], Quirks] = Quirks,
    ) -> None:
        self._now = now
        self._clock = clock
        self._quirks = quirks
        self.report_delay = report_delay
        self.report_polls = report_polls
        self.sessions: dict[str, Session] = {}
        self.attachments: dict[str, Attachment] = {}
        self.issues: dict[str, Issue] = {}
        self.test_runs: dict[str, TestRun] = {}
        self.jobs: dict[str, Job] = {}
        self.job_runs: dict[str, JobRun] = {}
        self._run_counter = 0

    def _session_attachments(self, session: Session) -> list[Json]:
        return [self.attachments[a].render() for a in session.attachment_ids if a in self.attachments]

    def _check_attachments(self, ids: Iterable[str], loc: tuple[str | int, ...]) -> None:
        for i, attachment_id in enumerate(ids):
            if attachment_id not in self.attachments:
                raise InvalidReference((*loc, i), attachment_id, "attachment id")

    def _ordered(self, items: Iterable[T]) -> list[T]:
        """Newest first (INFERRED default), or oldest first with the quirk on."""
        in_creation_order = list(items)
        return in_creation_order if self._quirks().oldest_first else in_creation_order[::-1]

    def _run(self, run_id: str) -> TestRun:
        # INFERRED: {run_id} is the uuid; whether the human "TR-0001" id works too is not documented.
        return get_or_404(self.test_runs, run_id)

    def _touch(self, run: TestRun, *items: Card | Step) -> None:
        now = self._now()
        run.updated_at = now
        for item in items:
            item.updated_at = now

    def _lifecycle(self) -> Lifecycle:
        quirks = self._quirks()
        delay = self.report_delay if quirks.report_delay is None else quirks.report_delay
        return Lifecycle(self._clock(), delay, self.report_polls, outcome=quirks.report_outcome)
