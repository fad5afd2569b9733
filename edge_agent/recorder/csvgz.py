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
instead (edge_agent/recorder/device_text.py: blanks taken off, `.0` after an integer): float() reads
that text as the very float the decoder made of it, and pandas too (tests/recorder/test_pure.py); it
costs no float formatting, the recorder's largest cost.
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
from operator import sub
from pathlib import Path
from typing import Any

from edge_agent.frames import Frame, FrameBatch
from edge_agent.recorder.device_text import rows_from_text
from edge_agent.recorder.model import OFFSET_COLUMN, TIME_COLUMN

READ_BLOCK = 1 << 20


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
        return self.format_bytes(frames).decode("utf-8")

    def format_bytes(self, frames: Sequence[Frame | FrameBatch]) -> bytes:
        """The CSV rows of `frames`, UTF-8 (what the segment's gzip member takes)."""
        out: list[bytes] = []
        lines: list[str] = []  # rows of single frames, encoded together
        for frame in frames:
            if isinstance(frame, FrameBatch):
                if lines:
                    out.append("".join(lines).encode("utf-8"))
                    lines = []
                if frame.names == self._channels:
                    out.append(self._format_batch(frame))
                else:
                    out.append(self.format_bytes(frame.frames()))
                continue
            lines.append(self._frame_row(frame))
        if lines:
            out.append("".join(lines).encode("utf-8"))
        return b"".join(out)

    def _frame_row(self, frame: Frame) -> str:
        if frame.wall != self._last_wall:  # the frames of one read share it: format once
            self._last_wall = frame.wall
            self._last_text = utc_ms(frame.wall)
        try:
            body = self._fmt % self._get(frame.values)
        except KeyError:  # a channel missing from this frame: its cell stays empty
            values = frame.values
            body = ",".join("" if (v := values.get(c)) is None else repr(v) for c in self._channels)
        if self._has_device_time:
            device = "" if frame.device_time is None else repr(frame.device_time)
            return f"{self._last_text},{frame.mono - self.start:.6f},{device},{body}\n"
        return f"{self._last_text},{frame.mono - self.start:.6f},{body}\n"

    def _format_batch(self, batch: FrameBatch) -> bytes:
        if batch.wall != self._last_wall:
            self._last_wall = batch.wall
            self._last_text = utc_ms(batch.wall)
        if batch.text is not None:
            text = rows_from_text(batch.text, batch.monos, self.start, self._last_text, self._has_device_time)
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
        return ((row * rows) % tuple(cells)).encode("utf-8")


def header_line(columns: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(columns)
    return out.getvalue()


# A gzip member (16 +) with an 8 KiB window and a small hash (memLevel 5): deflate's state is ~48 KiB
# instead of zlib's default ~256 KiB, held for as long as a segment's member is open. CSV rows repeat
# within a few lines, so the smaller window compresses them as well (bench rows at level 1: 2.67x vs
# 2.68x, 5 % more CPU on a small share of the writer's).
GZIP_WBITS = 16 + 13
GZIP_MEM_LEVEL = 5


def gzip_compressor(level: int) -> zlib._Compress:
    return zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS, GZIP_MEM_LEVEL)


def member(text: str, level: int) -> bytes:
    """One complete gzip member holding `text` (UTF-8)."""
    compressor = gzip_compressor(level)
    return compressor.compress(text.encode("utf-8")) + compressor.flush()


class Member:
    """A gzip member built as rows come: `add(text)` compresses them at once (what waits for the
    write is compressed bytes, not frames or text), `finish()` ends the member and returns its pieces.
    Joined, they are the same bytes as `member` of the texts joined, in any split."""

    __slots__ = ("_chunks", "_compressor", "_level", "nbytes", "rows")

    def __init__(self, level: int) -> None:
        self._level = level
        self._compressor = gzip_compressor(level)
        self._chunks: list[bytes] = []
        self.nbytes = 0  # compressed bytes held so far (deflate's own window aside)
        self.rows = 0

    def add(self, text: str | bytes, rows: int) -> None:
        data = self._compressor.compress(text if isinstance(text, bytes) else text.encode("utf-8"))
        if data:
            self._chunks.append(data)
            self.nbytes += len(data)
        self.rows += rows

    def finish(self) -> list[bytes]:
        """The whole member, in the pieces it was compressed in (written as they are: joining them
        would hold the member twice); the object starts a new one."""
        chunks = self._chunks
        chunks.append(self._compressor.flush())
        self._compressor = gzip_compressor(self._level)
        self._chunks = []
        self.nbytes = 0
        self.rows = 0
        return chunks


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
