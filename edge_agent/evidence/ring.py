"""Sans-I/O evidence ring: the last `seconds` of frames per source, bounded by time and by count.

Every frame passes through here, so `add` is a dict lookup, a deque append and (when frames expire) a
few poplefts: no logging, no allocation beyond the deque's own blocks. The count bound is the memory
bound: a source that floods frames (or a device clock that stalls `mono`) cannot grow the ring beyond
`max_frames`, whatever the time bound says. `deque(maxlen=...)` drops the oldest frame itself.
"""

from __future__ import annotations

from collections import deque

from edge_agent.config import EvidenceSection
from edge_agent.frames import Frame

# A 921,600-baud link carries about 2,300 short CSV lines a second at most; 2,000/s of ring per second
# of history keeps the worst realistic source whole while bounding memory (a frame with a handful of
# channels is a few hundred bytes: 120 s * 2,000/s is ~240k frames, tens of MB per source).
DEFAULT_MAX_FRAMES_PER_SECOND = 2000


class FrameRing:
    """One source's recent frames, oldest first. Frames are assumed to arrive in `mono` order."""

    __slots__ = ("_frames", "max_frames", "seconds")

    def __init__(self, seconds: float, max_frames: int) -> None:
        if seconds <= 0 or max_frames < 1:
            raise ValueError("a ring needs seconds > 0 and max_frames >= 1")
        self.seconds = seconds
        self.max_frames = max_frames
        self._frames: deque[Frame] = deque(maxlen=max_frames)

    def add(self, frame: Frame) -> None:
        frames = self._frames
        frames.append(frame)
        horizon = frame.mono - self.seconds
        while frames[0].mono < horizon:
            frames.popleft()

    def slice(self, start_mono: float, end_mono: float) -> list[Frame]:
        """Frames with start <= mono <= end, oldest first.

        Scans from the newest end: evidence windows sit at the recent end of the ring, so this touches
        only the frames it returns plus one.
        """
        picked: list[Frame] = []
        for frame in reversed(self._frames):
            if frame.mono < start_mono:
                break
            if frame.mono <= end_mono:
                picked.append(frame)
        picked.reverse()
        return picked

    @property
    def oldest_mono(self) -> float | None:
        return self._frames[0].mono if self._frames else None

    @property
    def newest_mono(self) -> float | None:
        return self._frames[-1].mono if self._frames else None

    def __len__(self) -> int:
        return len(self._frames)


class EvidenceRings:
    """A `FrameRing` per source, made on the source's first frame."""

    __slots__ = ("_rings", "max_frames", "seconds")

    def __init__(self, seconds: float, max_frames_per_second: int = DEFAULT_MAX_FRAMES_PER_SECOND) -> None:
        if seconds <= 0 or max_frames_per_second < 1:
            raise ValueError("evidence rings need seconds > 0 and max_frames_per_second >= 1")
        self.seconds = seconds
        self.max_frames = max(1, int(seconds * max_frames_per_second))
        self._rings: dict[str, FrameRing] = {}

    @classmethod
    def from_config(
        cls, section: EvidenceSection, max_frames_per_second: int = DEFAULT_MAX_FRAMES_PER_SECOND
    ) -> EvidenceRings:
        return cls(section.ring_seconds, max_frames_per_second)

    def add(self, frame: Frame) -> None:
        ring = self._rings.get(frame.source)
        if ring is None:
            ring = self._rings[frame.source] = FrameRing(self.seconds, self.max_frames)
        ring.add(frame)

    def slice(self, source: str, start_mono: float, end_mono: float) -> list[Frame]:
        ring = self._rings.get(source)
        return ring.slice(start_mono, end_mono) if ring is not None else []

    def ring(self, source: str) -> FrameRing | None:
        return self._rings.get(source)

    @property
    def sources(self) -> list[str]:
        return list(self._rings)
