"""Request bodies and query strings of the Atlas API (shared/api/atlas-*.md) as pydantic models.

The live server is (INFERRED, research/atlas-api.md §5.4) FastAPI on pydantic v2, so validating with
the same kind of models makes the emulator's 422s come out in the same shape for free. Extra keys are
ignored, as FastAPI does by default. Limits the pages state (step title <= 100, comment 1..10,000
characters, <= 10 comment attachments, list `limit` bounds) are enforced here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator, model_validator

IssueStatus = Literal["open", "in_progress", "resolved", "rejected"]
IssuePriority = Literal["low", "medium", "high"]
ExecutionStatus = Literal["todo", "done", "passed", "passed_with_exception", "failed"]
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = (
    "todo",
    "done",
    "passed",
    "passed_with_exception",
    "failed",
)
ReportScope = Literal["run", "card", "step"]
JobRunStatus = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 -> naive UTC, the form Atlas timestamps take (so any two compare)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _check_timestamp(value: str | None) -> str | None:
    if value is not None:
        parse_timestamp(value)  # ValueError -> a 422 item naming the field
    return value


class Body(BaseModel):
    """Base of request bodies; unknown keys are ignored like FastAPI does."""


# --- sessions -------------------------------------------------------------------------------------


class AttachmentRef(Body):
    attachment_id: str


class SessionCreate(Body):
    title: str = "New Atlas session"
    attachments: list[AttachmentRef] = Field(default_factory=list)


class SessionUpdate(Body):
    title: str | None = None
    description: str | None = None
    starred: bool | None = None


# --- issues ---------------------------------------------------------------------------------------


class IssueCreate(Body):
    title: str
    description: list[Any]
    status: IssueStatus = "open"
    priority: IssuePriority = "low"
    tags: list[str] = Field(default_factory=list)
    owner: str = "Unassigned"
    resolution_summary: str | None = None
    attachment_ids: list[str] = Field(default_factory=list)
    session_ids: list[str] = Field(default_factory=list)


class IssueUpdate(Body):
    """Only the fields a client sends are applied (`model_fields_set`)."""

    title: str | None = None
    status: IssueStatus | None = None
    priority: IssuePriority | None = None
    tags: list[str] | None = None
    owner: str | None = None
    resolution_summary: str | None = None


class CommentCreate(Body):
    content: str = Field(min_length=1, max_length=10_000)
    attachment_ids: list[str] = Field(default_factory=list, max_length=10)


class CommentUpdate(Body):
    content: str = Field(min_length=1, max_length=10_000)


# --- test runs ------------------------------------------------------------------------------------


class TestRunCreate(Body):
    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name says

    title: str
    system_id: UUID
    description: str = ""
    asset_ids: list[UUID] = Field(default_factory=list)
    issue_ids: list[UUID] = Field(default_factory=list)
    template_ids: list[UUID] = Field(default_factory=list)


class TestRunUpdate(Body):
    __test__: ClassVar[bool] = False

    title: str | None = None
    description: str | None = None


class Association(Body):
    test_card_id: str | None = None
    test_step_id: str | None = None


class DataFileCreate(Body):
    file_name: str
    s3_url: str
    file_size: int = Field(ge=0)
    content_type: str = "application/octet-stream"
    associate_with: Association | None = None


class CardCreate(Body):
    title: str | None = None
    template_id: UUID | None = None
    description: str = ""
    order: int | None = None

    @model_validator(mode="after")
    def _title_or_template(self) -> CardCreate:
        if self.title is None and self.template_id is None:
            raise ValueError("either title or template_id is required")
        return self


class CardUpdate(Body):
    title: str | None = None
    description: str | None = None


class StepCreate(Body):
    title: str = Field(max_length=100)
    description: str = ""
    step_type: str = "passfail"
    order: int | None = None


class StepUpdate(Body):
    title: str | None = Field(None, max_length=100)
    description: str | None = None
    execution_status: ExecutionStatus | None = None
    exception: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    _timestamps = field_validator("started_at", "ended_at")(_check_timestamp)


class ReportCreate(Body):
    scope: ReportScope
    test_card_id: str | None = None
    test_step_id: str | None = None
    analysis_context: str = ""

    @model_validator(mode="after")
    def _ids_for_scope(self) -> ReportCreate:
        if self.scope in ("card", "step") and self.test_card_id is None:
            raise ValueError("test_card_id is required when scope is card or step")
        if self.scope == "step" and self.test_step_id is None:
            raise ValueError("test_step_id is required when scope is step")
        return self


# --- jobs -----------------------------------------------------------------------------------------


class JobCreate(Body):
    job_type: str = Field(min_length=1)
    config: dict[str, Any] | None = None
    source_session_id: UUID | None = None
    source_project_id: UUID | None = None

    @model_validator(mode="after")
    def _config_names_job_type(self) -> JobCreate:
        if self.config is not None and self.config.get("job_type") != self.job_type:
            raise ValueError("config.job_type must match job_type")
        return self


class JobUpdate(Body):
    config: dict[str, Any] | None = None


class JobRunCreate(Body):
    job_id: str
    config: dict[str, Any] | None = None


# --- query strings --------------------------------------------------------------------------------


class Query(BaseModel):
    """Base of query-string models. REPEATABLE names the keys given as a list (`?a=1&a=2`)."""

    REPEATABLE: ClassVar[frozenset[str]] = frozenset()


class IssueListQuery(Query):
    REPEATABLE = frozenset({"status", "priority"})

    status: list[IssueStatus] = Field(default_factory=list)
    priority: list[IssuePriority] = Field(default_factory=list)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class CommentListQuery(Query):
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class IssueFilesQuery(Query):
    file_type: str | None = None


class _CreatedRange(Query):
    created_after: str | None = None
    created_before: str | None = None

    _timestamps = field_validator("created_after", "created_before")(_check_timestamp)


class TestRunListQuery(_CreatedRange):
    __test__: ClassVar[bool] = False

    system_id: UUID | None = None
    has_reports: bool | None = None


class TestRunSearchQuery(TestRunListQuery):
    REPEATABLE = frozenset({"component_types"})

    q: str
    mode: str = "default"
    component_types: list[str] = Field(default_factory=list)
    sort_by: str = "relevance"
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)


class JobListQuery(_CreatedRange):
    REPEATABLE = frozenset({"job_types", "created_by_users", "source_session_ids"})

    job_types: list[str] = Field(default_factory=list)
    created_by_users: list[str] = Field(default_factory=list)
    source_session_ids: list[str] = Field(default_factory=list)


class JobRunListQuery(_CreatedRange):
    REPEATABLE = frozenset({"job_types", "statuses"})

    job_id: str | None = None
    job_types: list[str] = Field(default_factory=list)
    statuses: list[JobRunStatus] = Field(default_factory=list)
