"""Compact storage of one source's frames (sans-I/O): blocks of packed rows of doubles, and the
read-only slices the evidence writer takes.

A `Frame` with its dict of floats costs ~420 bytes for 8 channels (~6.7 kB for 270); the same row here
costs 8 bytes a value plus two (three with a device time) for its times. A block holds the rows of one
channel layout: `mono, wall, [device_time,] value...` as doubles in one `array('d')` allocated whole
when the block is made (so its cost is known before it exists and is charged to the ring's budget),
written in place by `struct.pack_into` from the frame's dict through an `itemgetter` of the layout: two
C calls a frame whatever the width, and the dict's key order does not matter. A frame without some
channel of the layout takes a slower path that fills the cell with `ABSENT`; a channel the layout lacks
ends the block (the ring starts another).

A frame read back has the values it was stored with (bit for bit: NaN, -0.0, the infinities); its dict
lists them in the block's layout order, which is the order the source sends them unless a JSON device
reorders its fields from line to line.

`ABSENT` is a quiet NaN with its own payload: a device's NaN (a JSON `null`, a `nan` field) stays a
NaN value, distinct from a channel the frame did not have. Copies (array slices, `float` objects,
struct packing) keep the payload; only arithmetic would lose it, and stored values are never computed on.

A sealed block may be packed (edge_agent/evidence/packing.py: zlib level 1 of its columns, the mono
column first so that a slice's bounds decompress only that): the ring has it done in a thread of its
own and swaps the result in on the event loop (`Block.compress`); readers take the rows back with
`rows()`, which decompresses a packed block (the evidence writer, in its thread). The swap stores the
packed rows before it empties `data`, so a reader in another thread that finds `data` empty finds
`packed` set.

Slices of the ring's blocks: edge_agent/evidence/slices.py.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Literal

from edge_agent.evidence.packing import Packed, unpack_monos, unpack_rows
from edge_agent.frames import Frame

_ABSENT_BYTES = struct.pack("<Q", 0x7FF8_0000_00AB_5E17)
ABSENT: float = struct.unpack("<d", _ABSENT_BYTES)[0]
_ONE_ABSENT = array("d", [ABSENT])
_EMPTY = array("d")

CutBy = Literal["memory", "time"]
Getter = Callable[[Mapping[str, float]], tuple[float, ...]]


def is_absent(value: float) -> bool:
    return value != value and struct.pack("<d", value) == _ABSENT_BYTES


def _getter(layout: tuple[str, ...]) -> Getter:
    """The layout's values of a frame's dict as a tuple (KeyError if one is missing)."""
    if len(layout) > 1:
        return itemgetter(*layout)
    if layout:
        name = layout[0]
        return lambda values: (values[name],)
    return lambda values: ()


# Sizes of the parts of a block that do not grow with its rows, measured once.
_ARRAY_HEADER = sys.getsizeof(_ONE_ABSENT) - 8
_STRUCT_BYTES = sys.getsizeof(struct.Struct("<2d"))
_GETTER_BYTES = max(sys.getsizeof(itemgetter("a", "b")), sys.getsizeof(_getter(("a",))))
_EMPTY_TUPLE = sys.getsizeof(())


class Block:
    """Rows of one source with one channel layout. Mutable (`used` grows) until sealed, then frozen."""

    __slots__ = (
        "capacity",
        "data",
        "device",
        "first",
        "get",
        "last",
        "layout",
        "nbytes",
        "pack",
        "packed",
        "row",
        "row_bytes",
        "used",
        "width",
    )

    def __init__(self, channels: Sequence[str], capacity: int, device_time: bool) -> None:
        self.layout = tuple(channels)
        self.device = device_time
        self.width = 2 + int(device_time) + len(self.layout)  # doubles a row
        self.row_bytes = 8 * self.width
        self.row = struct.Struct(f"<{self.width}d")
        self.pack = self.row.pack_into
        self.get = _getter(self.layout)
        self.capacity = capacity
        self.used = 0
        self.data = _ONE_ABSENT * (capacity * self.width)  # exact size: a repeat allocates no spare room
        self.packed: Packed | None = None
        self.first = self.last = math.nan  # mono of the first and last rows, once packed
        self.nbytes = self._measure()

    @staticmethod
    def cost(channels: Sequence[str], capacity: int, device_time: bool) -> int:
        """What a block of this shape will cost, before it is made (`nbytes` after it is)."""
        width = 2 + int(device_time) + len(channels)
        return Block._fixed_bytes(channels) + _ARRAY_HEADER + 8 * capacity * width

    @staticmethod
    def _fixed_bytes(channels: Sequence[str]) -> int:
        # The block object, its Struct and getter, the layout tuple and the getter's own copy of it,
        # and the names (counted in every block, though blocks of one source often share them: an
        # over-count, never an under-count).
        tuples = 2 * (_EMPTY_TUPLE + 8 * len(channels))
        names = sum(map(sys.getsizeof, channels))
        return _BLOCK_OBJECT_BYTES + _STRUCT_BYTES + _GETTER_BYTES + tuples + names

    def _measure(self) -> int:
        packed = self.packed
        held = sys.getsizeof(self.data)
        if packed is not None:
            held += _PACKED_OBJECT_BYTES + sys.getsizeof(packed.data)
        return self._fixed_bytes(self.layout) + held

    @property
    def time_columns(self) -> int:
        return 2 + int(self.device)

    def compress(self, packed: Packed) -> int:
        """Hold the rows as `packed` (of this sealed block's `data`, by `packing.pack_rows`) instead;
        returns the change in bytes held. Not done when packing would not save a tenth of what the
        block holds, counted as `nbytes` counts it (a small block's packed object and empty array can
        outweigh what zlib saved: holding it packed would then take more than the budget gave it)."""
        data = self.data
        if self.packed is not None or not self.used or len(data) != self.used * self.width:
            return 0
        before = self.nbytes
        after = self._fixed_bytes(self.layout) + sys.getsizeof(_EMPTY) + _PACKED_OBJECT_BYTES
        if after + sys.getsizeof(packed.data) > 0.9 * before:
            return 0
        self.first, self.last = data[0], data[(self.used - 1) * self.width]
        self.packed = packed  # before `data` empties: see the module doc
        self.data = _EMPTY
        self.nbytes = self._measure()
        return self.nbytes - before

    def rows(self) -> array[float]:
        """The block's doubles, row after row (a packed block's decompressed: call off the event loop)."""
        data = self.data
        if len(data) or not self.used:
            return data
        packed = self.packed
        assert packed is not None  # set before data was emptied
        return unpack_rows(packed, self.used, self.width, self.time_columns)

    def _monos(self, lo: int, hi: int) -> array[float]:
        data = self.data
        if len(data) or not self.used:
            return data[lo * self.width : hi * self.width : self.width]
        packed = self.packed
        assert packed is not None
        return unpack_monos(packed, self.used)[lo:hi]

    def write(self, frame: Frame) -> bool:
        """Store `frame` as the next row if this block can hold it (the layout has every channel it
        has, and a device time column if it has one); channels it lacks are ABSENT. False: it cannot."""
        values = frame.values
        device_time = frame.device_time
        row = self.used
        if row >= self.capacity or (device_time is not None and not self.device):
            return False
        if not values.keys() <= set(self.layout):
            return False
        cells = [values.get(name, ABSENT) for name in self.layout]
        times = (frame.mono, frame.wall, ABSENT if device_time is None else device_time)
        self.pack(self.data, row * self.row_bytes, *times[: 2 + int(self.device)], *cells)
        self.used = row + 1
        return True

    def seal(self) -> int:
        """Freeze the block, giving back the rows it never used; returns the bytes given back."""
        if self.used == self.capacity:
            return 0
        before = self.nbytes
        self.data = self.data[: self.used * self.width]
        self.capacity = self.used
        self.nbytes = self._measure()
        return before - self.nbytes

    def copy_rows(self, lo: int, hi: int) -> Block:
        """A sealed copy of rows [lo, hi) (of the open block: the ring goes on writing into it)."""
        copy = Block.__new__(Block)
        copy.layout, copy.device, copy.width, copy.row_bytes = (
            self.layout,
            self.device,
            self.width,
            self.row_bytes,
        )
        copy.row, copy.pack, copy.get = self.row, self.pack, self.get
        copy.capacity = copy.used = hi - lo
        copy.data = self.data[lo * self.width : hi * self.width]
        copy.packed, copy.first, copy.last = None, math.nan, math.nan
        copy.nbytes = copy._measure()
        return copy

    def mono(self, row: int) -> float:
        data = self.data
        if len(data):
            return data[row * self.width]
        if row == 0:
            return self.first
        if row == self.used - 1:
            return self.last
        return self._monos(row, row + 1)[0]

    def bounds(self, start: float, end: float) -> tuple[int, int]:
        """The rows with start <= mono <= end, as [lo, hi) (rows are in mono order). A packed block
        wholly inside decompresses nothing; one the span cuts, only its mono column."""
        used = self.used
        if used and start <= self.mono(0) and self.mono(used - 1) <= end:
            return 0, used
        monos = self._monos(0, used)
        return bisect_left(monos, start), bisect_right(monos, end)

    def frames(self, source: str, lo: int, hi: int) -> Iterator[Frame]:
        layout = self.layout
        first = 2 + int(self.device)
        rows = self.row.iter_unpack(memoryview(self.rows())[lo * self.width : hi * self.width])
        for row in rows:
            device_time = row[2] if self.device and not is_absent(row[2]) else None
            values = {
                name: v for name, v in zip(layout, row[first:], strict=True) if v == v or not is_absent(v)
            }
            yield Frame(source, row[0], row[1], values, device_time)

    def first_present(self, name: str, lo: int, hi: int) -> int | None:
        """The first row in [lo, hi) where channel `name` has a value (NaN included), or None."""
        if name not in self.layout:
            return None
        width = self.width
        column = self.rows()[lo * width + 2 + int(self.device) + self.layout.index(name) : hi * width : width]
        for index, value in enumerate(column):
            if value == value or not is_absent(value):
                return lo + index
        return None


# The Block object itself (its slots), measured once.
_BLOCK_OBJECT_BYTES = sys.getsizeof(Block.__new__(Block))
_PACKED_OBJECT_BYTES = sys.getsizeof(Packed(b""))
