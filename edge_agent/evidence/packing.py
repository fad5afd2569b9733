"""How a sealed block's rows are held compressed (sans-I/O, pure: the packer runs it in a thread of its
own, the evidence writer in its thread).

A block stores rows (`mono, wall, [device_time,] value...`, doubles). Packed, they are one zlib stream
(level 1) of the block's columns one after the other. A column holds one channel's values side by
side, which repeat or change little from row to row; rows put unrelated channels between them.

A time column is stored as the differences of its doubles' bit patterns from row to row, their bytes
regrouped by place (every difference's first byte, then every second byte, ...). Times grow by small
steps, even within a read (a read's lines spread over its bytes): the differences repeat and their
high bytes are zeros, where the times themselves differ in every low byte. The differences are taken
on the whole column at once, as one integer minus itself shifted by a double (a step down borrows from
the next difference: still exact), and undone by a prefix sum of doubling shifts: C-speed big-integer
arithmetic, not a Python loop over rows. Values are left as they are: a channel of quantized noise
(a 4-decimal sensor) repeats whole doubles, which zlib finds.

Measured (bench/bench_ring.py, `packing`: blocks of 2,978 rows made as the agent makes them at 3 Mbaud,
times spread over each read's lines, a counter and 8 channels): steady channels, 13.1 bytes a row as
zlib of the rows plus the mono column apart, 2.3 so; 4-decimal noise on every channel, 40.3 -> 21.7.
Packing takes less CPU than that did; reading a whole block back, about three times more (the evidence
writer, in its thread). The mono column comes first, so a slice's bounds decompress only it (zlib stops
once it has produced the column's bytes).

Every double comes back bit for bit (NaN payloads, -0.0, the infinities): only bits are moved.
"""

from __future__ import annotations

import zlib
from array import array
from dataclasses import dataclass

# zlib level 1: a 256 KiB block in 1-3 ms; higher levels cost several times the CPU for a few percent.
# A 16 KiB window and memLevel 7: deflate's state is ~128 KiB instead of ~256 KiB for each block packed
# (in the packer's thread), for 1-2 % more bytes (bench rows: 7.89 vs 7.78 B/row) and no more CPU.
PACK_LEVEL = 1
PACK_WBITS = 14
PACK_MEM_LEVEL = 7
_DOUBLE = 8
_DOUBLE_BITS = 64


@dataclass(frozen=True, slots=True)
class Packed:
    """A sealed block's rows, packed (`pack_rows`)."""

    data: bytes


def pack_rows(data: array[float], width: int, time_columns: int) -> Packed:
    """`data` (rows of `width` doubles, the first `time_columns` of them times) packed. The columns are
    laid out first (C-level slices) and compressed in one call, which lets go of the GIL once: the
    packer's thread must not wait for the event loop's GIL between hundreds of small calls."""
    laid_out = bytearray()
    for column in range(width):
        raw = data[column::width].tobytes()
        if column < time_columns:
            steps = _steps(raw)
            for place in range(_DOUBLE):
                laid_out += steps[place::_DOUBLE]
        else:
            laid_out += raw
    compressor = zlib.compressobj(PACK_LEVEL, zlib.DEFLATED, PACK_WBITS, PACK_MEM_LEVEL)
    return Packed(compressor.compress(laid_out) + compressor.flush())


def unpack_rows(packed: Packed, rows: int, width: int, time_columns: int) -> array[float]:
    """The rows `pack_rows` packed, as they were."""
    raw = memoryview(zlib.decompress(packed.data))
    out = array("d", bytes(_DOUBLE * rows * width))
    size = _DOUBLE * rows
    for column in range(width):
        part = raw[column * size : (column + 1) * size]
        out[column::width] = _time_column(part, rows) if column < time_columns else _doubles(part)
    return out


def unpack_monos(packed: Packed, rows: int) -> array[float]:
    """The first column (the rows' mono times) alone: only its bytes are decompressed."""
    head = zlib.decompressobj().decompress(packed.data, _DOUBLE * rows)
    return _time_column(memoryview(head), rows)


def _steps(raw: bytes) -> bytes:
    """A column's bit patterns as the first and then each one's difference from the one before."""
    column = int.from_bytes(raw, "little")
    return ((column - (column << _DOUBLE_BITS)) & _mask(raw)).to_bytes(len(raw), "little")


def _time_column(raw: memoryview, rows: int) -> array[float]:
    joined = bytearray(_DOUBLE * rows)
    for place in range(_DOUBLE):
        joined[place::_DOUBLE] = raw[place * rows : (place + 1) * rows]
    mask = _mask(joined)
    column = int.from_bytes(joined, "little")
    shift = _DOUBLE_BITS
    while shift < 8 * len(joined):  # each pass doubles how many differences every double has summed
        column = (column + (column << shift)) & mask
        shift *= 2
    return _doubles(memoryview(column.to_bytes(len(joined), "little")))


def _mask(raw: bytes | bytearray) -> int:
    return (1 << (8 * len(raw))) - 1


def _doubles(raw: memoryview) -> array[float]:
    column = array("d")
    column.frombytes(raw)
    return column
