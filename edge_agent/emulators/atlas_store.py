"""The Atlas emulator's state and rules, with no I/O: takes validated request models, answers plain
JSON-able dicts shaped as in shared/api/atlas-*.md. Clocks are passed in, so lifecycles (report and job
run status) are testable without sleeping.

Choices the pages leave open are marked INFERRED where they are made.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edge_agent.emulators import atlas_models as m

Json = dict[str, Any]

USER_EMAIL = "engineer@example.com"
SYSTEM_NAME = "Emulated System"
_PRIORITY_ORDER: tuple[m.IssuePriority, ...] = ("high", "medium", "low")
_ACTIVE_STATUSES = frozenset({"open", "in_progress"})
_TERMINAL_JOB_STATUSES = frozenset({"completed", "failed", "cancelled"})

JOB_SCHEMAS: list[Json] = [
    {
        "job_type": "metagraph_update",
        "display_name": "Metagraph Update",
        "description": "Updates the system metagraph based on uploaded documents.",
        "user_facing_description": "Analyzes uploaded documents and updates the system graph.",
        "json_schema": {
            "type": "object",
            "properties": {
                "job_type": {"type": "string"},
                "system_id_or_name": {"type": "string"},
                "additional_context": {"type": "string"},
            },
            "required": ["job_type", "system_id_or_name"],
        },
        "creatable_on_ui": True,
        "creatable_by_agent": True,
        "visible_on_ui": True,
    },
    {
        # INFERRED: the job type is named by the jobs page; its config schema is not public.
        "job_type": "generate_issue",
        "display_name": "Generate Issue",
        "description": "Generates an issue from a session's context.",
        "user_facing_description": "Creates an issue from the files and conversation of a session.",
        "json_schema": {
            "type": "object",
            "properties": {"job_type": {"type": "string"}, "additional_context": {"type": "string"}},
            "required": ["job_type"],
        },
        "creatable_on_ui": False,
        "creatable_by_agent": True,
        "visible_on_ui": True,
    },
]


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


def _new_id() -> str:
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


def _page(items: list[Json], limit: int, offset: int) -> Json:
    # INFERRED: `count` is the number of matches before paging (the pages do not say).
    return {"items": items[offset : offset + limit], "count": len(items)}


def _envelope(items: list[Json]) -> Json:
    return {"items": items, "count": len(items)}


def _in_range(created_at: str, query: m._CreatedRange) -> bool:
    created = m.parse_timestamp(created_at)
    if query.created_after is not None and created < m.parse_timestamp(query.created_after):
        return False
    return not (query.created_before is not None and created > m.parse_timestamp(query.created_before))


_T = TypeVar("_T")


def _get(table: dict[str, _T], key: str) -> _T:
    try:
        return table[key]
    except KeyError:
        raise NotFound(key) from None


class AtlasStore:
    """Everything the emulated tenant holds. `now` gives Atlas timestamps, `clock` monotonic seconds."""

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

    # --- sessions ---------------------------------------------------------------------------------

    def _session_attachments(self, session: Session) -> list[Json]:
        return [self.attachments[a].render() for a in session.attachment_ids if a in self.attachments]

    def _check_attachments(self, ids: Iterable[str], loc: tuple[str | int, ...]) -> None:
        for i, attachment_id in enumerate(ids):
            if attachment_id not in self.attachments:
                raise InvalidReference((*loc, i), attachment_id, "attachment id")

    def create_session(self, body: m.SessionCreate) -> Json:
        ids = [ref.attachment_id for ref in body.attachments]
        for i, attachment_id in enumerate(ids):
            if attachment_id not in self.attachments:
                raise InvalidReference(("attachments", i, "attachment_id"), attachment_id, "attachment id")
        session = Session(_new_id(), body.title, self._now(), attachment_ids=ids)
        self.sessions[session.session_id] = session
        return session.render(self._session_attachments(session))

    def _ordered(self, items: Iterable[_T]) -> list[_T]:
        """Newest first (INFERRED default), or oldest first with the quirk on."""
        in_creation_order = list(items)
        return in_creation_order if self._quirks().oldest_first else in_creation_order[::-1]

    def list_sessions(self) -> Json:
        # The list omits `attachments`: only the single-session GET carries them (sessions page).
        return _envelope([s.render(None) for s in self._ordered(self.sessions.values())])

    def get_session(self, session_id: str) -> Json:
        session = _get(self.sessions, session_id)
        return session.render(self._session_attachments(session))

    def update_session(self, session_id: str, body: m.SessionUpdate) -> Json:
        session = _get(self.sessions, session_id)
        if body.title is not None:
            session.title = body.title
        if body.description is not None:
            session.description = body.description
        if body.starred is not None and body.starred != session.is_starred:
            session.is_starred = body.starred
            session.starred_at = self._now() if body.starred else None
        return session.render(self._session_attachments(session))

    def delete_session(self, session_id: str) -> None:
        session = _get(self.sessions, session_id)
        del self.sessions[session_id]
        for attachment_id in session.attachment_ids:
            attachment = self.attachments.get(attachment_id)
            if attachment is not None and attachment.session_id == session_id:
                del self.attachments[attachment_id]

    def upload(self, session_id: str, files: list[tuple[str, str, bytes]]) -> list[Json]:
        """`files` are (filename, content type, bytes), one attachment each, in upload order."""
        session = _get(self.sessions, session_id)
        created = []
        for name, content_type, data in files:
            attachment = Attachment(_new_id(), name, session_id, content_type, data, self._now())
            if self._quirks().null_attachment_id:
                # The page allows a null id: the file is described but not attached (nothing to link).
                created.append({**attachment.render(), "attachment_id": None})
                continue
            self.attachments[attachment.attachment_id] = attachment
            session.attachment_ids.append(attachment.attachment_id)
            created.append(attachment.render())
        return created

    def delete_attachment(self, session_id: str, attachment_id: str) -> None:
        session = _get(self.sessions, session_id)
        if attachment_id not in session.attachment_ids:
            raise NotFound(attachment_id)
        session.attachment_ids.remove(attachment_id)
        attachment = self.attachments.get(attachment_id)
        if attachment is not None and attachment.session_id == session_id:
            del self.attachments[attachment_id]

    def attachment_bytes(self, attachment_id: str) -> bytes:
        return _get(self.attachments, attachment_id).data

    # --- issues -----------------------------------------------------------------------------------

    def _render_issue(self, issue: Issue) -> Json:
        f = issue.fields
        sessions = [self.sessions[s] for s in f.session_ids if s in self.sessions]
        return {
            "uuid": issue.uuid,
            "title": f.title,
            "description": f.description,
            "status": None if self._quirks().null_issue_status else f.status,
            "priority": f.priority,
            "tags": f.tags,
            "owner": f.owner,
            "resolution_summary": f.resolution_summary,
            "created_by": USER_EMAIL,
            "created_at": issue.created_at,
            # INFERRED: associated sessions are rendered like list items (no nested attachments).
            "sessions": [s.render(None) for s in sessions],
            "attachments": [self.attachments[a].render() for a in f.attachment_ids if a in self.attachments],
            "session_attachments": [a for s in sessions for a in self._session_attachments(s)],
            "job_run_id": None,
        }

    def create_issue(self, body: m.IssueCreate) -> Json:
        self._check_attachments(body.attachment_ids, ("attachment_ids",))
        for i, session_id in enumerate(body.session_ids):
            if session_id not in self.sessions:
                raise InvalidReference(("session_ids", i), session_id, "session id")
        issue = Issue(_new_id(), body.model_copy(deep=True), self._now())
        self.issues[issue.uuid] = issue
        return self._render_issue(issue)

    def list_issues(self, query: m.IssueListQuery) -> Json:
        # INFERRED: newest first.
        matches = [
            self._render_issue(issue)
            for issue in self._ordered(self.issues.values())
            if (not query.status or issue.fields.status in query.status)
            and (not query.priority or issue.fields.priority in query.priority)
        ]
        return _page(matches, query.limit, query.offset)

    def get_issue(self, issue_id: str) -> Json:
        return self._render_issue(_get(self.issues, issue_id))

    def update_issue(self, issue_id: str, body: m.IssueUpdate) -> Json:
        issue = _get(self.issues, issue_id)
        sent = body.model_dump(include=body.model_fields_set)
        # A null for a field that is never null in the response is taken as "not sent".
        changes = {
            k: v
            for k, v in sent.items()
            if v is not None or k in ("status", "priority", "resolution_summary")
        }
        issue.fields = issue.fields.model_copy(update=changes)
        return self._render_issue(issue)

    def delete_issue(self, issue_id: str) -> None:
        _get(self.issues, issue_id)
        del self.issues[issue_id]

    def metrics(self) -> Json:
        active = Counter(
            i.fields.priority for i in self.issues.values() if i.fields.status in _ACTIVE_STATUSES
        )
        data = [{"label": p, "value": active.get(p, 0), "color": None} for p in _PRIORITY_ORDER]
        chart = {"title": "Active Issues", "data": data, "colors": None, "display_config": None}
        return {"metrics": [{"chart_type": "pie_chart", "chart_data": chart}]}

    def _render_comment(self, comment: Comment) -> Json:
        return {
            "uuid": comment.uuid,
            "content": comment.content,
            "attachments": [
                self.attachments[a].render() for a in comment.attachment_ids if a in self.attachments
            ],
            "created_by": USER_EMAIL,
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "is_edited": comment.is_edited,
            "is_deleted": comment.is_deleted,
            "reactions": [],
        }

    def list_comments(self, issue_id: str, query: m.CommentListQuery) -> Json:
        issue = _get(self.issues, issue_id)
        # Comments are listed oldest first (a thread); the quirk does not apply to them.
        return _page([self._render_comment(c) for c in issue.comments], query.limit, query.offset)

    def add_comment(self, issue_id: str, body: m.CommentCreate) -> Json:
        issue = _get(self.issues, issue_id)
        self._check_attachments(body.attachment_ids, ("attachment_ids",))
        now = self._now()
        comment = Comment(_new_id(), body.content, list(body.attachment_ids), now, now)
        issue.comments.append(comment)
        return self._render_comment(comment)

    def _comment(self, issue_id: str, comment_id: str) -> tuple[Issue, Comment]:
        issue = _get(self.issues, issue_id)
        for comment in issue.comments:
            if comment.uuid == comment_id:
                return issue, comment
        raise NotFound(comment_id)

    def update_comment(self, issue_id: str, comment_id: str, body: m.CommentUpdate) -> Json:
        _, comment = self._comment(issue_id, comment_id)
        comment.content = body.content
        comment.updated_at = self._now()
        comment.is_edited = True
        return self._render_comment(comment)

    def delete_comment(self, issue_id: str, comment_id: str) -> None:
        # INFERRED: Atlas has an `is_deleted` flag (a soft delete). By default the emulator drops the
        # comment from the list; with the quirk on it stays there, flagged, as the flag suggests.
        issue, comment = self._comment(issue_id, comment_id)
        if self._quirks().soft_delete_comments:
            comment.is_deleted = True
        else:
            issue.comments.remove(comment)

    def issue_files(self, issue_id: str, query: m.IssueFilesQuery) -> list[Json]:
        issue = _get(self.issues, issue_id)
        return [f.render() for f in issue.files if query.file_type is None or f.file_type == query.file_type]

    def add_issue_file(self, issue_id: str, file_name: str, file_type: str, attachment_id: str) -> Json:
        """Atlas attaches files (e.g. troubleshooting plans) itself; no API call does. Demo/test helper."""
        issue = _get(self.issues, issue_id)
        record = IssueFile(_new_id(), file_name, file_type, attachment_id, self._now())
        issue.files.append(record)
        return record.render()

    # --- test runs --------------------------------------------------------------------------------

    def _run(self, run_id: str) -> TestRun:
        # INFERRED: {run_id} is the uuid; whether the human "TR-0001" id works too is not documented.
        return _get(self.test_runs, run_id)

    def _card(self, run: TestRun, card_id: str) -> Card:
        for card in run.cards:
            if card.uuid == card_id:
                return card
        raise NotFound(card_id)

    def _step(self, card: Card, step_id: str) -> Step:
        for step in card.steps:
            if step.uuid == step_id:
                return step
        raise NotFound(step_id)

    def _touch(self, run: TestRun, *items: Card | Step) -> None:
        now = self._now()
        run.updated_at = now
        for item in items:
            item.updated_at = now

    def _render_step(self, run: TestRun, step: Step) -> Json:
        return {
            "uuid": step.uuid,
            "title": step.title,
            "description": step.description,
            "order": step.order,
            "step_type": step.step_type,
            "execution_status": step.execution_status,
            "exception": step.exception,
            "started_at": step.started_at,
            "ended_at": step.ended_at,
            "observations": [],
            "test_data": [d.render() for d in run.data if _associated(d, step_id=step.uuid)],
            "issues": [],
            "reports": [_report_summary(r) for r in run.reports if r.body.test_step_id == step.uuid],
            "created_at": step.created_at,
            "updated_at": step.updated_at,
        }

    def _render_card(self, run: TestRun, card: Card) -> Json:
        return {
            "uuid": card.uuid,
            "title": card.title,
            "description": card.description,
            "order": card.order,
            "test_steps": [self._render_step(run, s) for s in card.steps],
            "issues": [],
            "test_data": [d.render() for d in run.data if _associated(d, card_id=card.uuid)],
            "reports": [
                _report_summary(r)
                for r in run.reports
                if r.body.scope == "card" and r.body.test_card_id == card.uuid
            ],
            "created_at": card.created_at,
            "updated_at": card.updated_at,
        }

    def _render_run(self, run: TestRun) -> Json:
        return {
            "uuid": run.uuid,
            "test_run_id": run.test_run_id,
            "title": run.body.title,
            "description": run.body.description,
            "system_id": str(run.body.system_id),
            "system_name": SYSTEM_NAME,
            "test_cards": [self._render_card(run, c) for c in run.cards],
            "test_data": [d.render() for d in run.data],
            "reports": [self._render_report(run, r) for r in run.reports],
            "contributors": [USER_EMAIL],
            "created_by": USER_EMAIL,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
        }

    def _run_summary(self, run: TestRun) -> Json:
        statuses = Counter(s.execution_status for c in run.cards for s in c.steps)
        total = sum(statuses.values())
        # The page's example ({"todo": 1, "passed": 3} -> 0.75) makes this a fraction of steps that
        # have left `todo`, and lists only the statuses that occur.
        completion = (total - statuses.get("todo", 0)) / total if total else 0.0
        return {
            "uuid": run.uuid,
            "test_run_id": run.test_run_id,
            "title": run.body.title,
            "system_id": str(run.body.system_id),
            "system_name": SYSTEM_NAME,
            "completion_pct": completion,
            "step_status_counts": {s: statuses[s] for s in m.EXECUTION_STATUSES if statuses[s]},
            "contributors": [USER_EMAIL],
            "asset_names": [f"Asset {str(a)[:8]}" for a in run.body.asset_ids],
            "asset_count": len(run.body.asset_ids),
            "issue_count": len(run.body.issue_ids),
            "card_count": len(run.cards),
            "file_count": len(run.data),
            "report_count": len(run.reports),
            "created_by": USER_EMAIL,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
        }

    def create_test_run(self, body: m.TestRunCreate) -> Json:
        for i, issue_id in enumerate(body.issue_ids):
            if str(issue_id) not in self.issues:
                raise InvalidReference(("issue_ids", i), str(issue_id), "issue id")
        self._run_counter += 1
        now = self._now()
        run = TestRun(_new_id(), f"TR-{self._run_counter:04d}", body, now, now)
        for order, template_id in enumerate(body.template_ids, start=1):
            # INFERRED: templates are not emulated; each becomes an empty card named after it.
            run.cards.append(Card(_new_id(), f"Card from template {template_id}", "", order, now, now))
        self.test_runs[run.uuid] = run
        return self._render_run(run)

    def list_test_runs(self, query: m.TestRunListQuery) -> Json:
        return _envelope([self._run_summary(r) for r in self._filtered_runs(query)])

    def _filtered_runs(self, query: m.TestRunListQuery) -> list[TestRun]:
        return [
            run
            for run in reversed(self.test_runs.values())
            if (query.system_id is None or run.body.system_id == query.system_id)
            and (query.has_reports is None or bool(run.reports) == query.has_reports)
            and _in_range(run.created_at, query)
        ]

    def search_test_runs(self, query: m.TestRunSearchQuery) -> Json:
        """Full-text only (case-insensitive substring): the live semantic search is not emulated."""
        needle = query.q.lower()
        results: list[Json] = []
        for run in self._filtered_runs(query):
            matches = [
                match
                for match in _components(run)
                if needle in match["text"].lower()
                and (not query.component_types or match["component_type"] in query.component_types)
            ]
            if matches:
                summary = self._run_summary(run)
                results.append(
                    {
                        "test_run": summary,
                        "score": round(min(1.0, 0.5 + 0.1 * len(matches)), 3),
                        "matches": [
                            {k: v for k, v in match.items() if k != "text"}
                            | {"snippet": match["text"][:200], "match_type": "fulltext"}
                            for match in matches
                        ],
                    }
                )
        results.sort(key=lambda r: -float(r["score"]))
        return {"results": results[query.offset : query.offset + query.limit], "total_count": len(results)}

    def get_test_run(self, run_id: str) -> Json:
        return self._render_run(self._run(run_id))

    def update_test_run(self, run_id: str, body: m.TestRunUpdate) -> Json:
        run = self._run(run_id)
        changes = {k: v for k, v in body.model_dump(include=body.model_fields_set).items() if v is not None}
        run.body = run.body.model_copy(update=changes)
        self._touch(run)
        return self._render_run(run)

    def delete_test_run(self, run_id: str) -> None:
        self._run(run_id)
        del self.test_runs[run_id]

    def add_data(self, run_id: str, body: m.DataFileCreate) -> Json:
        run = self._run(run_id)
        assoc = body.associate_with
        if assoc is not None:
            card = None
            if assoc.test_card_id is not None:
                card = next((c for c in run.cards if c.uuid == assoc.test_card_id), None)
                if card is None:
                    raise InvalidReference(
                        ("associate_with", "test_card_id"), assoc.test_card_id, "test card id"
                    )
            if assoc.test_step_id is not None:
                cards = [card] if card is not None else run.cards
                if not any(s.uuid == assoc.test_step_id for c in cards for s in c.steps):
                    raise InvalidReference(
                        ("associate_with", "test_step_id"), assoc.test_step_id, "test step id"
                    )
        record = DataFile(_new_id(), body, self._now())
        run.data.append(record)
        self._touch(run)
        return record.render()

    def list_data(self, run_id: str) -> Json:
        return _envelope([d.render() for d in self._run(run_id).data])

    def delete_data(self, run_id: str, file_id: str) -> None:
        run = self._run(run_id)
        record = next((d for d in run.data if d.uuid == file_id), None)
        if record is None:
            raise NotFound(file_id)
        run.data.remove(record)
        self._touch(run)

    def add_card(self, run_id: str, body: m.CardCreate) -> Json:
        run = self._run(run_id)
        now = self._now()
        title = body.title if body.title is not None else f"Card from template {body.template_id}"
        order = body.order if body.order is not None else len(run.cards) + 1
        card = Card(_new_id(), title, body.description, order, now, now)
        run.cards.append(card)
        self._touch(run)
        return self._render_card(run, card)

    def update_card(self, run_id: str, card_id: str, body: m.CardUpdate) -> Json:
        run = self._run(run_id)
        card = self._card(run, card_id)
        if body.title is not None:
            card.title = body.title
        if body.description is not None:
            card.description = body.description
        self._touch(run, card)
        return self._render_card(run, card)

    def delete_card(self, run_id: str, card_id: str) -> None:
        run = self._run(run_id)
        run.cards.remove(self._card(run, card_id))
        self._touch(run)

    def add_step(self, run_id: str, card_id: str, body: m.StepCreate) -> Json:
        run = self._run(run_id)
        card = self._card(run, card_id)
        now = self._now()
        order = body.order if body.order is not None else len(card.steps) + 1
        step = Step(_new_id(), body.title, body.description, order, body.step_type, now, now)
        card.steps.append(step)
        self._touch(run, card)
        return self._render_step(run, step)

    def update_step(self, run_id: str, card_id: str, step_id: str, body: m.StepUpdate) -> Json:
        run = self._run(run_id)
        card = self._card(run, card_id)
        step = self._step(card, step_id)
        sent = body.model_dump(include=body.model_fields_set)
        for key in ("title", "description", "execution_status"):
            if sent.get(key) is not None:
                setattr(step, key, sent[key])
        for key in ("exception", "started_at", "ended_at"):  # nullable: an explicit null clears them
            if key in sent:
                setattr(step, key, sent[key])
        self._touch(run, card, step)
        return self._render_step(run, step)

    def delete_step(self, run_id: str, card_id: str, step_id: str) -> None:
        run = self._run(run_id)
        card = self._card(run, card_id)
        card.steps.remove(self._step(card, step_id))
        self._touch(run, card)

    # --- reports ----------------------------------------------------------------------------------

    def _lifecycle(self) -> Lifecycle:
        quirks = self._quirks()
        delay = self.report_delay if quirks.report_delay is None else quirks.report_delay
        return Lifecycle(self._clock(), delay, self.report_polls, outcome=quirks.report_outcome)

    def create_report(self, run_id: str, body: m.ReportCreate) -> Json:
        run = self._run(run_id)
        title_of = run.body.title
        if body.test_card_id is not None:
            card = next((c for c in run.cards if c.uuid == body.test_card_id), None)
            if card is None:
                raise InvalidReference(("test_card_id",), body.test_card_id, "test card id")
            title_of = card.title
            if body.test_step_id is not None:
                step = next((s for s in card.steps if s.uuid == body.test_step_id), None)
                if step is None:
                    raise InvalidReference(("test_step_id",), body.test_step_id, "test step id")
                title_of = step.title
        title = f"{title_of} – {body.scope.capitalize()} Analysis"
        report = Report(_new_id(), title, body, _new_id(), self._now(), self._lifecycle())
        run.reports.append(report)
        self._touch(run)
        return self._render_report(run, report)

    def _render_report(self, run: TestRun, report: Report) -> Json:
        status = report.lifecycle.status(self._clock())
        if status == "completed" and not report.content:
            report.content, report.summary = _write_report(run, report)
        return {
            "uuid": report.uuid,
            "title": report.title,
            "scope": report.body.scope,
            "status": status,
            "content": report.content,
            "summary": report.summary,
            "issues": [],
            "test_data": [d.render() for d in run.data] if status == "completed" else [],
            "job_run_id": report.job_run_id,
            "created_by": USER_EMAIL,
            "created_at": report.created_at,
        }

    def list_reports(self, run_id: str) -> Json:
        run = self._run(run_id)
        return _envelope([self._render_report(run, r) for r in run.reports])

    def get_report(self, run_id: str, report_id: str) -> Json:
        run = self._run(run_id)
        report = next((r for r in run.reports if r.uuid == report_id), None)
        if report is None:
            raise NotFound(report_id)
        report.lifecycle.polls += 1
        return self._render_report(run, report)

    # --- jobs -------------------------------------------------------------------------------------

    def job_schemas(self) -> list[Json]:
        return copy.deepcopy(JOB_SCHEMAS)

    def _job(self, job_id: str) -> Job:
        return _get(self.jobs, job_id)

    def create_job(self, body: m.JobCreate) -> Json:
        config = body.config if body.config is not None else {"job_type": body.job_type}
        job = Job(
            _new_id(),
            body.job_type,
            config,
            self._now(),
            str(body.source_session_id) if body.source_session_id else None,
            str(body.source_project_id) if body.source_project_id else None,
        )
        self.jobs[job.uuid] = job
        return job.render()

    def list_jobs(self, query: m.JobListQuery) -> Json:
        return _envelope(
            [
                job.render()
                for job in reversed(self.jobs.values())
                if not job.is_deleted
                and (not query.job_types or job.job_type in query.job_types)
                and (not query.created_by_users or USER_EMAIL in query.created_by_users)
                and (not query.source_session_ids or job.source_session_id in query.source_session_ids)
                and _in_range(job.created_at, query)
            ]
        )

    def get_job(self, job_id: str) -> Json:
        return self._job(job_id).render()

    def update_job(self, job_id: str, body: m.JobUpdate) -> Json:
        job = self._job(job_id)
        if body.config is not None:
            job.config = body.config
            job.updated_at = self._now()
        return job.render()

    def delete_job(self, job_id: str) -> Json:
        job = self._job(job_id)
        job.is_deleted = True
        job.updated_at = self._now()
        return {"message": f"Job {job_id} soft deleted"}

    def latest_run(self, job_id: str) -> Json | None:
        job = self._job(job_id)
        runs = [r for r in self.job_runs.values() if r.job is job]
        return self._render_job_run(runs[-1]) if runs else None

    def _render_job_run(self, run: JobRun) -> Json:
        return run.render(self._clock(), self._now() if run.lifecycle.final is None else run.created_at)

    def create_job_run(self, body: m.JobRunCreate) -> Json:
        job = self.jobs.get(body.job_id)
        if job is None or job.is_deleted:
            raise InvalidReference(("job_id",), body.job_id, "job id")
        config = {**job.config, **(body.config or {})}
        run = JobRun(_new_id(), job, config, self._now(), self._lifecycle())
        self.job_runs[run.uuid] = run
        return self._render_job_run(run)

    def list_job_runs(self, query: m.JobRunListQuery) -> Json:
        now = self._clock()
        return _envelope(
            [
                self._render_job_run(run)
                for run in reversed(self.job_runs.values())
                if (query.job_id is None or run.job.uuid == query.job_id)
                and (not query.job_types or run.job.job_type in query.job_types)
                and (not query.statuses or run.lifecycle.status(now) in query.statuses)
                and _in_range(run.created_at, query)
            ]
        )

    def get_job_run(self, job_run_id: str) -> Json:
        run = _get(self.job_runs, job_run_id)
        run.lifecycle.polls += 1
        return self._render_job_run(run)

    def cancel_job_run(self, job_run_id: str) -> Json:
        run = _get(self.job_runs, job_run_id)
        cancelled = 0
        if run.lifecycle.status(self._clock()) not in _TERMINAL_JOB_STATUSES:
            run.lifecycle.final = "cancelled"
            cancelled = 1
        return {"message": f"Job run {job_run_id} cancelled", "cancelled_count": cancelled}

    # --- inspection -------------------------------------------------------------------------------

    def snapshot(self) -> Json:
        """Everything held, JSON-able, attachments as metadata (size, sha256), never raw bytes."""
        return {
            "sessions": [
                s.render([self.attachments[a].metadata() for a in s.attachment_ids if a in self.attachments])
                for s in self.sessions.values()
            ],
            "issues": [
                {
                    **self._render_issue(i),
                    "session_ids": list(i.fields.session_ids),
                    "attachment_ids": list(i.fields.attachment_ids),
                    "comments": [self._render_comment(c) for c in i.comments],
                    "files": [f.render() for f in i.files],
                }
                for i in self.issues.values()
            ],
            "test_runs": [
                {**self._render_run(r), "summary": self._run_summary(r)} for r in self.test_runs.values()
            ],
            "jobs": [j.render() for j in self.jobs.values()],
            "job_runs": [self._render_job_run(r) for r in self.job_runs.values()],
            "counts": {
                "sessions": len(self.sessions),
                "attachments": len(self.attachments),
                "issues": len(self.issues),
                "comments": sum(len(i.comments) for i in self.issues.values()),
                "test_runs": len(self.test_runs),
                "jobs": len(self.jobs),
                "job_runs": len(self.job_runs),
            },
        }


def _associated(data: DataFile, *, card_id: str | None = None, step_id: str | None = None) -> bool:
    assoc = data.body.associate_with
    if assoc is None:
        return False
    if step_id is not None:
        return assoc.test_step_id == step_id
    return assoc.test_card_id == card_id and assoc.test_step_id is None


def _report_summary(report: Report) -> Json:
    # INFERRED: "report summaries" on cards and steps; the page does not list their fields.
    return {"uuid": report.uuid, "title": report.title, "scope": report.body.scope, "summary": report.summary}


def _components(run: TestRun) -> list[Json]:
    found: list[Json] = [
        {
            "component_type": "run",
            "component_id": run.uuid,
            "component_title": run.body.title,
            "path": run.body.title,
            "text": f"{run.body.title} {run.body.description}",
        }
    ]
    for card in run.cards:
        found.append(
            {
                "component_type": "card",
                "component_id": card.uuid,
                "component_title": card.title,
                "path": card.title,
                "text": f"{card.title} {card.description}",
            }
        )
        for step in card.steps:
            found.append(
                {
                    "component_type": "step",
                    "component_id": step.uuid,
                    "component_title": step.title,
                    "path": f"{card.title} > {step.title}",
                    "text": f"{step.title} {step.description} {step.exception or ''}".strip(),
                }
            )
    for report in run.reports:
        found.append(
            {
                "component_type": "report",
                "component_id": report.uuid,
                "component_title": report.title,
                "path": report.title,
                "text": f"{report.title} {report.content}",
            }
        )
    return found


def _write_report(run: TestRun, report: Report) -> tuple[str, str]:
    """A deterministic stand-in for Atlas's AI analysis: counts what the run holds."""
    steps = [s for c in run.cards for s in c.steps]
    counts = Counter(s.execution_status for s in steps)
    failed = [s.title for s in steps if s.execution_status == "failed"]
    summary = (
        f"{len(steps)} steps in {len(run.cards)} cards: "
        + ", ".join(f"{counts[s]} {s}" for s in m.EXECUTION_STATUSES if counts[s])
        if steps
        else f"No steps recorded in {run.test_run_id}."
    )
    lines = [
        f"# {report.title}",
        "",
        f"Scope: {report.body.scope}. Test run {run.test_run_id} ({run.body.title}).",
        f"Data files analysed: {', '.join(d.body.file_name for d in run.data) or 'none'}.",
        f"Failed steps: {', '.join(failed) or 'none'}.",
    ]
    if report.body.analysis_context:
        lines.append(f"Analysis context: {report.body.analysis_context}")
    lines += ["", summary]
    return "\n".join(lines), summary
