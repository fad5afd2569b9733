"""`Retry-After` (RFC 9110 §10.2.3), the one parser of the code base: the transport and the outbox use it.

Two forms: delta-seconds (`120`; a decimal fraction such as `2.5` is accepted too, since some servers
send one) and an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`, or the obsolete RFC 850 / asctime forms
that `email.utils` also reads). Anything else (negative numbers, exponents, `inf`, `nan`, a date
without a zone, words) is garbage: None, so the caller falls back to its own backoff.

A date in the past means "now" (0). A huge value is capped at `cap` (a day by default): a server
asking for a week must not be able to park a queue for a week on one header; callers cap lower still.
"""

from __future__ import annotations

import email.utils
import re

MAX_RETRY_AFTER = 86_400.0
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now: float, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Seconds to wait from `now` (Unix time, wall clock), in [0, cap]; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return min(float(text), cap)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zoneless one is malformed
        return None
    return min(max(0.0, when.timestamp() - now), cap)
