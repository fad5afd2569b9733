"""Read-only slices of the evidence ring (sans-I/O): `RingSlice` (one source) and `MergedSlices`
(several, in time order) are sequences of `Frame`s made on demand from sealed blocks shared with the
ring (edge_agent/evidence/blocks.py; the still-open block's rows are copied), so taking a slice on the
event loop costs a memcpy of at most one block, and the evidence writer, in its thread, walks the rows
(decompressing packed blocks) without ever holding a list of every frame. A slice knows its channels,
sources and coverage (how much of the asked span the ring still held) without a pass over its frames.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from typing import overload

from edge_agent.evidence.blocks import Block, CutBy
from edge_agent.frames import Frame

_MONO = attrgetter("mono")


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a requested span one source's slice covers. `cut_by` says why the ring no longer
    held its start: "memory" (the byte budget evicted it) or "time" (older than ring_seconds)."""

    source: str
    requested_start: float
    covered_from: float | None  # the first frame's time (None: no frames)
    cut_by: CutBy | None


class RingFrames(Sequence[Frame]):
    """Frames read from ring blocks: what the writer needs without a pass over every frame."""

    __slots__ = ()

    def channels(self) -> list[str]:
        """Every channel with a value in these frames, in the order first seen (as the writer lists
        them when it walks the frames)."""
        raise NotImplementedError

    def sources(self) -> list[str]:
        raise NotImplementedError

    def coverage(self) -> list[Coverage]:
        raise NotImplementedError


class RingSlice(RingFrames):
    """One source's frames with start <= mono <= end, oldest first."""

    __slots__ = ("_cov", "_len", "segments", "source")

    def __init__(self, source: str, segments: list[tuple[Block, int, int]], coverage: Coverage) -> None:
        self.source = source
        self.segments = segments
        self._len = sum(hi - lo for _, lo, hi in segments)
        self._cov = coverage

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Frame]:
        for block, lo, hi in self.segments:
            yield from block.frames(self.source, lo, hi)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):
            return list(self)[index]
        index = _checked_index(index, self._len, "ring slice")
        for block, lo, hi in self.segments:
            if index < hi - lo:
                return next(block.frames(self.source, lo + index, lo + index + 1))
            index -= hi - lo
        raise AssertionError("unreachable: the segments add up to len")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RingSlice | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def first_seen(self) -> dict[str, tuple[float, int, int]]:
        """Channel -> (mono, row index, position in its row) of its first value."""
        seen: dict[str, tuple[float, int, int]] = {}
        base = 0
        for block, lo, hi in self.segments:
            for position, name in enumerate(block.layout):
                if name in seen:
                    continue
                row = block.first_present(name, lo, hi)
                if row is not None:
                    seen[name] = (block.mono(row), base + row - lo, position)
            base += hi - lo
        return seen

    def channels(self) -> list[str]:
        seen = self.first_seen()
        return sorted(seen, key=lambda name: seen[name][1:])

    def sources(self) -> list[str]:
        return [self.source] if self._len else []

    def coverage(self) -> list[Coverage]:
        return [self._cov]


class MergedSlices(RingFrames):
    """Slices of several sources as one sequence in time order (`heapq.merge`: at equal times, the
    earlier slice's frames first), walked lazily."""

    __slots__ = ("_len", "slices")

    def __init__(self, slices: Iterable[RingSlice]) -> None:
        self.slices = list(slices)
        self._len = sum(map(len, self.slices))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Frame]:
        return heapq.merge(*self.slices, key=_MONO)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):
            return list(self)[index]
        index = _checked_index(index, self._len, "merged slices")
        if index == 0:
            return next(iter(self))
        if index == self._len - 1:
            # The merge's last frame: the latest time; at a tie, the later slice's last frame.
            lasts = [(s[-1].mono, n) for n, s in enumerate(self.slices) if len(s)]
            return self.slices[max(lasts)[1]][-1]
        return next(islice(iter(self), index, None))

    def channels(self) -> list[str]:
        order: dict[str, tuple[float, int, int, int]] = {}
        for number, part in enumerate(self.slices):
            for name, (mono, row, position) in part.first_seen().items():
                key = (mono, number, row, position)
                if name not in order or key < order[name]:
                    order[name] = key
        return sorted(order, key=order.__getitem__)

    def sources(self) -> list[str]:
        return sorted({s.source for s in self.slices if len(s)})

    def coverage(self) -> list[Coverage]:
        return [c for s in self.slices for c in s.coverage()]


def _checked_index(index: int, length: int, what: str) -> int:
    """A sequence index as Python's lists take it (negative from the end); IndexError outside."""
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{what} index out of range")
    return index
