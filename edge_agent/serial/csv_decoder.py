"""The CSV line decoder (sans-I/O): delimited numbers, columns from the config or the device's header
line, with a batch path that parses a read's plain rows in one C-level pass (see `CsvDecoder`)."""

from __future__ import annotations

from itertools import repeat

from edge_agent.config import SerialPort
from edge_agent.frames import DeviceText, FrameBatch
from edge_agent.serial.clock import SourceClock
from edge_agent.serial.line_decoder import Decoded, LineDecoder, Row, after_last_line
from edge_agent.serial.stats import BEFORE_HEADER, NOT_NUMERIC, WRONG_COLUMNS


class CsvDecoder(LineDecoder):
    """Delimited numbers. Columns from the config, else the device's header line: the first line of
    nothing but non-numbers. Rows before it (the agent joined a stream mid-way) are skipped, counted
    `before_header`: a row is never taken for the header (its numbers would become channel names).

    In header mode a line of nothing but non-numbers right after a reset (device rebooted and printed
    its header again) replaces the header. An exact repeat of the header (the configured columns, or
    the one read) is counted as a header, not an error, in either mode.

    A device can also restart with other columns without the link dropping (no reset): in header mode
    a line of header shape of another width is counted as a header and kept as the candidate, and the
    next data line, if it has the candidate's width and no frame of the old width came in between,
    makes it the header (and is decoded by it). So rows of the new width are not all skipped as
    `wrong_columns` until a reconnect, and a stray line of text (a device's message, a boot banner)
    followed by rows of the old width changes nothing. Only lines of another width are looked at:
    the per-line cost is on the `wrong_columns` path alone. A change of columns, either way, counts
    `header_changes` and calls `on_columns(old, new)` (the reader logs it).
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
        # A header of another width seen in the stream, and the frame count when it came (see above).
        self._candidate: list[str] | None = None
        self._candidate_frames = 0
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
        times = self.clock.stamp_chunk(mono, len(data), lines, after_last_line(data), device_times)
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

    def _change_columns(self, names: list[str]) -> None:
        """The device's header line from now on: counted, and told when it changes the columns."""
        old = self._columns
        self._set_columns(names)
        self._candidate = None
        if old and old != self._columns:
            self.stats.header_changes += 1
            if self.on_columns is not None:
                self.on_columns(old, self._columns)

    def reset(self) -> None:
        super().reset()
        self._expect_header = self._header_mode
        self._candidate = None

    def _decode(self, line: str) -> Row | None:
        parts = line.split(self._delimiter)
        if self._width == 0 or self._expect_header:
            self._expect_header = False
            if _looks_like_header(parts):
                self._change_columns(parts)
                self.stats.headers += 1
                return None
            if self._width == 0:
                self.stats.skip(BEFORE_HEADER)
                return None
        if len(parts) != self._width:
            if self._header_mode:
                return self._other_width(line, parts)
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

    def _other_width(self, line: str, parts: list[str]) -> Row | None:
        """A line of another width than the header's, in header mode: a new header of the device (the
        candidate), the first data line of the candidate's width (which adopts it), or a skipped row."""
        stats = self.stats
        if _looks_like_header(parts):
            self._candidate = parts
            self._candidate_frames = stats.frames
            stats.headers += 1
            return None
        candidate = self._candidate
        if candidate is not None and len(parts) == len(candidate) and stats.frames == self._candidate_frames:
            self._change_columns(candidate)
            return self._decode(line)  # now of the header's width
        self._candidate = None  # a row of neither width: the candidate was no header
        stats.skip(WRONG_COLUMNS)
        return None


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
