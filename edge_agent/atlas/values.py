"""What Atlas documents of its values and limits, and the agent's side of them: its timestamp shape
(UTC, no zone), the comment, attachment, step-title and page limits, comments cut or split to fit, and
the checks that refuse a bad input before it is sent (`AtlasValidationError`, status None)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

MAX_COMMENT_CHARS = 10_000
MAX_COMMENT_ATTACHMENTS = 10
MAX_STEP_TITLE_CHARS = 100
MAX_ISSUE_PAGE = 1000
MAX_COMMENT_PAGE = 1000
# A look-up by tag reads at most this many issues (10 GETs of 1000): bounded cost after an ambiguous
# create, enough for years of a bench's issues; a tenant with more is told in the log.
MAX_ISSUE_SCAN = 10_000


def atlas_timestamp(value: datetime | float) -> str:
    """Atlas's timestamp shape: ISO 8601, microseconds, no zone, UTC (`2026-04-13T10:30:00.000000`).

    A float is Unix time; a naive datetime is taken as UTC already; an aware one is converted.
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    else:
        moment = datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def parse_atlas_timestamp(text: str | None) -> float | None:
    """Unix time of an Atlas timestamp (no zone means UTC; a zone is honoured); None if unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def truncate_comment(text: str, limit: int = MAX_COMMENT_CHARS) -> str:
    """`text` cut to `limit` characters with a visible note of how much was dropped."""
    if len(text) <= limit:
        return text
    # The note's own length depends on the count it reports; reserve for the largest possible count.
    reserve = len(f"\n… [truncated: {len(text)} more characters]")
    kept = text[: max(0, limit - reserve)]
    return f"{kept}\n… [truncated: {len(text) - len(kept)} more characters]"


def split_comment(text: str, limit: int = MAX_COMMENT_CHARS) -> list[str]:
    """`text` as consecutive comments of at most `limit` characters, each prefixed `(i/n) `, split at
    line ends where possible. Whitespace-only pieces are dropped (Atlas wants 1+ characters)."""
    if len(text) <= limit:
        return [text] if text.strip() else []
    body_limit = limit - 24  # room for "(9999/9999) "
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > body_limit:  # a single over-long line is cut hard
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:body_limit])
            line = line[body_limit:]
        if len(current) + len(line) > body_limit:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    pieces = [p for p in pieces if p.strip()]
    return [f"({i}/{len(pieces)}) {p}" for i, p in enumerate(pieces, 1)]


def enum_problems(name: str, value: str | None, allowed: Iterable[str]) -> list[str]:
    allowed_set = set(allowed)
    if value is None or value in allowed_set:
        return []
    return [f"{name} must be one of {', '.join(sorted(allowed_set))}, got {value!r}"]


def step_title_problems(title: str) -> list[str]:
    if not title.strip():
        return ["title must not be empty"]
    if len(title) > MAX_STEP_TITLE_CHARS:
        return [f"title is {len(title)} characters, at most {MAX_STEP_TITLE_CHARS} allowed"]
    return []
