"""The segment record (kept beside each segment file as `<name>.json`) and the names of things.

A segment is one source's frames of one step (or of the time between steps) of one run, cut further
by size and time. Its file name, and so its S3 key, follows from (run, sequence number, source, step)
alone: an upload retried after a crash writes the same object.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

RECORDINGS_DIR = "recordings"
SEGMENT_SUFFIX = ".csv.gz"
OPEN_SUFFIX = ".part"  # a segment still being written (or cut short by a crash)
SIDECAR_SUFFIX = ".json"
CONTENT_TYPE = "application/gzip"  # the bytes at the S3 URL; the name says they are CSV inside
BETWEEN_STEPS = "between-steps"
TIME_COLUMN = "time_utc"  # host receive time, UTC, milliseconds: what Excel and pandas parse as a date
OFFSET_COLUMN = "t_s"  # seconds since the segment's first frame, on its source's timeline (device clock)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe, readable form of a step, source or run name."""
    cleaned = _UNSAFE.sub("-", text.strip()).strip("-.")
    return cleaned[:limit] or "x"


@dataclass(frozen=True, slots=True)
class StepRef:
    """The step a segment belongs to: its Atlas step title (unique in the run) and card title."""

    title: str
    card: str


@dataclass(slots=True)
class SegmentInfo:
    run_key: str
    seq: int
    source: str
    step: str | None
    card: str | None
    file: str  # the finished file's name, in the run's folder
    columns: list[str]  # the CSV header
    device_time_column: str | None
    started_wall: float
    ended_wall: float | None = None
    frames: int = 0
    bytes: int = 0
    state: str = "open"  # open | finished
    finish_reason: str = ""
    recovered: bool = False  # finished at a start after a crash: rows past the last flush were lost
    upload_job: int | None = None
    register_job: int | None = None
    s3_url: str | None = None  # set once uploaded
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.run_key}/{self.seq}"

    @property
    def channels(self) -> list[str]:
        skip = {TIME_COLUMN, OFFSET_COLUMN, self.device_time_column}
        return [c for c in self.columns if c not in skip]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> SegmentInfo | None:
        """None for anything that is not a record this module wrote (a damaged or foreign file)."""
        if not isinstance(raw, dict):
            return None
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError:
            return None


def run_dir(root: Path, run_key: str) -> Path:
    return root / slug(run_key, 120)


def segment_file_name(seq: int, source: str, step: StepRef | None) -> str:
    return f"{seq:06d}_{slug(source)}_{slug(step.title) if step else BETWEEN_STEPS}{SEGMENT_SUFFIX}"


def sidecar_path(segment_path: Path) -> Path:
    return segment_path.with_name(segment_path.name.removesuffix(SEGMENT_SUFFIX) + SIDECAR_SUFFIX)


def open_path(segment_path: Path) -> Path:
    return segment_path.with_name(segment_path.name + OPEN_SUFFIX)
