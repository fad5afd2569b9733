"""Atlas REST client (aiohttp): sessions and their files, issues and comments, test runs, cards, steps.

Every request goes through the shared transport (`edge_agent.http`), which decides what an answer
means (any 2xx is success, 204 included), follows same-origin redirects only, reads `Retry-After`,
scrubs the token out of server text and retries idempotent calls a few times. This module holds only
Atlas's calls, its enumerations and limits, and its answer shapes; failures are the typed exceptions
of `edge_agent.atlas.errors` (`retryable`, `outcome_unknown`, `retry_after`).

- POST creates are sent once: Atlas has no idempotency keys, so a blind retry after a lost answer
  could make a duplicate. The durable outbox decides, after looking for the result with
  `find_issue_by_tag` / `find_attachment_by_name`. Reads and updates (GET/PUT/PATCH/DELETE) are
  idempotent and are retried a few times by the transport.
- An update answered without a body (204, or an empty 200) succeeded: the object is read back with a
  GET rather than the PATCH being sent again.
- Look-ups do not depend on list order (not documented): they page through within a bound.

Inputs with documented limits are checked before sending (comment 1..10,000 characters and at most 10
attachments, step title at most 100 characters, the enumerations), so a bad request fails at once with
`AtlasValidationError` (status None) instead of becoming a stored job the server will refuse forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# The names imported `as` themselves are re-exported: callers import them from here.
from edge_agent.atlas.api import IDEMPOTENT_METHODS as IDEMPOTENT_METHODS
from edge_agent.atlas.api import AtlasRetryPolicy as AtlasRetryPolicy
from edge_agent.atlas.issue_calls import IssueCalls
from edge_agent.atlas.run_calls import RunCalls
from edge_agent.atlas.session_calls import SessionCalls
from edge_agent.atlas.session_calls import UploadFile as UploadFile
from edge_agent.atlas.values import MAX_COMMENT_ATTACHMENTS as MAX_COMMENT_ATTACHMENTS
from edge_agent.atlas.values import MAX_COMMENT_CHARS as MAX_COMMENT_CHARS
from edge_agent.atlas.values import MAX_COMMENT_PAGE as MAX_COMMENT_PAGE
from edge_agent.atlas.values import MAX_ISSUE_PAGE as MAX_ISSUE_PAGE
from edge_agent.atlas.values import MAX_ISSUE_SCAN as MAX_ISSUE_SCAN
from edge_agent.atlas.values import MAX_STEP_TITLE_CHARS as MAX_STEP_TITLE_CHARS
from edge_agent.atlas.values import atlas_timestamp as atlas_timestamp
from edge_agent.atlas.values import parse_atlas_timestamp as parse_atlas_timestamp
from edge_agent.atlas.values import split_comment as split_comment
from edge_agent.atlas.values import truncate_comment as truncate_comment
from edge_agent.http import NO_RETRY as NO_RETRY


class AtlasClient(SessionCalls, IssueCalls, RunCalls):
    """`async with AtlasClient(api_base, token) as atlas: await atlas.create_session("bench-03 run")`.

    `api_base` is the API root, `$ATLAS_URL/api/v1` (`AtlasSection.api_base`). The calls of each
    resource are in session_calls, issue_calls and run_calls; what they share in api.py.
    """


def as_mapping(model: BaseModel) -> Mapping[str, Any]:
    """The whole answer as received (typed fields and extras), e.g. to store as an outbox job result."""
    return model.model_dump(mode="json")
