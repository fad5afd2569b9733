"""Typed views of the Atlas answers (shared/api/atlas-*.md): the fields the agent uses, typed; every
other field kept (`extra="allow"`, reachable through `model_extra`) so that a server newer than the
docs never breaks a parse. Ids and the fields the agent depends on are required; descriptive fields
default, because the docs mark several of them nullable and a tenant may omit them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

IssueStatus = Literal["open", "in_progress", "resolved", "rejected"]
IssuePriority = Literal["low", "medium", "high"]
ExecutionStatus = Literal["todo", "done", "passed", "passed_with_exception", "failed"]

ISSUE_STATUSES: frozenset[str] = frozenset({"open", "in_progress", "resolved", "rejected"})
ISSUE_PRIORITIES: frozenset[str] = frozenset({"low", "medium", "high"})
EXECUTION_STATUSES: frozenset[str] = frozenset({"todo", "done", "passed", "passed_with_exception", "failed"})


class AtlasModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Attachment(AtlasModel):
    # Nullable per the upload-files page; an attachment without an id cannot be linked to an issue.
    attachment_id: str | None
    attachment_name: str
    attachment_type: str = ""
    attachment_source_session_id: str | None = None
    attachment_created_by: str | None = None
    attachment_created_at: str | None = None
    is_visible: bool = True


class Session(AtlasModel):
    session_id: str
    session_title: str | None = None
    session_description: str | None = None
    session_created_at: str | None = None
    # Only the single-session GET (and create) carry attachments; list items do not.
    attachments: list[Attachment] = Field(default_factory=list)


class Issue(AtlasModel):
    uuid: str
    title: str
    # Opaque content blocks: their grammar is not public (research/atlas-api.md §3); round-trip them.
    description: list[Any] = Field(default_factory=list)
    status: str | None = None
    priority: str | None = None
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None
    resolution_summary: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    sessions: list[Any] = Field(default_factory=list)
    attachments: list[Any] = Field(default_factory=list)


T = TypeVar("T")


class Page(AtlasModel, Generic[T]):
    """A `{items, count}` list answer. Whether `count` is a total or the page length is not documented."""

    items: list[T]
    count: int | None = None


class Comment(AtlasModel):
    uuid: str
    content: str
    attachments: list[Any] = Field(default_factory=list)
    created_by: str | None = None
    created_at: str | None = None
    # A soft delete (the issues page's `is_deleted`): the comment may still be listed, but it is gone.
    is_deleted: bool = False


class Step(AtlasModel):
    uuid: str
    title: str
    description: str | None = None
    order: int | None = None
    step_type: str | None = None
    execution_status: str | None = None
    exception: str | None = None
    started_at: str | None = None
    ended_at: str | None = None


class Card(AtlasModel):
    uuid: str
    title: str
    description: str | None = None
    order: int | None = None
    test_steps: list[Step] = Field(default_factory=list)


class TestRun(AtlasModel):
    __test__: ClassVar[bool] = False  # not a pytest class, whatever its name says

    uuid: str
    test_run_id: str | None = None  # the human id, e.g. "TR-0042"
    title: str
    description: str | None = None
    system_id: str | None = None
    test_cards: list[Card] = Field(default_factory=list)


REPORT_SCOPES: frozenset[str] = frozenset({"run", "card", "step"})
# Where a report's status can no longer change (the test-runs page: poll until completed).
REPORT_FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class Report(AtlasModel):
    """An analysis report of a test run (`POST /test-runs/{id}/reports`): `content` and `summary` are
    filled once `status` is `completed`."""

    uuid: str
    status: str
    title: str = ""
    scope: str | None = None
    content: str | None = ""
    summary: str | None = ""
    job_run_id: str | None = None
    created_at: str | None = None
