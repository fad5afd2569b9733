"""Columnar storage of one source's frames (sans-I/O): fixed-size blocks of `array('d')` columns, and the
read-only slices the evidence writer takes.

A `Frame` with its dict of floats costs ~650 bytes for 8 channels; the same row here costs 8 bytes a
value plus two (three with a device time) 8-byte time values. A block holds the rows of a fixed channel
set; its columns are allocated whole when the block is made (so its cost is known before it exists and
is charged to the ring's budget) and filled with `ABSENT`, so a frame without some channel leaves that
cell absent at no cost. A channel the block does not have ends the block (the ring starts another).

A frame read back has the values it was stored with (bit for bit: NaN, -0.0, the infinities); its dict
lists them in the block's column order, which is the order the source sends them unless a JSON device
reorders its fields from line to line.

`ABSENT` is a quiet NaN with its own payload: a device's NaN (a JSON `null`, a `nan` field) stays a
NaN value, distinct from a channel the frame did not have. Copies (`array` slices, `float` objects)
keep the payload; only arithmetic would lose it, and stored values are never computed on.

Slices (`RingSlice`, and `MergedSlices` for several sources) are sequences of `Frame`s made on
demand from sealed blocks shared with the ring (the still-open block's rows are copied), so taking a
slice on the event loop costs a memcpy of at most one block, and the writer, in its thread, walks the
rows without ever holding a list of every frame.
"""

from __future__ import annotations

import heapq
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from operator import attrgetter
from typing import Literal, overload

from edge_agent.frames import Frame

_ABSENT_BYTES = struct.pack("<Q", 0x7FF8_0000_00AB_5E17)
ABSENT: float = struct.unpack("<d", _ABSENT_BYTES)[0]
_ONE_ABSENT = array("d", [ABSENT])
_MONO = attrgetter("mono")

CutBy = Literal["memory", "time"]


def is_absent(value: float) -> bool:
    return value != value and struct.pack("<d", value) == _ABSENT_BYTES


def _absent_column(rows: int) -> array[float]:
    return _ONE_ABSENT * rows  # exact size: a repeat allocates no spare room


def _exact(column: array[float], lo: int, hi: int) -> array[float]:
    return column[lo:hi]


class Block:
    """Rows of one source with one channel set. Mutable (`used` grows) until sealed, then frozen."""

    __slots__ = ("capacity", "columns", "device", "mono", "nbytes", "used", "wall")

    def __init__(self, channels: Iterable[str], capacity: int, device_time: bool) -> None:
        self.capacity = capacity
        self.used = 0
        self.mono = _absent_column(capacity)
        self.wall = _absent_column(capacity)
        self.device: array[float] | None = _absent_column(capacity) if device_time else None
        self.columns: dict[str, array[float]] = {name: _absent_column(capacity) for name in channels}
        self.nbytes = self._measure()

    @staticmethod
    def cost(channels: Sequence[str], capacity: int, device_time: bool) -> int:
        """What a block of this shape will cost, before it is made (`nbytes` after it is)."""
        arrays = 2 + int(device_time) + len(channels)
        one_array = sys.getsizeof(_ONE_ABSENT) - 8
        dict_bytes = sys.getsizeof(dict.fromkeys(channels))
        return (
            _BLOCK_OBJECT_BYTES
            + dict_bytes
            + sum(map(sys.getsizeof, channels))
            + arrays * (one_array + 8 * capacity)
        )

    def _measure(self) -> int:
        """The block object, its columns dict and the names in it (counted in every block, though
        blocks of one source often share them: an over-count, never an under-count), every array."""
        arrays = [self.mono, self.wall, *self.columns.values()]
        if self.device is not None:
            arrays.append(self.device)
        columns = self.columns
        return (
            _BLOCK_OBJECT_BYTES
            + sys.getsizeof(columns)
            + sum(map(sys.getsizeof, columns))
            + sum(map(sys.getsizeof, arrays))
        )

    def seal(self) -> int:
        """Freeze the block, giving back the rows it never used; returns the bytes given back."""
        used = self.used
        if used == self.capacity:
            return 0
        before = self.nbytes
        self.mono = _exact(self.mono, 0, used)
        self.wall = _exact(self.wall, 0, used)
        if self.device is not None:
            self.device = _exact(self.device, 0, used)
        self.columns = {name: _exact(column, 0, used) for name, column in self.columns.items()}
        self.capacity = used
        self.nbytes = self._measure()
        return before - self.nbytes

    def copy_rows(self, lo: int, hi: int) -> Block:
        """A sealed copy of rows [lo, hi) (of the open block: the ring goes on writing into it)."""
        copy = Block.__new__(Block)
        copy.capacity = copy.used = hi - lo
        copy.mono = _exact(self.mono, lo, hi)
        copy.wall = _exact(self.wall, lo, hi)
        copy.device = _exact(self.device, lo, hi) if self.device is not None else None
        copy.columns = {name: _exact(column, lo, hi) for name, column in self.columns.items()}
        copy.nbytes = copy._measure()
        return copy

    def bounds(self, start: float, end: float) -> tuple[int, int]:
        """The rows with start <= mono <= end, as [lo, hi) (rows are in mono order)."""
        used = self.used
        return bisect_left(self.mono, start, 0, used), bisect_right(self.mono, end, 0, used)

    def frames(self, source: str, lo: int, hi: int) -> Iterator[Frame]:
        names = tuple(self.columns)
        rows = zip(*(c[lo:hi] for c in self.columns.values()), strict=True) if names else repeat((), hi - lo)
        devices: Iterable[float | None] = self.device[lo:hi] if self.device is not None else repeat(None)
        for mono, wall, device_time, values in zip(
            self.mono[lo:hi], self.wall[lo:hi], devices, rows, strict=False
        ):
            yield Frame(
                source,
                mono,
                wall,
                {name: v for name, v in zip(names, values, strict=True) if v == v or not is_absent(v)},
                None if device_time is None or is_absent(device_time) else device_time,
            )

    def first_present(self, name: str, lo: int, hi: int) -> int | None:
        """The first row in [lo, hi) where channel `name` has a value (NaN included), or None."""
        column = self.columns.get(name)
        if column is None:
            return None
        for index in range(lo, hi):
            value = column[index]
            if value == value or not is_absent(value):
                return index
        return None


# The Block object itself (its slots), measured once.
_BLOCK_OBJECT_BYTES = sys.getsizeof(Block.__new__(Block))


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a requested span one source's slice covers. `cut_by` says why the ring no longer
    held its start: "memory" (the byte budget evicted it) or "time" (older than ring_seconds)."""

    source: str
    requested_start: float
    covered_from: float | None  # the first frame's time (None: no frames)
    cut_by: CutBy | None


class ColumnarFrames(Sequence[Frame]):
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


class RingSlice(ColumnarFrames):
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
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("ring slice index out of range")
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
            for position, name in enumerate(block.columns):
                if name in seen:
                    continue
                row = block.first_present(name, lo, hi)
                if row is not None:
                    seen[name] = (block.mono[row], base + row - lo, position)
            base += hi - lo
        return seen

    def channels(self) -> list[str]:
        seen = self.first_seen()
        return sorted(seen, key=lambda name: seen[name][1:])

    def sources(self) -> list[str]:
        return [self.source] if self._len else []

    def coverage(self) -> list[Coverage]:
        return [self._cov]


class MergedSlices(ColumnarFrames):
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
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("merged slices index out of range")
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
