"""Reading a recording (CSV or JSON lines) into column blocks, as the live decoder would decode it.

Every line goes through the live decoder's rules (`edge_agent.serial.decoders`): bad lines are counted
and skipped by the same reasons, markers become `StepMarker`s, a CSV header is read or taken from the
config. CSV data rows take a batch path (what the live decoder's own batch path does, on a whole block:
one C-level `float()` pass over the fields of every line with the right number of delimiters, parsed
into a numpy matrix); a line that does not fit it is handed to the live decoder alone, in file order
after the batch rows before it are counted, so the outcome of a line never depends on the path. A device
that restarts with other columns (csv_decoder: header change on the fly) is the live decoder's call too:
when it adopts a new header, the batch path goes on by the new columns from there. JSON lines and `kv`
go through the live decoder line by line.

Rows: a **data row** is any line that is not blank, not the CSV header (or a repeat of it), not a step
marker and not a `#` comment; they are numbered from 1 in file order, bad ones included (so row n is
what a spreadsheet or `pandas.read_csv(comment="#")` shows as the n-th row). Line numbers are 1-based
file lines. The last line counts even without a trailing newline (a file ends where a stream does not).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.backtest.timeline import DeviceTimeline, RateTimeline
from edge_agent.config import SerialPort
from edge_agent.frames import Frame, StepMarker
from edge_agent.serial.decoders import CsvDecoder, LineDecoder, make_decoder
from edge_agent.serial.stats import BAD_MARKER, EMPTY

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

CHUNK_BYTES = 1 << 22  # read size; a block holds the complete lines of one read
NOT_DATA_SKIPS = (EMPTY, BAD_MARKER)  # skipped lines that are not data rows


def parse_fields(text: bytes, delimiter: bytes, rows: int, width: int) -> Floats | None:
    """`rows` x `width` numbers from `rows` lines (joined by `\\n`) of `width` delimiter-separated fields,
    each parsed as the live decoder's `float()` parses it, or None when any field is not such a number.

    numpy's text reader converts a field with `PyOS_string_to_double`, the function `float()` itself
    ends in, and takes a field only when that consumed all of it: the same values, and it refuses only
    more than `float()` does (digit-group underscores, some white space), never less. It is used on
    plain ASCII text without `#`, `"` or `\r` (which it could read as a comment, a quote or a line
    end); anything it refuses is parsed again with `float()`.
    """
    if text.isascii() and b"\r" not in text and b"#" not in text and b'"' not in text:
        try:
            numbers = np.loadtxt(
                io.BytesIO(text), delimiter=delimiter.decode(), comments=None, dtype=np.float64,
                ndmin=2, quotechar=None, encoding="ascii",
            )  # fmt: skip
        except ValueError:
            numbers = None
        if numbers is not None and numbers.size == rows * width:
            return numbers.reshape(rows, width)
    try:
        parsed = np.fromiter(map(float, text.replace(b"\n", delimiter).split(delimiter)), np.float64)
    except ValueError:
        return None
    return parsed.reshape(rows, width) if parsed.size == rows * width else None


EX_USAGE = 2
EX_DATAERR = 65
EX_NOINPUT = 66


class RecordingError(Exception):
    """The recording cannot be read or does not fit the config; the message says which and why, and
    `exit_code` is the command's exit status for it (sysexits: 66 unreadable, 65 bad data, 2 usage)."""

    def __init__(self, message: str, exit_code: int = EX_DATAERR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class PlacedMarker:
    before: int  # index in its block of the frame it precedes (the block's length: after the last)
    marker: StepMarker
    line: int  # 1-based line in the file


@dataclass(slots=True)
class Block:
    """The frames of one read of the file, as columns."""

    t: Floats  # timeline seconds (0 at the first row)
    rows: Ints  # 1-based data row of each frame
    device: Floats  # the raw device time of each frame (NaN: none)
    values: dict[str, Floats]  # channel -> value per frame (NaN: missing)
    markers: list[PlacedMarker] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.t.size)


class RecordingReader:
    """Yields `Block`s of a recording. `channels`: the channels the rules read (others are not kept).
    `rate`: no time column, rows are `1/rate` seconds apart; else the port's `device_time` is the time
    column, in units of `scale` seconds."""

    def __init__(
        self,
        path: Path,
        port: SerialPort,
        channels: Sequence[str],
        *,
        scale: float | None = None,
        rate: float | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if (scale is None) == (rate is None):
            raise ValueError("give exactly one of scale (a time column) or rate")
        if scale is not None and port.device_time is None:
            raise ValueError("a time column scale needs the port's device_time")
        self.path = path
        self.port = port
        self.channels = tuple(channels)
        self.decoder: LineDecoder = make_decoder(port)
        self.device_timeline = DeviceTimeline(scale) if scale is not None else None
        self.rate_timeline = RateTimeline(rate) if rate is not None else None
        self.chunk_bytes = chunk_bytes
        self.lines = 0  # file lines read
        self.data_rows = 0
        self.rows_with_time = 0
        self._fast = isinstance(self.decoder, CsvDecoder) and self.decoder.batch_enabled
        self._columns: tuple[str, ...] = ()
        self._time_index: int | None = None
        self._value_index: dict[str, int] = {}
        if isinstance(self.decoder, CsvDecoder) and self.decoder.columns:  # columns from the config
            self._set_columns(self.decoder.columns)

    @property
    def stats(self) -> dict[str, int]:
        return self.decoder.stats.as_dict()

    def blocks(self) -> Iterator[Block]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot be read: {exc.strerror or exc}", EX_NOINPUT) from None
        with handle:
            rest = b""
            while True:
                try:
                    data = handle.read(self.chunk_bytes)
                except OSError as exc:
                    raise RecordingError(
                        f"{self.path}: cannot be read: {exc.strerror or exc}", EX_NOINPUT
                    ) from None
                if not data:
                    break
                lines = (rest + data).split(b"\n")
                rest = lines.pop()
                if lines:
                    yield self._block(lines)
            if rest:
                yield self._block([rest])

    # -- one read ---------------------------------------------------------------------------------

    def _block(self, lines: list[bytes]) -> Block:
        first_line = self.lines + 1
        self.lines += len(lines)
        decoded: list[tuple[int, StepMarker | list[float] | bool | None]] = []
        parsed: list[tuple[Ints, list[Floats]]] = []
        is_data = np.zeros(len(lines), dtype=bool)
        if not self._fast:
            decoded = [(index, self._decode_one(line)) for index, line in enumerate(lines)]
        start = 0
        while self._fast and start < len(lines):
            if self._columns:
                start = self._batch(lines, start, decoded, parsed, is_data)
            else:  # CSV header mode: line by line up to the device's header
                decoded.append((start, self._decode_one(lines[start])))
                start += 1
        odd_lines: list[int] = []
        odd_values: list[list[float]] = []
        markers: list[tuple[int, StepMarker]] = []
        for index, outcome in sorted(decoded, key=lambda pair: pair[0]):
            if isinstance(outcome, StepMarker):
                markers.append((index, outcome))
            elif outcome is not None:
                is_data[index] = True
                if isinstance(outcome, list):
                    odd_lines.append(index)
                    odd_values.append(outcome)
        return self._assemble(first_line, parsed, odd_lines, odd_values, markers, is_data)

    def _batch(
        self,
        lines: list[bytes],
        start: int,
        decoded: list[tuple[int, StepMarker | list[float] | bool | None]],
        parsed: list[tuple[Ints, list[Floats]]],
        is_data: npt.NDArray[np.bool_],
    ) -> int:
        """lines[start:] by the batch path, the lines it leaves to the live decoder decoded in file order
        with the batch rows before each counted first (the decoder's state is what it would be live). A
        line that changes the columns (the device's new header, adopted by the decoder: 'header change
        on the fly') ends the run there: returns the index to go on from, by the new columns."""
        matrix, ok, odd = self._parse_csv(lines, start)
        cols = self._channel_columns(matrix)  # by the columns they were parsed by
        counted = 0
        end = len(lines)
        for index in odd:
            counted = self._count_rows(ok, index, counted)
            columns = self._columns
            decoded.append((index, self._decode_one(lines[index])))
            if self._columns != columns:
                ok, cols, end = ok[:counted], [col[:counted] for col in cols], index + 1
                break
        self._count_rows(ok, end, counted)
        if ok.size:
            parsed.append((ok, cols))
            is_data[ok] = True
        return end

    def _count_rows(self, ok: Ints, before: int, counted: int) -> int:
        """The live decoder's counts of the batch rows (`ok`: their line indices) before line `before`,
        of which `counted` are counted already; returns how many are now."""
        upto = int(np.searchsorted(ok, before))
        self.decoder.stats.lines += upto - counted
        self.decoder.stats.frames += upto - counted
        return upto

    def _channel_columns(self, matrix: Floats) -> list[Floats]:
        """Rows parsed by the current columns as the block keeps them: a column per channel (NaN where
        the columns have none), then the device time."""
        nan = np.full(matrix.shape[0], math.nan)
        cols = [matrix[:, self._value_index[c]] if c in self._value_index else nan for c in self.channels]
        cols.append(matrix[:, self._time_index] if self._time_index is not None else nan)
        return cols

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        """The columns the batch path parses by, from the live decoder's (the config's or a header's).
        The recording's first columns must have the time column; a later header without it makes
        rows without a device time, as live."""
        first = not self._columns
        self._columns = columns
        device_time = self.port.device_time
        self._time_index = columns.index(device_time) if device_time in columns else None
        if first and device_time is not None and self._time_index is None:
            raise RecordingError(
                f"{self.path}: time column {device_time!r} is not among the recording's columns"
                f" ({', '.join(columns)})"
            )
        # The decoder names values by the columns other than the time column; a repeated name keeps
        # its last value (a dict), so the last position wins here too.
        self._value_index = {n: i for i, n in enumerate(columns) if i != self._time_index}

    def _parse_csv(self, lines: list[bytes], start: int) -> tuple[Floats, Ints, list[int]]:
        """The batch path over lines[start:]: (matrix of the rows it parsed, their line indices, the
        line indices it left to the live decoder, in order). Nothing is counted yet (`_batch` is)."""
        width = len(self._columns)
        delimiter = self.port.delimiter.encode()
        body = lines[start:]
        counts = np.fromiter(map(bytes.count, body, repeat(delimiter)), np.int64, len(body))
        lengths = np.fromiter(map(len, body), np.int64, len(body))
        candidate = (counts == width - 1) & (lengths <= self.port.max_line_bytes)
        indices = np.flatnonzero(candidate) + start
        odd = [int(i) + start for i in np.flatnonzero(~candidate)]
        pieces: list[tuple[Ints, Floats]] = []
        self._parse_range(lines, indices, delimiter, width, pieces, odd)
        odd.sort()  # the lines of another width, then those that did not parse
        if not pieces:
            return np.empty((0, width)), np.empty(0, np.int64), odd
        ok = np.concatenate([p[0] for p in pieces])
        matrix = np.concatenate([p[1] for p in pieces]) if len(pieces) > 1 else pieces[0][1]
        if len(pieces) > 1:  # halves parse in order, but keep line order explicit
            order = np.argsort(ok, kind="stable")
            ok, matrix = ok[order], matrix[order]
        return matrix, ok, odd

    def _parse_range(
        self,
        lines: list[bytes],
        indices: Ints,
        delimiter: bytes,
        width: int,
        pieces: list[tuple[Ints, Floats]],
        odd: list[int],
    ) -> None:
        """Every field of these lines parsed in one pass; lines that do not parse are isolated by halving
        the set until each is alone (it then goes to the live decoder)."""
        if indices.size == 0:
            return
        text = b"\n".join([lines[i] for i in indices]) if indices.size > 1 else lines[indices[0]]
        matrix = parse_fields(text, delimiter, indices.size, width)
        if matrix is not None:
            pieces.append((indices, matrix))
            return
        if indices.size == 1:
            odd.append(int(indices[0]))
            return
        half = indices.size // 2
        self._parse_range(lines, indices[:half], delimiter, width, pieces, odd)
        self._parse_range(lines, indices[half:], delimiter, width, pieces, odd)

    def _decode_one(self, line: bytes) -> StepMarker | list[float] | bool | None:
        """One line through the live decoder: a marker, the values of a frame (the rule channels, then
        the device time), True for a data row it skipped, None for a line that is no data row."""
        stats = self.decoder.stats
        before = (stats.comments, stats.headers, *(stats.skipped.get(r, 0) for r in NOT_DATA_SKIPS))
        items = self.decoder.feed(line + b"\n", 0.0, 0.0)
        if isinstance(self.decoder, CsvDecoder) and self.decoder.columns != self._columns:
            self._set_columns(self.decoder.columns)  # the device's header, the first or a new one
        for item in items:
            if isinstance(item, StepMarker):
                return item
            if isinstance(item, Frame):
                values = item.values
                device = math.nan if item.device_time is None else item.device_time
                return [*(values.get(c, math.nan) for c in self.channels), device]
        after = (stats.comments, stats.headers, *(stats.skipped.get(r, 0) for r in NOT_DATA_SKIPS))
        return None if after != before else True

    def _assemble(
        self,
        first_line: int,
        parsed: list[tuple[Ints, list[Floats]]],
        odd_lines: list[int],
        odd_values: list[list[float]],
        markers: list[tuple[int, StepMarker]],
        is_data: npt.NDArray[np.bool_],
    ) -> Block:
        """`parsed`: the batch path's runs, in file order (more than one when a header changed the
        columns), each its line indices and its channel columns (`_channel_columns`)."""
        channels = self.channels
        line_of: Ints
        cols: list[Floats]
        if len(parsed) == 1:
            line_of, cols = parsed[0]
        elif parsed:
            line_of = np.concatenate([run[0] for run in parsed])
            cols = [np.concatenate([run[1][i] for run in parsed]) for i in range(len(channels) + 1)]
        else:
            cols = [np.empty(0) for _ in range(len(channels) + 1)]
            line_of = np.empty(0, np.int64)
        if odd_lines:
            extra = np.array(odd_values, dtype=np.float64).reshape(len(odd_lines), len(channels) + 1)
            line_of = np.concatenate([line_of, np.array(odd_lines, dtype=np.int64)])
            order = np.argsort(line_of, kind="stable")
            line_of = line_of[order]
            cols = [np.concatenate([col, extra[:, i]])[order] for i, col in enumerate(cols)]
        columns = [np.ascontiguousarray(col, dtype=np.float64) for col in cols]
        row_of_line = np.cumsum(is_data, dtype=np.int64) + self.data_rows
        self.data_rows += int(is_data.sum())
        rows = row_of_line[line_of] if line_of.size else np.empty(0, np.int64)
        device = columns[-1]
        if self.device_timeline is not None:
            t = self.device_timeline.stamp(device)
            self.rows_with_time += int(np.isfinite(device).sum())
        else:
            assert self.rate_timeline is not None
            t = self.rate_timeline.stamp_rows(rows)
            self.rows_with_time += int(rows.size)
        placed = [
            PlacedMarker(int(np.searchsorted(line_of, index)), marker, first_line + index)
            for index, marker in markers
        ]
        values = dict(zip(channels, columns[:-1], strict=True))
        return Block(t=t, rows=rows, device=device, values=values, markers=placed)
