"""Sans-I/O line decoders: `feed(bytes, mono, wall) -> list[Frame | StepMarker]`.

Each decoder owns a LineSplitter (bounded partial line), a MarkerMatcher (step markers) and a
DecodeStats, and uses its source's SourceClock. A line is, in order: too long, not UTF-8, blank, a step
marker, a `#` comment, or a data line for the format; a data line that does not decode is skipped and
counted by reason, never raised. `mono` is the host's monotonic time of the read; each frame's `mono` is
its time on the source's timeline (the device's clock, or its line's share of the read's arrival time:
see `edge_agent.serial.clock`), each marker's the timeline's now when its line arrived. `wall` is the
host's wall time of the read, for humans.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import repeat
from typing import Any

from edge_agent.config import SerialPort
from edge_agent.frames import DeviceText, Frame, FrameBatch, StepMarker
from edge_agent.serial.clock import SourceClock, chunk_tails
from edge_agent.serial.lines import LineSplitter
from edge_agent.serial.markers import MarkerMatcher
from edge_agent.serial.stats import (
    BAD_JSON,
    BAD_KV,
    BAD_MARKER,
    BEFORE_HEADER,
    EMPTY,
    NOT_NUMERIC,
    NOT_UTF8,
    WRONG_COLUMNS,
    DecodeStats,
)

Decoded = Frame | StepMarker
Row = tuple[dict[str, float], float | None]  # channel values, device time

# Channel names a decoder shares between frames. A JSON or key=value line makes a new string for every
# key; a frame that keeps it pays ~55 bytes a channel more (a frame of 270 fields 28 kB instead of 13 kB)
# wherever frames wait (the recorder's queue). A device that invents names cannot grow the memo past this.
NAME_MEMO_LIMIT = 4096


class LineDecoder:
    """The shared line pipeline; subclasses decode one data line in `_decode`. `feed` gives frames one
    by one; `feed_packed` may give the frames of a read as one `FrameBatch` (the CSV fast path)."""

    def __init__(self, port: SerialPort, clock: SourceClock | None = None) -> None:
        self.source = port.name
        self.stats = DecodeStats()
        self.splitter = LineSplitter(port.max_line_bytes, self.stats)
        self.clock = clock if clock is not None else SourceClock.for_port(port)
        self._markers = MarkerMatcher(port.name, port.marker_regex)
        self._device_time = port.device_time
        self._names: dict[str, str] = {}

    def _name_memo(self) -> Callable[[str, str], str]:
        """`memo(name, name)`: the decoder's one string object for a channel name (new names are kept
        while the memo has room; past NAME_MEMO_LIMIT a new name is used as it is)."""
        names = self._names
        return names.setdefault if len(names) < NAME_MEMO_LIMIT else names.get

    def feed(self, data: bytes, mono: float, wall: float) -> list[Decoded]:
        lines = self.splitter.feed(data)
        if not lines:
            self.clock.read_without_lines(mono)
            return []
        return self._decode_lines(lines, self._tails(data, lines), len(data), mono, wall)

    def feed_packed(self, data: bytes, mono: float, wall: float) -> list[Decoded | FrameBatch]:
        return list(self.feed(data, mono, wall))

    @staticmethod
    def _tails(data: bytes, lines: list[bytes]) -> list[int]:
        return chunk_tails(lines, _after_last_line(data))

    def _decode_lines(
        self, lines: list[bytes], tails: list[int], chunk_len: int, mono: float, wall: float
    ) -> list[Decoded]:
        out: list[Decoded] = []
        stats = self.stats
        markers = self._markers
        decode = self._decode
        source = self.source
        clock = self.clock
        stamp = clock.stamp
        hosts = clock.spread(mono, chunk_len, tails)
        for raw, host in zip(lines, hosts, strict=True):
            try:
                line = raw.decode()
            except UnicodeDecodeError:
                stats.skip(NOT_UTF8)
                continue
            line = line.strip()
            if not line:
                stats.skip(EMPTY)
                continue
            if markers.could_match(line):
                marker = markers.match(line, clock.mark(host), wall)
                if marker is not None:
                    if isinstance(marker, StepMarker):
                        stats.markers += 1
                        out.append(marker)
                    else:
                        stats.skip(BAD_MARKER)
                    continue
            if line[0] == "#":
                stats.comments += 1
                continue
            row = decode(line)
            if row is not None:
                stats.frames += 1
                values, device_time = row
                out.append(Frame(source, stamp(host, device_time), wall, values, device_time))
        return out

    def reset(self) -> None:
        """The link dropped: the unterminated line is lost (counted `partial`)."""
        self.splitter.reset()

    @property
    def waiting_for_header(self) -> bool:
        """Rows are skipped (`before_header`) until the device's header line arrives."""
        return False

    def _decode(self, line: str) -> Row | None:
        raise NotImplementedError


class CsvDecoder(LineDecoder):
    """Delimited numbers. Columns from the config, else the device's header line: the first line of
    nothing but non-numbers. Rows before it (the agent joined a stream mid-way) are skipped, counted
    `before_header`: a row is never taken for the header (its numbers would become channel names).

    In header mode a line of nothing but non-numbers right after a reset (device rebooted and printed
    its header again) replaces the header. An exact repeat of the header (the configured columns, or
    the one read) is counted as a header, not an error, in either mode.
    """

    def __init__(self, port: SerialPort, clock: SourceClock | None = None) -> None:
        super().__init__(port, clock)
        self._delimiter = port.delimiter
        self._delimiter_bytes = port.delimiter.encode()
        # Every byte but the delimiter and the line end (a one-byte delimiter): what `translate`
        # deletes to leave a read's shape.
        self._shape_delete = (
            bytes(b for b in range(256) if b not in (self._delimiter_bytes[0], 0x0A))
            if len(self._delimiter_bytes) == 1
            else None
        )
        # The batch path skips the marker check, so it is used only when no data row can start like
        # a marker: rows start with a number (digit, sign, '.', nan, inf) or a blank.
        prefix = self._markers.prefix
        self.batch_enabled = bool(prefix) and prefix[0] not in _NUMBER_STARTS + port.delimiter
        self._header_mode = not port.columns
        self._expect_header = False
        self._columns: tuple[str, ...] = ()
        self._width = 0
        self._time_index: int | None = None
        self._value_names: tuple[str, ...] = ()
        if port.columns:
            self._set_columns(port.columns)

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    @property
    def waiting_for_header(self) -> bool:
        return self._width == 0

    def feed(self, data: bytes, mono: float, wall: float) -> list[Decoded]:
        out: list[Decoded] = []
        for item in self.feed_packed(data, mono, wall):
            if isinstance(item, FrameBatch):
                out.extend(item.frames())
            else:
                out.append(item)
        return out

    def feed_packed(self, data: bytes, mono: float, wall: float) -> list[Decoded | FrameBatch]:
        lines = self.splitter.feed(data)
        if not lines:
            self.clock.read_without_lines(mono)
            return []
        # No header known yet (width 0): the line-by-line path, which skips and counts rows until it.
        if self.batch_enabled and self._width > int(self._time_index is not None) and not self._expect_header:
            batch = self._decode_batch(lines, data, mono, wall)
            if batch is not None:
                return [batch]
        return list(self._decode_lines(lines, self._tails(data, lines), len(data), mono, wall))

    def _decode_batch(self, lines: list[bytes], data: bytes, mono: float, wall: float) -> FrameBatch | None:
        """Every line of a read parsed in one C-level pass when all are plain data rows (the common
        case at speed), packed into one FrameBatch; else None and the per-line path decides, so a result
        never depends on how lines were batched. float() of bytes accepts exactly what float() of their
        ASCII text accepts, strips the same blanks (a `\r` too), and rejects non-ASCII, markers,
        comments and headers.
        """
        delimiter = self._delimiter_bytes
        width = self._width
        rows = b"\n".join(lines)
        if not self._all_rows_of_width(rows, lines, delimiter, width):
            return None  # some line has another width: a marker, a comment, garbage
        joined = rows.replace(b"\n", delimiter)
        try:
            numbers = list(map(float, joined.split(delimiter)))
        except ValueError:
            return None
        time_index = self._time_index
        device_times: list[float] | None = None
        if time_index is not None:
            device_times = numbers[time_index::width]
            del numbers[time_index::width]
        times = self.clock.stamp_chunk(mono, len(data), lines, _after_last_line(data), device_times)
        self.stats.frames += len(lines)
        text = DeviceText(rows, delimiter, width, time_index)  # the recorder writes it as it came
        return FrameBatch(self.source, wall, self._value_names, times, numbers, device_times, text)

    def _all_rows_of_width(self, rows: bytes, lines: list[bytes], delimiter: bytes, width: int) -> bool:
        """Every line has exactly `width - 1` delimiters (`rows`: the lines joined by newlines). A
        one-byte delimiter is checked in one C-level pass over the read (its delimiters and line ends
        alone, compared with the shape every row must have); a longer one line by line."""
        keep_only = self._shape_delete
        if keep_only is None:
            return list(map(bytes.count, lines, repeat(delimiter))).count(width - 1) == len(lines)
        shape = rows.translate(None, keep_only)
        row = delimiter * (width - 1) + b"\n"
        return len(shape) + 1 == len(row) * len(lines) and shape == (row * len(lines))[:-1]

    def _set_columns(self, names: list[str]) -> None:
        self._columns = tuple(name.strip() for name in names)
        self._width = len(self._columns)
        self._time_index = (
            self._columns.index(self._device_time) if self._device_time in self._columns else None
        )
        self._value_names = tuple(n for i, n in enumerate(self._columns) if i != self._time_index)

    def reset(self) -> None:
        super().reset()
        self._expect_header = self._header_mode

    def _decode(self, line: str) -> Row | None:
        parts = line.split(self._delimiter)
        if self._width == 0 or self._expect_header:
            self._expect_header = False
            if _looks_like_header(parts):
                self._set_columns(parts)
                self.stats.headers += 1
                return None
            if self._width == 0:
                self.stats.skip(BEFORE_HEADER)
                return None
        if len(parts) != self._width:
            self.stats.skip(WRONG_COLUMNS)
            return None
        try:
            numbers = list(map(float, parts))
        except ValueError:
            # The header line again (a device prints it at every reset), also when the columns come
            # from the config: a header, not a decode error.
            if tuple(p.strip() for p in parts) == self._columns:
                self.stats.headers += 1
            else:
                self.stats.skip(NOT_NUMERIC)
            return None
        device_time = None if self._time_index is None else numbers.pop(self._time_index)
        # Lengths already match (checked above); strict=True would cost ~15 % of this line's time.
        return dict(zip(self._value_names, numbers, strict=False)), device_time


def _after_last_line(data: bytes) -> int:
    """Bytes of a read after its last newline: the start of the next line (or an over-long rest)."""
    return len(data) - 1 - data.rfind(b"\n")


_NUMBER_STARTS = "0123456789+-._ \t\r\x0b\x0cnNiI"


def _looks_like_header(parts: list[str]) -> bool:
    for part in parts:
        if not part.strip():
            return False
        try:
            float(part)
        except ValueError:
            continue
        return False
    return True


def _number(value: Any) -> float | None:
    """JSON value -> float: numbers, numeric strings; null is a missing sample (NaN); else None."""
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            return None
    if value is None:
        return math.nan
    return None  # bools, lists, objects


class JsonlDecoder(LineDecoder):
    """One JSON object per line. With `columns`, exactly those fields (each must be numeric); without,
    every number-valued field is a channel and other JSON types (strings, bools) are ignored."""

    def __init__(self, port: SerialPort, clock: SourceClock | None = None) -> None:
        super().__init__(port, clock)
        self._columns = tuple(c for c in port.columns if c != port.device_time)

    def _decode(self, line: str) -> Row | None:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            self.stats.skip(BAD_JSON)
            return None
        if type(obj) is not dict:
            self.stats.skip(BAD_JSON)
            return None
        device_time = None
        if self._device_time is not None:
            raw_time = obj.pop(self._device_time, None)
            if raw_time is not None:
                device_time = _number(raw_time)
                if device_time is None:
                    self.stats.skip(NOT_NUMERIC)
                    return None
        values: dict[str, float] = {}
        if self._columns:
            for name in self._columns:
                if name not in obj:
                    self.stats.skip(WRONG_COLUMNS)
                    return None
                value = _number(obj[name])
                if value is None:
                    self.stats.skip(NOT_NUMERIC)
                    return None
                values[name] = value
        else:
            shared = self._name_memo()
            for name, raw in obj.items():
                kind = type(raw)
                if kind is float or kind is int:
                    values[shared(name, name)] = float(raw)
            if not values:
                self.stats.skip(NOT_NUMERIC)
                return None
        return values, device_time


class KvDecoder(LineDecoder):
    """`name=value name2=value2` separated by blanks (a trailing `,`/`;` on a pair is tolerated).
    Every value must be a number; with `columns`, only those names are kept and all must be present."""

    def __init__(self, port: SerialPort, clock: SourceClock | None = None) -> None:
        super().__init__(port, clock)
        self._columns = tuple(c for c in port.columns if c != port.device_time)

    def _decode(self, line: str) -> Row | None:
        values: dict[str, float] = {}
        shared = self._name_memo()
        for token in line.split():
            name, sep, text = token.rstrip(",;").partition("=")
            if not sep or not name:
                self.stats.skip(BAD_KV)
                return None
            try:
                values[shared(name, name)] = float(text)
            except ValueError:
                self.stats.skip(NOT_NUMERIC)
                return None
        device_time = None
        if self._device_time is not None:
            device_time = values.pop(self._device_time, None)
        if self._columns:
            try:
                values = {name: values[name] for name in self._columns}
            except KeyError:
                self.stats.skip(WRONG_COLUMNS)
                return None
        elif not values:
            self.stats.skip(NOT_NUMERIC)
            return None
        return values, device_time


_DECODERS: dict[str, type[LineDecoder]] = {"csv": CsvDecoder, "jsonl": JsonlDecoder, "kv": KvDecoder}


def make_decoder(port: SerialPort, clock: SourceClock | None = None) -> LineDecoder:
    """The port's decoder, stamping frames on `clock` (default: a clock of its own for the port)."""
    return _DECODERS[port.format](port, clock)
