"""The outbox batches an incident becomes (pure): which jobs, in which groups, depending on what.

- open: upload the snapshot -> file the issue (or, for a repeat within the window, join the still-open
  issue of the same fault) -> the opening comment (on a repeat: the "detected again" text, with the
  snapshot attached);
- grew: update the issue (tags of the new members, a raised priority, the title's "+N more") -> one
  comment listing the members that joined;
- part / close: upload the evidence -> its comment (the closing one carries the timeline).

Every upload is followed by an evidence job (`atlas.evidence`, a group of its own per upload) that owns
the files: when Atlas refuses some of them the upload settles without them, the issue and comments go
on, and the evidence job retries them in a form that fits and links them (atlas/evidence_retry.py).

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

from edge_agent.atlas.evidence_files import KIND_PLOT
from edge_agent.atlas.jobs import (
    KIND_COMMENT,
    KIND_EVIDENCE,
    KIND_ISSUE,
    KIND_ISSUE_UPDATE,
    KIND_UPLOAD,
)
from edge_agent.outbox import BatchRef, JobSpec

# Evidence jobs outrank step PATCHes when the outbox must shed (they are what the user buys).
EVIDENCE_PRIORITY = 10


@dataclass(frozen=True, slots=True)
class Ref:
    """How a job names something another job makes: payload fields, or a dependency on that job."""

    fields: dict[str, Any] = field(default_factory=dict)
    deps: tuple[int | BatchRef, ...] = ()


def incident_group(incident_id: str) -> str:
    return f"incident:{incident_id}"


def evidence_group(incident_id: str, part: str) -> str:
    return f"evidence:{incident_id}:{part}"


def upload_spec(group: str, session: Ref, files: Sequence[str], names: Sequence[str]) -> JobSpec:
    """The upload reads `paths`; the files belong to the evidence job that follows it (evidence_spec),
    which keeps them while Atlas refuses them."""
    return JobSpec(
        KIND_UPLOAD,
        group,
        {"paths": list(files), "names": list(names), **session.fields},
        deps=session.deps,
        priority=EVIDENCE_PRIORITY,
    )


def evidence_spec(
    *,
    incident_id: str,
    part: str,
    files: Sequence[str],
    names: Sequence[str],
    upload: BatchRef,
    issue: Ref,
    span_end_s: float | None = None,
) -> JobSpec:
    """Owns the upload's files: nothing to do when the upload went through; else retries what Atlas
    refused in a form that fits and links it (atlas/evidence_retry.py). Its own group: it never holds
    up the incident's comments, and the incident's other evidence never waits for it."""
    return JobSpec(
        KIND_EVIDENCE,
        evidence_group(incident_id, part),
        {
            "incident_id": incident_id,
            "part": part,
            "files": list(files),
            "names": list(names),
            "span_end_s": span_end_s,
            **issue.fields,
        },
        deps=(upload, *issue.deps),
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
        evidence_spec(
            incident_id=incident_id,
            part="open",
            files=files,
            names=names,
            upload=BatchRef(0),
            issue=Ref(deps=(BatchRef(1),)),
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
    span_end_s: float | None = None,
    plot: dict[str, str] | None = None,
) -> list[JobSpec]:
    """Upload evidence (if any was written) -> the comment that presents it; the evidence job that
    owns the files follows the upload in its own group. With `plot` ({csv, json, png}), a plot job
    draws the PNG first (its path is among `files`; if it cannot be drawn the upload goes without it)."""
    group = incident_group(incident_id)
    specs: list[JobSpec] = []
    comment_deps: tuple[int | BatchRef, ...] = issue.deps
    upload = BatchRef(0)
    if files and plot is not None:
        specs.append(JobSpec(KIND_PLOT, group, dict(plot), priority=EVIDENCE_PRIORITY))
        upload = BatchRef(1)
    if files:
        spec = upload_spec(group, session, files, names)
        if plot is not None:
            spec = JobSpec(spec.kind, spec.group, spec.payload, (*spec.deps, BatchRef(0)), spec.priority)
        specs.append(spec)
        # The comment follows the plot job too: it says when the picture could not be drawn.
        comment_deps = (*issue.deps, upload, *((BatchRef(0),) if plot is not None else ()))
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
    if files:
        specs.append(
            evidence_spec(
                incident_id=incident_id,
                part=part,
                files=files,
                names=names,
                upload=upload,
                issue=issue,
                span_end_s=span_end_s,
            )
        )
    return specs
