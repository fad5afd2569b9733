"""The disk budget rule, pure: which finished segments to delete when the recordings exceed it.

Uploaded segments go first, oldest first: they are safe in S3. Only when those are not enough do
segments not yet uploaded go, oldest first; each is a loss of data that never left the bench (with
S3 configured: `not_uploaded`, logged and counted) or plain local retention (no S3: `local_only`).
The open segments are never chosen (the config keeps a segment under half the budget).
"""

from __future__ import annotations

from collections.abc import Iterable

from edge_agent.recorder.model import SegmentInfo

UPLOADED = "uploaded"
NOT_UPLOADED = "not_uploaded"
LOCAL_ONLY = "local_only"


def choose_deletions(
    finished: Iterable[SegmentInfo], used_bytes: int, budget_bytes: int, *, uploads: bool
) -> list[tuple[SegmentInfo, str]]:
    over = used_bytes - budget_bytes
    if over <= 0:
        return []
    ordered = sorted(finished, key=lambda s: (s.started_wall, s.seq))
    uploaded = [s for s in ordered if s.s3_url]
    waiting = [s for s in ordered if not s.s3_url]
    chosen: list[tuple[SegmentInfo, str]] = []
    for segment, reason in [(s, UPLOADED) for s in uploaded] + [
        (s, NOT_UPLOADED if uploads else LOCAL_ONLY) for s in waiting
    ]:
        if over <= 0:
            break
        chosen.append((segment, reason))
        over -= segment.bytes
    return chosen
