"""The outbox batches an incident becomes (pure): which jobs, in which groups, depending on what.

- open: upload the snapshot -> file the issue (or, for a repeat within the window, join the still-open
  issue of the same fault) -> the opening comment (on a repeat: the "detected again" text, with the
  snapshot attached);
- grew: update the issue (tags of the new members, a raised priority, the title's "+N more") -> one
  comment listing the members that joined;
- part / close: upload the evidence -> its comment (the closing one carries the timeline).

Uploads, updates and comments of one incident share the incident's group (delivered in order). Issue
jobs of a run share one group of their own, so issues reach Atlas in the order incidents opened, also
after an outage, and a repeat's issue job runs after the one it repeats. A job finds the ids it needs
(session, attachments, issue) in its payload when they were known at enqueue time, else in the results
of the jobs it depends on (atlas/jobs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.atlas.jobs import KIND_COMMENT, KIND_ISSUE, KIND_ISSUE_UPDATE, KIND_UPLOAD
from edge_agent.outbox import BatchRef, JobSpec

# Evidence jobs outrank step PATCHes when the outbox must shed (they are what the user buys).
EVIDENCE_PRIORITY = 10


@dataclass(frozen=True, slots=True)
class Ref:
    """How a job names something another job makes: payload fields, or a dependency on that job."""

    fields: dict[str, Any] = field(default_factory=dict)
    deps: tuple[int, ...] = ()


def incident_group(incident_id: str) -> str:
    return f"incident:{incident_id}"


def upload_spec(group: str, session: Ref, files: Sequence[str], names: Sequence[str]) -> JobSpec:
    return JobSpec(
        KIND_UPLOAD,
        group,
        {"files": list(files), "names": list(names), **session.fields},
        deps=session.deps,
        priority=EVIDENCE_PRIORITY,
    )


def open_batch(
    *,
    incident_id: str,
    issues_group: str,
    session: Ref,
    files: Sequence[str],
    names: Sequence[str],
    issue: dict[str, Any],
    repeat: dict[str, Any] | None,
    opening: str,
    repeat_text: str,
    lookup_first: bool = False,
) -> list[JobSpec]:
    """`issue`: title, description, priority, tags. The issue job is index 1 of the batch."""
    group = incident_group(incident_id)
    return [
        upload_spec(group, session, files, names),
        JobSpec(
            KIND_ISSUE,
            issues_group,
            {
                "incident_id": incident_id,
                **issue,
                "repeat": repeat,
                "lookup_first": lookup_first,
                **session.fields,
            },
            deps=(*session.deps, BatchRef(0)),
            priority=EVIDENCE_PRIORITY,
        ),
        JobSpec(
            KIND_COMMENT,
            group,
            {
                "incident_id": incident_id,
                "part": "open",
                "content": opening,
                "content_if_repeat": repeat_text,
                # A new issue carries the snapshot itself; a repeat's comment is where it goes.
                "attach": "if_repeat",
            },
            deps=(BatchRef(1), BatchRef(0)),
            priority=EVIDENCE_PRIORITY,
        ),
    ]


def issue_update_spec(
    *, incident_id: str, issue: Ref, tags: Sequence[str], priority: str, title: str
) -> JobSpec:
    """Members joined: add their tags, raise the priority if needed, retitle (issues this incident
    filed only, not a repeat's)."""
    return JobSpec(
        KIND_ISSUE_UPDATE,
        incident_group(incident_id),
        {
            "incident_id": incident_id,
            "tags": list(tags),
            "priority": priority,
            "title": title,
            **issue.fields,
        },
        deps=issue.deps,
        priority=EVIDENCE_PRIORITY,
    )


def update_batch(
    *,
    incident_id: str,
    issue: Ref,
    tags: Sequence[str],
    priority: str,
    title: str,
    part: str,
    content: str,
) -> list[JobSpec]:
    """The issue update, then one comment about the members that joined."""
    group = incident_group(incident_id)
    return [
        issue_update_spec(incident_id=incident_id, issue=issue, tags=tags, priority=priority, title=title),
        JobSpec(
            KIND_COMMENT,
            group,
            {"incident_id": incident_id, "part": part, "content": content, **issue.fields},
            deps=issue.deps,
            priority=EVIDENCE_PRIORITY,
        ),
    ]


def evidence_batch(
    *,
    incident_id: str,
    issue: Ref,
    session: Ref,
    files: Sequence[str],
    names: Sequence[str],
    part: str,
    content: str,
) -> list[JobSpec]:
    """Upload evidence (if any was written) -> the comment that presents it."""
    group = incident_group(incident_id)
    specs: list[JobSpec] = []
    comment_deps: tuple[int | BatchRef, ...] = issue.deps
    if files:
        specs.append(upload_spec(group, session, files, names))
        comment_deps = (*issue.deps, BatchRef(0))
    specs.append(
        JobSpec(
            KIND_COMMENT,
            group,
            {
                "incident_id": incident_id,
                "part": part,
                "content": content,
                "attach": "always",
                **issue.fields,
            },
            deps=comment_deps,
            priority=EVIDENCE_PRIORITY,
        )
    )
    return specs
