"""Sans-I/O windower: frames of one source -> channel-first windows for the lens.

A window is `window_size` consecutive usable samples, one list per channel in the configured
order (`sensor_data` is channel-first: row-major data "classifies but produces garbage"). Windows
start every `step_size` samples: step < size overlaps, step > size leaves samples out.

A dropout (the serial link went down, or more than `max_gap` seconds between frames) empties the
window under construction: a window must never splice two stretches of signal together.

A window the lens could not take anyway is not built (`wanted`, asked as each window completes, says
so: edge_agent/lens/service.py asks the send queue): the samples still pass through, so the windows
that are built start and end where they would have, and their `seq` counts the ones skipped
(`stats.thinned`).

Per-frame work only: no logging, no clocks, no I/O. Frames of other sources are ignored.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import gt, sub
from typing import Literal

from edge_agent.frames import Frame, FrameBatch, LinkEvent, LinkState, SerialEvent

MissingPolicy = Literal["hold", "zero", "skip"]


@dataclass(slots=True, frozen=True)
class Window:
    """One lens input. `data[c][i]` is channel `channels[c]` at sample i (already scaled), held as
    arrays of doubles: a window waits in the send queue (20 of them at full speed, where the lens takes
    one a second), and as lists of floats they held 5 times the bytes."""

    source: str
    seq: int
    channels: tuple[str, ...]
    data: Sequence[Sequence[float]]
    start_wall: float
    end_wall: float
    start_mono: float
    end_mono: float  # host receive time of the last sample: the start of this window's latency


# Memory of a window as the allocator hands it out (16-byte size classes): the Window, its four times
# and its list of channels (~300 B), an array a channel (its 64 B header, malloc's, a list slot) and
# 8 B a value, rounded up. An upper bound (tests/lens/test_windower.py): what the send queue charges
# its byte budget (lens.queue_mb).
WINDOW_BYTES = 384
CHANNEL_LIST_BYTES = 112
VALUE_BYTES = 8


def window_bytes(window: Window) -> int:
    samples = len(window.data[0]) if window.data else 0
    return WINDOW_BYTES + len(window.data) * (CHANNEL_LIST_BYTES + VALUE_BYTES * samples)


@dataclass(slots=True, frozen=True)
class Scale:
    mean: float
    std: float


@dataclass(slots=True)
class WindowerStats:
    frames: int = 0
    windows: int = 0
    held: int = 0  # values filled by repeating the channel's previous value
    zeroed: int = 0
    skipped: int = 0  # samples dropped because a value was missing (skip, or hold with nothing to hold)
    resets: int = 0  # partial windows discarded by a dropout
    thinned: int = 0  # windows complete but not built: the lens could not have taken them


class Windower:
    def __init__(
        self,
        source: str,
        channels: Sequence[str],
        window_size: int,
        step_size: int,
        *,
        missing: MissingPolicy = "hold",
        scaling: Mapping[str, Scale] | None = None,
        max_gap: float | None = None,
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        if not channels:
            raise ValueError("a windower needs at least one channel")
        if len(set(channels)) != len(channels):
            raise ValueError("channel names must be unique")
        if window_size < 1 or step_size < 1:
            raise ValueError("window_size and step_size must be at least 1")
        unknown = set(scaling or {}) - set(channels)
        if unknown:
            raise ValueError(f"scaling for channels that are not windowed: {', '.join(sorted(unknown))}")
        self.source = source
        self.channels = tuple(channels)
        self.window_size = window_size
        self.step_size = step_size
        self.missing = missing
        self.max_gap = max_gap if max_gap and max_gap > 0 else None
        scales = scaling or {}
        # (mean, 1/std) per channel; identity where unscaled, so the hot loop has no branch for it.
        self._mean = [scales[c].mean if c in scales else 0.0 for c in self.channels]
        self._inv_std = [1.0 / scales[c].std if c in scales else 1.0 for c in self.channels]
        self._last: list[float | None] = [None] * len(self.channels)
        self._row: list[float] = [0.0] * len(self.channels)
        self._buf: list[list[float]] = [[] for _ in self.channels]
        self._walls: list[float] = []
        self._monos: list[float] = []
        self._to_skip = 0  # samples still to pass over before the next window starts (step > size)
        self._last_mono: float | None = None
        self._seq = 0
        self._wanted = wanted  # None: every window is built
        self._last_end_mono: float | None = None
        self.period = 0.0  # host seconds between the last two windows' ends (0 until two were made)
        self.stats = WindowerStats()

    def push(self, frame: Frame) -> Window | None:
        """Add one frame; return the window it completes, if any (and it is wanted)."""
        if frame.source != self.source:
            return None
        self.stats.frames += 1
        if (
            self.max_gap is not None
            and self._last_mono is not None
            and frame.mono - self._last_mono > self.max_gap
        ):
            self._discard_partial()
        self._last_mono = frame.mono
        if not self._fill_row(frame.values):
            return None
        if self._to_skip:
            self._to_skip -= 1
            return None
        row = self._row
        for index, column in enumerate(self._buf):
            column.append(row[index])
        self._walls.append(frame.wall)
        self._monos.append(frame.mono)
        if len(self._walls) < self.window_size:
            return None
        return self._emit()

    def push_batch(self, batch: FrameBatch) -> list[Window]:
        """Add the frames of `batch`; the windows they complete. As `push` of each frame in turn, in
        C-level slices of the batch's columns when every windowed channel is there and finite and no
        frame is more than `max_gap` after the one before; frame by frame otherwise."""
        if batch.source != self.source:
            return []
        columns = self._columns_of(batch)
        if columns is None:
            out = []
            for frame in batch.frames():
                window = self.push(frame)
                if window is not None:
                    out.append(window)
            return out
        monos = batch.monos
        count = len(monos)
        self.stats.frames += count
        self._last_mono = monos[-1]
        self._last = [column[-1] for column in columns]
        windows: list[Window] = []
        row = min(self._to_skip, count)
        self._to_skip -= row
        while row < count:
            end = min(count, row + self.window_size - len(self._walls))
            for target, column in zip(self._buf, columns, strict=True):
                target.extend(column[row:end])
            self._walls.extend(repeat(batch.wall, end - row))
            self._monos.extend(monos[row:end])
            row = end
            if len(self._walls) >= self.window_size:
                window = self._emit()
                if window is not None:
                    windows.append(window)
                skipped = min(self._to_skip, count - row)
                self._to_skip -= skipped
                row += skipped
        return windows

    def _columns_of(self, batch: FrameBatch) -> list[list[float]] | None:
        """The windowed channels of `batch`, scaled as `_fill_row` scales them; None when some frame
        must go through `push` (a channel missing or not finite, a gap past `max_gap`)."""
        names = batch.names
        monos = batch.monos
        if self.max_gap is not None:
            last = self._last_mono
            if last is not None and monos[0] - last > self.max_gap:
                return None
            if any(map(gt, map(sub, monos[1:], monos), repeat(self.max_gap))):
                return None
        columns = []
        for index, name in enumerate(self.channels):
            if name not in names:
                return None
            column = batch.column(names.index(name))
            total = sum(column)
            if total - total != 0.0:
                return None  # NaN or ±inf: the missing-value policy, frame by frame
            mean, inv_std = self._mean[index], self._inv_std[index]
            if mean != 0.0 or inv_std != 1.0:
                column = [(value - mean) * inv_std for value in column]
            columns.append(column)
        return columns

    def feed(self, events: Iterable[SerialEvent]) -> list[Window]:
        """Push a batch of serial events (frames, link events; step markers are ignored)."""
        out: list[Window] = []
        for event in events:
            if isinstance(event, Frame):
                window = self.push(event)
                if window is not None:
                    out.append(window)
            elif isinstance(event, LinkEvent):
                self.link(event)
        return out

    def link(self, event: LinkEvent) -> None:
        if event.source == self.source and event.state is LinkState.DOWN:
            self.reset()

    def reset(self) -> None:
        """A dropout: forget the partial window and the values that `hold` would repeat."""
        self._discard_partial()
        self._last_mono = None
        self._last_end_mono = None  # the next window's period is not measured across the dropout

    def _discard_partial(self) -> None:
        if self._walls:
            self.stats.resets += 1
        for column in self._buf:
            column.clear()
        self._walls.clear()
        self._monos.clear()
        self._to_skip = 0
        self._last = [None] * len(self.channels)

    def _fill_row(self, values: Mapping[str, float]) -> bool:
        """Scaled values of this frame into `self._row`; False if the sample is to be dropped."""
        row = self._row
        last = self._last
        for index, name in enumerate(self.channels):
            value = values.get(name)
            if value is None or math.isnan(value) or math.isinf(value):
                if self.missing == "hold":
                    held = last[index]
                    if held is None:
                        self.stats.skipped += 1
                        return False
                    row[index] = held
                    self.stats.held += 1
                elif self.missing == "zero":
                    row[index] = 0.0
                    self.stats.zeroed += 1
                else:
                    self.stats.skipped += 1
                    return False
            else:
                row[index] = (value - self._mean[index]) * self._inv_std[index]
        for index, value in enumerate(row):
            last[index] = value
        return True

    def _emit(self) -> Window | None:
        step = self.step_size
        end_mono = self._monos[-1]
        if self._last_end_mono is not None and end_mono >= self._last_end_mono:
            self.period = end_mono - self._last_end_mono
        self._last_end_mono = end_mono
        window = None
        if self._wanted is None or self._wanted():
            window = Window(
                source=self.source,
                seq=self._seq,
                channels=self.channels,
                data=[array("d", column) for column in self._buf],
                start_wall=self._walls[0],
                end_wall=self._walls[-1],
                start_mono=self._monos[0],
                end_mono=end_mono,
            )
            self.stats.windows += 1
        else:
            self.stats.thinned += 1
        self._seq += 1
        if step >= self.window_size:
            for column in self._buf:
                column.clear()
            self._walls = []
            self._monos = []
            self._to_skip = step - self.window_size
        else:
            self._buf = [column[step:] for column in self._buf]
            self._walls = self._walls[step:]
            self._monos = self._monos[step:]
        return window
