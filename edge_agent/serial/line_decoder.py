"""The shared line pipeline of the sans-I/O decoders: `feed(bytes, mono, wall) -> list[Frame | StepMarker]`.

Each decoder owns a LineSplitter (bounded partial line), a MarkerMatcher (step markers) and a
DecodeStats, and uses its source's SourceClock. A line is, in order: too long, not UTF-8, blank, a step
marker, a `#` comment, or a data line for the format; a data line that does not decode is skipped and
counted by reason, never raised. `mono` is the host's monotonic time of the read; each frame's `mono` is
its time on the source's timeline (the device's clock, or its line's share of the read's arrival time:
see `edge_agent.serial.clock`), each marker's the timeline's now when its line arrived. `wall` is the
host's wall time of the read, for humans. The formats: csv_decoder.py, decoders.py (jsonl, kv).
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.config import SerialPort
from edge_agent.frames import Frame, FrameBatch, StepMarker
from edge_agent.serial.clock import SourceClock, chunk_tails
from edge_agent.serial.lines import LineSplitter
from edge_agent.serial.markers import MarkerMatcher
from edge_agent.serial.stats import BAD_MARKER, EMPTY, NOT_UTF8, DecodeStats

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
        self._port_columns = tuple(port.columns)
        # Told (old, new) when the device's header changes the columns (csv in header mode).
        self.on_columns: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns lines are decoded by: the config's (none: every field of a line); csv in header
        mode, the device's header as it stands."""
        return self._port_columns

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
        return chunk_tails(lines, after_last_line(data))

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


def after_last_line(data: bytes) -> int:
    """Bytes of a read after its last newline: the start of the next line (or an over-long rest)."""
    return len(data) - 1 - data.rfind(b"\n")
