"""Atlas: the REST client (`client.py`), its typed failures (`errors.py`) and answer types (`models.py`)."""

from edge_agent.atlas.client import (
    MAX_COMMENT_ATTACHMENTS,
    MAX_COMMENT_CHARS,
    MAX_STEP_TITLE_CHARS,
    NO_RETRY,
    AtlasClient,
    AtlasRetryPolicy,
    UploadFile,
    atlas_timestamp,
    split_comment,
    truncate_comment,
)
from edge_agent.atlas.errors import (
    AtlasAuthError,
    AtlasError,
    AtlasNotFound,
    AtlasProtocolError,
    AtlasRequestError,
    AtlasRetryableError,
    AtlasValidationError,
    parse_retry_after,
)
from edge_agent.atlas.models import Attachment, Card, Comment, Issue, Page, Session, Step, TestRun

__all__ = [
    "MAX_COMMENT_ATTACHMENTS",
    "MAX_COMMENT_CHARS",
    "MAX_STEP_TITLE_CHARS",
    "NO_RETRY",
    "AtlasAuthError",
    "AtlasClient",
    "AtlasError",
    "AtlasNotFound",
    "AtlasProtocolError",
    "AtlasRequestError",
    "AtlasRetryPolicy",
    "AtlasRetryableError",
    "AtlasValidationError",
    "Attachment",
    "Card",
    "Comment",
    "Issue",
    "Page",
    "Session",
    "Step",
    "TestRun",
    "UploadFile",
    "atlas_timestamp",
    "parse_retry_after",
    "split_comment",
    "truncate_comment",
]
