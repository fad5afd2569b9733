"""Counters of what a decoder did with the bytes it was fed, by outcome and by skip reason.

Plain ints on a slotted object: the decoders bump them per line, so they must cost next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Why a line was skipped. Stable names: they become metric labels and appear in `tail`'s summary.
TOO_LONG = "too_long"  # more than max_line_bytes before the newline
NOT_UTF8 = "not_utf8"
EMPTY = "empty"  # blank line (only whitespace)
WRONG_COLUMNS = (
    "wrong_columns"  # csv: token count differs from the columns; jsonl/kv: a configured field missing
)
NOT_NUMERIC = "not_numeric"  # a channel value (or the device time) is not a number
BAD_JSON = "bad_json"  # jsonl: not JSON, or not a JSON object
BAD_KV = "bad_kv"  # kv: a token without `=`, or an empty name
BAD_MARKER = "bad_marker"  # matched the marker regex but its edge is neither start nor end
PARTIAL = "partial"  # an unterminated line dropped when the link went down
# csv without `columns`: a row read before the device's header line (the agent joined a stream mid-way;
# taking that row as the header would name the channels by its numbers).
BEFORE_HEADER = "before_header"
SKIP_REASONS = (
    TOO_LONG, NOT_UTF8, EMPTY, WRONG_COLUMNS, NOT_NUMERIC, BAD_JSON, BAD_KV, BAD_MARKER, PARTIAL,
    BEFORE_HEADER,
)  # fmt: skip


@dataclass(slots=True)
class DecodeStats:
    """Every terminated line ends up in exactly one bucket:
    `lines == frames + markers + headers + comments + sum(skipped.values()) - skipped[partial]`.
    (`partial` lines never saw their newline, so they are not in `lines`.)
    """

    lines: int = 0
    frames: int = 0
    markers: int = 0
    headers: int = 0  # csv header lines (the first one, repeats, and new ones of a device that restarted)
    comments: int = 0  # lines starting with '#' that are not step markers
    overflow_bytes: int = 0  # bytes thrown away from over-long lines: visible even before their newline
    header_changes: int = 0  # csv: times the device's header changed the columns (not a bucket of lines)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, int]:
        flat = {
            "lines": self.lines,
            "frames": self.frames,
            "markers": self.markers,
            "headers": self.headers,
            "comments": self.comments,
            "overflow_bytes": self.overflow_bytes,
            "header_changes": self.header_changes,
        }
        for reason, count in sorted(self.skipped.items()):
            flat[f"skipped_{reason}"] = count
        return flat
