"""What the Atlas job handlers share: Atlas's failures as the outbox's verdicts, ids from a payload or
a dependency's result, and the look-ups of an incident's issue and of a marked comment."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any

from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.errors import (
    AtlasAuthError,
    AtlasError,
    AtlasNotFound,
    AtlasRetryableError,
    detail_text,
)
from edge_agent.atlas.narrative import agent_tag, has_marker
from edge_agent.logs import get_logger
from edge_agent.outbox import DeliveryError, Job, Json, Permanent, Retryable, Waiting

log = get_logger(__name__)

# How far back a comment look-up reads (pages of 1000): a thread longer than that is not a bench's.
MAX_COMMENT_PAGES = 5


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


async def incident_issue(client: AtlasClient, job: Job, deps: Mapping[int, Json]) -> str:
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
