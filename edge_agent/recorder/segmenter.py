"""Sans-I/O segmenter: which segment each frame goes to, and when a segment is opened and closed.

Input, in arrival order: frames, step changes and run changes. Output: actions for the writer
(`Open`, `Rows`, `Close`, and the `RunChange` itself once every segment of the ended run is closed).
A source's segment is closed when the step or the test run changes (one segment per step and source),
when its compressed size reaches `max_bytes` (the writer reports sizes with `written`), when it spans
`max_seconds` of host time, or when the source's channels change (a file keeps one header: a frame
with a channel the header lacks starts a new segment; one that lacks a channel leaves its cell blank).
No clock: times come from the frames and from `expire(now_wall)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edge_agent.frames import Frame, FrameBatch
from edge_agent.recorder.model import StepRef


@dataclass(frozen=True, slots=True)
class StepChange:
    """From here on, frames belong to `step` (None: between steps)."""

    step: StepRef | None


@dataclass(frozen=True, slots=True)
class RunChange:
    """From here on, frames belong to the test run `run_key` (the next one, `POST /runs/end`), whose
    segments go to `folder`, and to `step` in it. Every open segment closes (reason `run`) even when
    the step is the same (between steps before and after); the writer takes it as an action too."""

    run_key: str
    folder: Path
    step: StepRef | None = None


class StepLike(Protocol):
    """Anything with the step from there on (the Recorder hands its cut markers over as they are)."""

    @property
    def step(self) -> StepRef | None: ...


@dataclass(frozen=True, slots=True)
class Open:
    seq: int
    source: str
    step: StepRef | None
    channels: tuple[str, ...]
    has_device_time: bool
    first: Frame


@dataclass(slots=True)
class Rows:
    seq: int
    channels: tuple[str, ...]
    frames: list[Frame | FrameBatch] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Close:
    seq: int
    reason: str  # step | run | size | time | channels | stop


Action = Open | Rows | Close | RunChange


@dataclass(slots=True)
class _OpenSegment:
    seq: int
    channels: tuple[str, ...]
    keys: frozenset[str]
    started_wall: float
    full: bool = False


class Segmenter:
    def __init__(
        self, *, max_bytes: int, max_seconds: float, next_seq: int = 1, step: StepRef | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.next_seq = next_seq
        self.step = step
        self._open: dict[str, _OpenSegment] = {}  # source -> its open segment
        self._by_seq: dict[int, _OpenSegment] = {}

    @property
    def open_segments(self) -> int:
        return len(self._open)

    def route(self, items: Iterable[Frame | FrameBatch | StepChange | StepLike]) -> list[Action]:
        actions: list[Action] = []
        last: Rows | None = None
        opened = self._open
        for item in items:
            # A batch's rows share their wall time and channels: what decides for its first row decides
            # for all of them (and what decides for a frame leaves a batch's row the same segment).
            if isinstance(item, Frame | FrameBatch):
                names = item.names if isinstance(item, FrameBatch) else item.values.keys()
                segment = opened.get(item.source)
                if (
                    segment is None
                    or segment.full
                    or item.wall - segment.started_wall >= self.max_seconds
                    or not segment.keys.issuperset(names)
                ):
                    first = item.frame(0) if isinstance(item, FrameBatch) else item
                    segment = self._rotate(first, segment, actions)
                    last = None
                if last is None or last.seq != segment.seq:
                    last = Rows(segment.seq, segment.channels)
                    actions.append(last)
                last.frames.append(item)
            elif type(item) is RunChange:
                self.step = item.step
                actions += self.close_all("run")
                actions.append(item)
                last = None
            elif item.step != self.step:  # StepChange, or a Recorder cut
                self.step = item.step
                actions += self.close_all("step")
                last = None
        return actions

    def _rotate(self, frame: Frame, old: _OpenSegment | None, actions: list[Action]) -> _OpenSegment:
        if old is not None:
            if old.full:
                reason = "size"
            elif frame.wall - old.started_wall >= self.max_seconds:
                reason = "time"
            else:
                reason = "channels"
            actions.append(self._close(frame.source, reason))
        channels = tuple(frame.values)
        segment = _OpenSegment(self.next_seq, channels, frozenset(channels), frame.wall)
        self.next_seq += 1
        self._open[frame.source] = segment
        self._by_seq[segment.seq] = segment
        actions.append(
            Open(segment.seq, frame.source, self.step, channels, frame.device_time is not None, frame)
        )
        return segment

    def _close(self, source: str, reason: str) -> Close:
        segment = self._open.pop(source)
        del self._by_seq[segment.seq]
        return Close(segment.seq, reason)

    def written(self, seq: int, total_bytes: int) -> None:
        """The writer's report after a flush: a segment at its size limit takes no more frames."""
        segment = self._by_seq.get(seq)
        if segment is not None and total_bytes >= self.max_bytes:
            segment.full = True

    def close_full(self) -> list[Action]:
        """Close the segments at their size limit now, not at their source's next frame."""
        full = [source for source, seg in self._open.items() if seg.full]
        return [self._close(source, "size") for source in full]

    def expire(self, now_wall: float) -> list[Action]:
        """Close segments that span `max_seconds` even if their source went quiet."""
        old = [s for s, seg in self._open.items() if now_wall - seg.started_wall >= self.max_seconds]
        return [self._close(source, "time") for source in old]

    def close_all(self, reason: str) -> list[Action]:
        return [self._close(source, reason) for source in list(self._open)]
