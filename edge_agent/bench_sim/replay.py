"""Replays a recorded CSV (header + rows) with its own timing, at real speed or `speed` times faster.

Row i is due at `(time_i - time_0) / speed` scenario seconds. The time column is `t_ms` (ms),
`time_s` (s) or `timestamp` (ISO 8601, or epoch seconds, or epoch ms when above 1e11), found in the
header unless named; a named column ending in `_ms`/`_us` is in those units, otherwise seconds.
Lines starting with `#` (step markers, comments) pass through right after the row before them.
Rows whose time cannot be read are counted and skipped; a time that goes backwards is held at the
previous time (counted) so the replay never stalls or rushes. Lines are sent as they are in the file.

Sans-I/O: it reads from whatever iterable of byte lines `open_lines()` returns, so it never touches
a clock or a file itself; `loop` calls `open_lines()` again for each repetition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from edge_agent.bench_sim.outputs import Output, Write, WriteKind

KNOWN_TIME_COLUMNS = ("t_ms", "time_s", "timestamp")


class ReplayError(ValueError):
    """The file cannot be replayed (no header, no time column); the message says why."""


def time_unit(column: str) -> float | None:
    """File units per second of a numeric time column (1000 for ms), or None for `timestamp`.

    A divisor, not a factor: the replay subtracts in file units first and divides once, so 20 ms
    comes out as exactly 0.02 s (20 * 0.001 and 1.02 - 1.0 do not).
    """
    name = column.lower()
    if name == "timestamp":
        return None
    if name.endswith("_ms") or name == "ms":
        return 1000.0
    if name.endswith("_us") or name == "us":
        return 1_000_000.0
    return 1.0


def parse_time(text: str, unit: float | None) -> float:
    """A time field -> a number in file units (`unit` per second), or seconds for a `timestamp`
    (ISO 8601, epoch seconds, or epoch ms when above 1e11). ValueError when it is not a time."""
    text = text.strip()
    if unit is not None:
        return float(text)
    try:
        value = float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return value / 1000.0 if value > 1e11 else value


class ReplayPlayer:
    def __init__(
        self,
        open_lines: Callable[[], Iterable[bytes]],
        speed: float = 1.0,
        time_column: str | None = None,
        loop: bool = False,
        delimiter: str = ",",
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.loop = loop
        self._open = open_lines
        self._delimiter = delimiter.encode()
        self._lines: Iterator[bytes] = iter(open_lines())
        self.header = self._read_header()
        columns = [c.strip() for c in self.header.decode("utf-8", "replace").strip().split(delimiter)]
        self.time_column = self._pick_time_column(columns, time_column)
        self._time_index = columns.index(self.time_column)
        self._unit = time_unit(self.time_column)
        self._per_second = self._unit or 1.0
        self._first: float | None = None  # file time of the first row of this repetition
        self._last = 0.0  # file time of the last row read
        self._last_gap = 0.0
        self._offset = 0.0  # scenario time at which this repetition started
        self._due = 0.0  # scenario time of the last row read
        self._next: Write | None = Write(0.0, self.header, WriteKind.HEADER)
        self._done = False
        self._counts = {"rows": 0, "markers": 0, "malformed": 0, "time_backwards": 0, "repetitions": 1}

    def _read_header(self) -> bytes:
        for line in self._lines:
            if line.strip() and not line.startswith(b"#"):
                return line if line.endswith(b"\n") else line + b"\n"
        raise ReplayError("the file has no header line")

    @staticmethod
    def _pick_time_column(columns: list[str], wanted: str | None) -> str:
        if wanted is not None:
            if wanted not in columns:
                raise ReplayError(f"time column {wanted!r} is not in the header ({', '.join(columns)})")
            return wanted
        lowered = {c.lower(): c for c in columns}
        for name in KNOWN_TIME_COLUMNS:
            if name in lowered:
                return lowered[name]
        raise ReplayError(
            f"no time column in the header ({', '.join(columns)}): expected one of "
            f"{', '.join(KNOWN_TIME_COLUMNS)} or name it with --time-column"
        )

    def _read_next(self) -> Write | None:
        """The next line to send with its due time, or None at the end (after the last repetition)."""
        while True:
            line = next(self._lines, None)
            if line is None:
                if not self.loop or self._counts["rows"] == 0:
                    return None
                self._restart()
                continue
            if not line.endswith(b"\n"):
                line += b"\n"
            if line.startswith(b"#"):
                self._counts["markers"] += 1
                return Write(self._due, line, WriteKind.MARKER)
            if not line.strip() or line == self.header:
                continue
            fields = line.split(self._delimiter)
            try:
                t = parse_time(fields[self._time_index].decode(), self._unit)
            except (IndexError, ValueError, UnicodeDecodeError):
                self._counts["malformed"] += 1
                continue
            if self._first is None:
                self._first = t
            elif t < self._last:
                self._counts["time_backwards"] += 1
                t = self._last
            else:
                self._last_gap = t - self._last
            self._last = t
            self._counts["rows"] += 1
            self._due = self._offset + (t - self._first) / self._per_second / self.speed
            return Write(self._due, line, WriteKind.SAMPLE)

    def _restart(self) -> None:
        # The next repetition starts one sample interval after the last row, as if the file went on.
        first = self._first if self._first is not None else 0.0
        self._offset += (self._last - first + self._last_gap) / self._per_second / self.speed
        self._first = None
        self._counts["repetitions"] += 1
        lines = iter(self._open())
        for line in lines:  # skip up to and including the header
            if line.strip() and not line.startswith(b"#"):
                break
        self._lines = lines

    def next_due(self) -> float | None:
        if self._next is None and not self._done:
            self._next = self._read_next()
            self._done = self._next is None
        return None if self._next is None else self._next.t

    def advance(self, now: float) -> list[Output]:
        out: list[Output] = []
        while True:
            due = self.next_due()
            if due is None or due > now or self._next is None:
                return out
            out.append(self._next)
            self._next = None

    def close(self, now: float) -> list[Output]:
        return []

    def stats(self) -> dict[str, int]:
        return dict(self._counts)
