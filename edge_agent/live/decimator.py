"""The live page's decimating tap (sans-I/O): min/max of every channel per time bucket, at three spans.

The page plots a chosen span (1 min, 10 min or 1 h) about `BUCKETS` pixels wide. Sending it every frame
of a 3 Mbaud source would cost the agent JSON per frame and the browser a redraw of a million points;
instead the agent keeps, per channel, the lowest and highest value of each bucket (a vertical stroke per
pixel column, which is what a plot of the raw samples would show at that width) and sends only buckets.

Levels: bucket widths 0.1 s, 1 s and 6 s, `BUCKETS` (600) of each kept, so level L covers the span
`SPANS[L]` = 60 s, 600 s and 3,600 s. Bucket numbers are integers on the source's own timeline
(`Frame.mono`, edge_agent.serial.clock): k0 = floor(t * 10), k1 = k0 // 10, k2 = k1 // 6, so the
coarser buckets are exact unions of finer ones.

Cost per frame: one float comparison to see whether the current 0.1 s bucket ended, then per channel a
look-up and two comparisons (no allocation: the bucket's lo/hi are slots that take the frame's own
float objects). When a 0.1 s bucket ends (at most 10 times a second per source, whatever the
rate), it is written to its level's ring and folded into the next level's running bucket, which is
written in its turn when it ends. Skipped (empty) buckets cost nothing: every ring slot records which
bucket number it holds, and a slot holding another number reads as a gap.

Memory: fixed per channel (`CHANNEL_BYTES`), allocated when the channel is first seen, whatever the
rate; at most `MAX_CHANNELS` channels (a JSON-lines source can invent names; further ones are counted
in `channels_refused` and not drawn). Non-finite values (NaN, inf) are not drawn.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from operator import le

from edge_agent.frames import Frame, FrameBatch

BASE_PER_SECOND = 10  # level-0 buckets per second of the source timeline (0.1 s each)
RATIOS = (1, 10, 6)  # each level's bucket in buckets of the level below: 0.1 s, 1 s, 6 s
BUCKETS = 600  # buckets kept per level: about one per pixel column of the page's plot
LEVELS = len(RATIOS)
WIDTHS: tuple[float, ...] = tuple(
    math.prod(RATIOS[: i + 1]) / BASE_PER_SECOND for i in range(LEVELS)
)  # seconds per bucket
SPANS: tuple[float, ...] = tuple(w * BUCKETS for w in WIDTHS)  # 60 s, 600 s, 3,600 s
MAX_CHANNELS = 128
# Two doubles (lo, hi) per bucket per level, plus the slot-to-bucket-number tables shared by a source.
CHANNEL_BYTES = LEVELS * BUCKETS * 2 * 8
SOURCE_BYTES = LEVELS * BUCKETS * 8

_INF = math.inf
_NEG_INF = -math.inf
_NAN = math.nan


def level_for_span(seconds: float) -> int:
    """The finest level whose span covers `seconds` (the coarsest when none does)."""
    for level, span in enumerate(SPANS):
        if seconds <= span + 1e-9:
            return level
    return LEVELS - 1


class _Channel:
    """One channel's running buckets (`lo`/`hi`: the current level-0 bucket; `acc_*[L]`: the running
    bucket of level L >= 1 folded from level L-1's finished buckets) and its rings (lo, hi pairs)."""

    __slots__ = ("acc_hi", "acc_lo", "hi", "lo", "rings")

    def __init__(self) -> None:
        self.lo = _INF
        self.hi = -_INF
        self.acc_lo = [_INF] * LEVELS
        self.acc_hi = [-_INF] * LEVELS
        self.rings = [array("d", [_NAN]) * (2 * BUCKETS) for _ in range(LEVELS)]


class _Ignored:
    """Stands in for channels beyond MAX_CHANNELS: takes the per-frame writes, keeps nothing."""

    __slots__ = ("hi", "lo")

    def __init__(self) -> None:
        self.lo = -_INF  # nothing is below or above: the per-frame comparisons never write
        self.hi = _INF


class _Source:
    __slots__ = ("channels", "edge", "keys", "now_key", "started")

    def __init__(self) -> None:
        self.channels: dict[str, _Channel | _Ignored] = {}
        self.edge = -_INF  # end of the current level-0 bucket on the source timeline
        self.now_key = [0] * LEVELS  # the running bucket's number at each level
        self.keys = [array("q", [-1]) * BUCKETS for _ in range(LEVELS)]  # the bucket each slot holds
        self.started = False


@dataclass(frozen=True, slots=True)
class Buckets:
    """Buckets `first` .. `first + count - 1` of one level of one source: `lo[ch][i]`, `hi[ch][i]`
    (None for a bucket without a finite sample). The last one is the running (partial) bucket."""

    level: int
    first: int
    count: int
    lo: dict[str, list[float | None]]
    hi: dict[str, list[float | None]]

    def start(self, index: int) -> float:
        """Start of bucket `first + index` on the source timeline (seconds)."""
        return (self.first + index) * WIDTHS[self.level]


class Decimator:
    """Feed it every frame (`on_frame`); read buckets of any level (`buckets`)."""

    def __init__(self, max_channels: int = MAX_CHANNELS) -> None:
        self.max_channels = max_channels
        self._sources: dict[str, _Source] = {}
        self._ignored = _Ignored()
        self.channel_count = 0
        self.channels_refused = 0

    # -- the hot path -------------------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        source = self._sources.get(frame.source)
        if source is None:
            source = self._sources[frame.source] = _Source()
        t = frame.mono
        if t >= source.edge:
            self._roll(source, t)
        channels = source.channels
        for name, value in frame.values.items():
            try:
                channel = channels[name]
            except KeyError:
                channel = self._add_channel(source, name)
            # NaN compares false both ways and is never kept; ±inf is tested only when it would be.
            if value < channel.lo and value != _NEG_INF:
                channel.lo = value
            if value > channel.hi and value != _INF:
                channel.hi = value

    def on_batch(self, batch: FrameBatch) -> None:
        """The frames of `batch`, as `on_frame` of each in turn: per stretch of rows within one 0.1 s
        bucket, a C-level min and max of each channel's column (finite values, times in order; else
        frame by frame)."""
        monos, values, width = batch.monos, batch.values, batch.width
        total = sum(values)
        if total - total != 0.0 or not all(map(le, monos, monos[1:])):
            for frame in batch.frames():
                self.on_frame(frame)
            return
        source = self._sources.get(batch.source)
        if source is None:
            source = self._sources[batch.source] = _Source()
        targets: list[_Channel | _Ignored] | None = None
        count = len(monos)
        row = 0
        while row < count:
            if monos[row] >= source.edge:
                self._roll(source, monos[row])
            if targets is None:  # after the first roll, as on_frame meets a new channel
                channels = source.channels
                targets = [channels.get(name) or self._add_channel(source, name) for name in batch.names]
            end = bisect_left(monos, source.edge, row + 1, count)  # the rows before the next bucket
            for index, channel in enumerate(targets):
                column = values[row * width + index : end * width : width]
                # One sort gives both ends: it compares floats as C doubles (min and max each go
                # through the generic comparison) and takes a run of sorted or equal values in one
                # pass. Stable, so its first is min's (the first of equal lowest values); its last is
                # the last of equal highest ones, which differs from max's only as -0.0 from 0.0.
                ordered = sorted(column)
                low, high = ordered[0], ordered[-1]
                if high == 0.0:
                    high = max(column)
                if low < channel.lo:
                    channel.lo = low
                if high > channel.hi:
                    channel.hi = high
            row = end

    # -- bucket ends --------------------------------------------------------------------------------

    def _add_channel(self, source: _Source, name: str) -> _Channel | _Ignored:
        if self.channel_count >= self.max_channels:
            self.channels_refused += 1
            source.channels[name] = self._ignored
            return self._ignored
        self.channel_count += 1
        channel = source.channels[name] = _Channel()
        return channel

    def _roll(self, source: _Source, t: float) -> None:
        """The frame at `t` is past the running level-0 bucket: finish the buckets that ended (at each
        level, finest first, so that a finished bucket is folded into its parent before the parent
        itself may finish) and start the buckets that hold `t`."""
        k0 = math.floor(t * BASE_PER_SECOND)
        new_keys = [k0] * LEVELS
        for level in range(1, LEVELS):
            new_keys[level] = new_keys[level - 1] // RATIOS[level]
        if source.started:
            for level in range(LEVELS):
                old = source.now_key[level]
                if new_keys[level] == old:
                    break  # aligned levels: a coarser bucket cannot end while a finer one goes on
                self._finish(source, level, old)
        source.started = True
        source.now_key = new_keys
        source.edge = (k0 + 1) / BASE_PER_SECOND

    def _finish(self, source: _Source, level: int, key: int) -> None:
        slot = key % BUCKETS
        source.keys[level][slot] = key
        parent = level + 1
        for channel in source.channels.values():
            if type(channel) is not _Channel:
                continue
            if level == 0:
                lo, hi = channel.lo, channel.hi
                channel.lo, channel.hi = _INF, -_INF
            else:
                lo, hi = channel.acc_lo[level], channel.acc_hi[level]
                channel.acc_lo[level], channel.acc_hi[level] = _INF, -_INF
            ring = channel.rings[level]
            if lo <= hi:
                ring[2 * slot] = lo
                ring[2 * slot + 1] = hi
            else:
                ring[2 * slot] = ring[2 * slot + 1] = _NAN  # no finite sample in that bucket
            if parent < LEVELS and lo <= hi:
                if lo < channel.acc_lo[parent]:
                    channel.acc_lo[parent] = lo
                if hi > channel.acc_hi[parent]:
                    channel.acc_hi[parent] = hi

    # -- reading ------------------------------------------------------------------------------------

    def sources(self) -> list[str]:
        return list(self._sources)

    def channels(self, source: str) -> list[str]:
        found = self._sources.get(source)
        if found is None:
            return []
        return [name for name, ch in found.channels.items() if type(ch) is _Channel]

    def latest_key(self, source: str, level: int) -> int | None:
        """The running bucket's number at `level`, None before the source's first frame."""
        found = self._sources.get(source)
        return found.now_key[level] if found is not None and found.started else None

    def buckets(self, source: str, level: int, first: int | None = None) -> Buckets | None:
        """Buckets of `level` from `first` (default: the oldest kept) to the running one, clipped to
        the `BUCKETS` kept; None before the source's first frame."""
        found = self._sources.get(source)
        if found is None or not found.started:
            return None
        last = found.now_key[level]
        oldest = last - BUCKETS + 1
        start = oldest if first is None else min(max(first, oldest), last)
        count = last - start + 1
        keys = found.keys[level]
        lo: dict[str, list[float | None]] = {}
        hi: dict[str, list[float | None]] = {}
        for name, channel in found.channels.items():
            if type(channel) is not _Channel:
                continue
            ring = channel.rings[level]
            lows: list[float | None] = []
            highs: list[float | None] = []
            for key in range(start, last):
                slot = key % BUCKETS
                value = ring[2 * slot]
                if keys[slot] != key or value != value:
                    lows.append(None)
                    highs.append(None)
                else:
                    lows.append(value)
                    highs.append(ring[2 * slot + 1])
            run_lo, run_hi = self._running(channel, level)
            ok = run_lo <= run_hi
            lows.append(run_lo if ok else None)
            highs.append(run_hi if ok else None)
            lo[name], hi[name] = lows, highs
        return Buckets(level, start, count, lo, hi)

    @staticmethod
    def _running(channel: _Channel, level: int) -> tuple[float, float]:
        """The running bucket of `level`: its own accumulator with every finer running bucket."""
        lo, hi = channel.lo, channel.hi
        for finer in range(1, level + 1):
            lo = min(lo, channel.acc_lo[finer])
            hi = max(hi, channel.acc_hi[finer])
        return lo, hi

    def nbytes(self) -> int:
        """Bytes held in rings and slot tables (the bound: CHANNEL_BYTES per channel, SOURCE_BYTES per
        source; the small per-object overheads aside)."""
        total = 0
        for source in self._sources.values():
            total += sum(k.itemsize * len(k) for k in source.keys)
            for channel in source.channels.values():
                if type(channel) is _Channel:
                    total += sum(r.itemsize * len(r) for r in channel.rings)
        return total
