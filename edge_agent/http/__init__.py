"""The one HTTP layer both cloud clients (Atlas, lens) sit on: what a status means, redirects,
`Retry-After`, retries, timeouts and secret scrubbing, decided in one place."""

from edge_agent.http.errors import Failure, HttpError, Kind, StatusClass, classify
from edge_agent.http.retry_after import MAX_RETRY_AFTER, parse_retry_after
from edge_agent.http.scrub import REDACTED, Scrubber
from edge_agent.http.transport import NO_RETRY, Reply, RetryPolicy, Transport, UploadPart

__all__ = [
    "MAX_RETRY_AFTER",
    "NO_RETRY",
    "REDACTED",
    "Failure",
    "HttpError",
    "Kind",
    "Reply",
    "RetryPolicy",
    "Scrubber",
    "StatusClass",
    "Transport",
    "UploadPart",
    "classify",
    "parse_retry_after",
]
