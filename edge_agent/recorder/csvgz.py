"""The segment format: CSV text in gzip members, one member per flush.

A gzip file may hold several members one after the other (RFC 1952 §2.2); gzip, zcat, Python's gzip
module and so pandas read them as one stream. Writing each flush as a complete member makes the file
valid after every flush: a SIGKILL mid-write leaves at most one incomplete member at the end, which
`recover` cuts off. The header is its own first member, written when the segment opens.

Columns: `time_utc` (the host's receive time, UTC, `YYYY-MM-DD HH:MM:SS.mmm`: Excel and pandas parse
it), `t_s` (seconds since the segment's first frame on its source's timeline: the device's clock when
the port has one), the device's own time column as sent (when the port has `device_time`), then the
channels. Values are Python's shortest round-trip form (`repr`): read back they are the same floats;
`nan`, `inf` and `-inf` as pandas reads them; a channel missing from a frame is an empty cell. A read
whose every recorded field the device sent as a plain number is written as the device spelled it
instead (`RowFormatter._from_text`: blanks taken off, `.0` after an integer): float() reads that text as
the very float the decoder made of it, and pandas too (tests/recorder/test_pure.py); it costs no float
formatting, the recorder's largest cost.
"""

from __future__ import annotations

import csv
import gzip
import io
import operator
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from operator import add, sub
from pathlib import Path
from typing import Any

from edge_agent.frames import DeviceText, Frame, FrameBatch
from edge_agent.recorder.model import OFFSET_COLUMN, TIME_COLUMN

READ_BLOCK = 1 << 20

# What float() strips around a field (ASCII whitespace: a CRLF device's `\r`, padding), and the only bytes
# a plain number is made of once they are gone: `-12.500`, `.5`, `7.`, `0042` (float() took each field
# already, so a `-` can only lead and a field has at most one point).
_BLANKS = b" \t\r\x0b\x0c"
_PLAIN = b"0123456789.-"
_DIGITS_SIGN = b"0123456789-"  # a plain number without them: its point or nothing


def header(channels: Sequence[str], device_time_column: str | None) -> list[str]:
    cols = [TIME_COLUMN, OFFSET_COLUMN]
    if device_time_column is not None:
        cols.append(device_time_column)
    return cols + list(channels)


def utc_ms(wall: float) -> str:
    ms = int(wall * 1000.0)
    seconds, frac = divmod(ms, 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{frac:03d}"


class RowFormatter:
    """Frames of one segment -> CSV lines. Built once per segment; `format` runs per flush batch.

    A `FrameBatch` with the segment's channels is formatted whole: its cells laid out in one list by
    C-level slice copies and one `%` of the row format repeated for every row (the same `%.6f` and `%r`
    conversions a frame gets, so the text is the same), instead of a Python step per row.
    """

    __slots__ = ("_channels", "_fmt", "_get", "_has_device_time", "_last_text", "_last_wall", "start")

    def __init__(self, channels: Sequence[str], has_device_time: bool, start_mono: float) -> None:
        self._channels = tuple(channels)
        self._fmt = ",".join(["%r"] * len(self._channels))
        getter = operator.itemgetter(*self._channels)
        self._get: Callable[[dict[str, float]], Any] = (
            getter if len(self._channels) > 1 else (lambda values: (getter(values),))
        )
        self._has_device_time = has_device_time
        self.start = start_mono
        self._last_wall = -1.0
        self._last_text = ""

    def format(self, frames: Sequence[Frame | FrameBatch]) -> str:
        fmt, get, start = self._fmt, self._get, self.start
        lines: list[str] = []
        append = lines.append
        for frame in frames:
            if isinstance(frame, FrameBatch):
                if frame.names == self._channels:
                    append(self._format_batch(frame))
                else:
                    append(self.format(frame.frames()))
                continue
            if frame.wall != self._last_wall:  # the frames of one read share it: format once
                self._last_wall = frame.wall
                self._last_text = utc_ms(frame.wall)
            try:
                body = fmt % get(frame.values)
            except KeyError:  # a channel missing from this frame: its cell stays empty
                values = frame.values
                body = ",".join("" if (v := values.get(c)) is None else repr(v) for c in self._channels)
            if self._has_device_time:
                device = "" if frame.device_time is None else repr(frame.device_time)
                append(f"{self._last_text},{frame.mono - start:.6f},{device},{body}\n")
            else:
                append(f"{self._last_text},{frame.mono - start:.6f},{body}\n")
        return "".join(lines)

    def _format_batch(self, batch: FrameBatch) -> str:
        if batch.wall != self._last_wall:
            self._last_wall = batch.wall
            self._last_text = utc_ms(batch.wall)
        if batch.text is not None:
            text = self._from_text(batch, batch.text)
            if text is not None:
                return text
        rows = len(batch)
        width = batch.width
        device = self._has_device_time
        devices = batch.device_times
        lead = 1 + int(device and devices is not None)  # t_s, and the device time when there is one
        cells: list[float] = [0.0] * (rows * (lead + width))
        step = lead + width
        start = self.start
        cells[0::step] = list(map(sub, batch.monos, repeat(start)))
        if lead == 2 and devices is not None:
            cells[1::step] = devices
        values = batch.values
        for index in range(width):
            cells[lead + index :: step] = values[index::width]
        device_cell = ("%r," if lead == 2 else ",") if device else ""
        # The time text has no '%' (digits, '-', ':', '.', ' '): safe inside the format.
        row = f"{self._last_text},%.6f,{device_cell}{self._fmt}\n"
        return (row * rows) % tuple(cells)

    def _from_text(self, batch: FrameBatch, text: DeviceText) -> str | None:
        """The rows of `batch` with its cells as the device sent them, or None when some recorded column
        is not all plain decimals (one point each) or all plain integers (written with `.0` after them,
        so the column reads as floats as it does from repr). Per column, not per cell, in C-level
        passes: which fields have a point is read off the read's shape, integer columns get `.0` by
        one `map` each, and the rows are joined once (`_joined_rows`)."""
        rows = len(batch)
        plain = _plain_data(text)
        if plain is None:
            return None
        width, time_index = text.width, text.time_index
        fields = plain.decode("ascii").split(text.delimiter.decode("ascii"))
        if len(fields) != rows * width:
            return None
        order: list[int | None] = [f for f in range(width) if f != time_index]
        if self._has_device_time:  # its cell: the device's time field, or empty when the port has none
            order.insert(0, time_index)
        points = _points_by_shape(plain, text.delimiter, width, rows)
        for field in order:
            if field is None:
                continue  # the empty device-time cell
            column = fields[field::width]
            if points is not None:
                decimal = points[field]
            else:  # the rows differ in shape: column by column, a column of both kinds is refused
                count = "".join(column).count(".")
                if count not in (0, rows):
                    return None  # a column of both kinds: written from the floats
                decimal = count == rows
            if not decimal:
                fields[field::width] = list(map(add, column, repeat(".0")))
        if order != list(range(width)):  # the device time moved first, left out or an empty cell added
            cells: list[str] = [""] * (rows * len(order))
            for place, field in enumerate(order):
                if field is not None:
                    cells[place :: len(order)] = fields[field::width]
            fields = cells
        ts = list(map(sub, batch.monos, repeat(self.start)))
        return _joined_rows(fields, len(order), self._last_text, ts)


def _plain_data(text: DeviceText) -> bytes | None:
    """The fields of `text` with the blanks taken off, when every one is a plain number; else None."""
    delimiter = text.delimiter
    data = text.data.translate(None, _BLANKS.translate(None, delimiter))  # a blank may be the delimiter
    if data.translate(None, _PLAIN + delimiter):
        return None  # an exponent, nan, inf, a `+` or a `_` somewhere
    return data


def _points_by_shape(plain: bytes, delimiter: bytes, width: int, rows: int) -> list[bool] | None:
    """Whether each field of a row has a point, when every row has them where the first row has (one
    C-level pass: the read without its digits and signs, each field's point or nothing between the
    delimiters, is compared with the first row's shape repeated); None when some row differs (or the
    delimiter could be part of a number)."""
    if len(delimiter) != 1 or delimiter in _PLAIN:
        return None
    points = [b"." in field for field in plain.split(delimiter, width)[:width]]
    row = delimiter.join([b"." if point else b"" for point in points])
    if plain.translate(None, _DIGITS_SIGN) != delimiter.join([row] * rows):
        return None
    return points


def _joined_rows(cells: list[str], per_row: int, time_text: str, ts: list[float]) -> str:
    """CSV text of `cells` (`per_row` a row, rows after rows), each row led by `time_text` and its
    `t_s` (`ts[r]`, as `%.6f`). One `%` and one join, no pass over the text after them: a row's last
    cell, the newline and the next row's time cells are one item, made by the `%` (the time text has
    no '%' or NUL)."""
    rows = len(ts)
    lasts = cells[per_row - 1 :: per_row]
    bridges: list[object] = [None] * (2 * rows - 2)
    bridges[0::2] = lasts[:-1]
    bridges[1::2] = ts[1:]
    joins = (f"%s\n{time_text},%.6f\0" * (rows - 1)) % tuple(bridges)
    cells[per_row - 1 : -1 : per_row] = joins.split("\0")[:-1]
    cells.insert(0, f"{time_text},{ts[0]:.6f}")
    return ",".join(cells) + "\n"


def header_line(columns: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(columns)
    return out.getvalue()


def member(text: str, level: int) -> bytes:
    """One complete gzip member holding `text` (UTF-8)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(text.encode("utf-8")) + compressor.flush()


class Member:
    """A gzip member built as rows come: `add(text)` compresses them at once (what waits for the
    write is compressed bytes, not frames or text), `finish()` ends the member and returns all of it.
    The same bytes as `member` of the texts joined, in any split."""

    __slots__ = ("_chunks", "_compressor", "_level", "nbytes", "rows")

    def __init__(self, level: int) -> None:
        self._level = level
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._chunks: list[bytes] = []
        self.nbytes = 0  # compressed bytes held so far (deflate's own window aside)
        self.rows = 0

    def add(self, text: str, rows: int) -> None:
        data = self._compressor.compress(text.encode("utf-8"))
        if data:
            self._chunks.append(data)
            self.nbytes += len(data)
        self.rows += rows

    def finish(self) -> bytes:
        """The whole member; the object starts a new one."""
        self._chunks.append(self._compressor.flush())
        data = b"".join(self._chunks)
        self._compressor = zlib.compressobj(self._level, zlib.DEFLATED, 31)
        self._chunks = []
        self.nbytes = 0
        self.rows = 0
        return data


def scan(path: Path) -> tuple[int, int]:
    """(bytes of complete members from the start, CSV lines in them): what survives of a segment cut
    short. Reads in blocks: a 64 MB segment costs one streaming decompression, not one per member."""
    good = lines = pending_lines = 0
    with path.open("rb") as handle:
        offset = 0
        chunk = handle.read(READ_BLOCK)
        decompressor = zlib.decompressobj(31)
        while chunk:
            try:
                pending_lines += decompressor.decompress(chunk).count(b"\n")
            except zlib.error:
                break  # garbage where a member should be: keep what came before
            if decompressor.eof:
                rest = decompressor.unused_data
                good = offset + len(chunk) - len(rest)
                lines += pending_lines
                pending_lines = 0
                decompressor = zlib.decompressobj(31)
                offset = good
                chunk = rest or handle.read(READ_BLOCK)
            else:
                offset += len(chunk)
                chunk = handle.read(READ_BLOCK)
    return good, lines


def iter_rows(path: Path) -> Iterator[list[str]]:
    """Every CSV row of a finished segment, the header first (tests, export checks)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        yield from csv.reader(handle)
