"""Per-channel value checks (sans-I/O): limits, rate of change, stuck value, baseline band.

Each check sees one channel of one source, one value at a time, and answers
`observe(value, mono, wall) -> bool | None`: True = the condition holds, False = clear, None = no
verdict yet (first sample of a rate, dt <= 0). When it answers True it also leaves `value` (the
measure at this sample), `excursion` (how far beyond the threshold, >= 0) and `threshold` (a constant
text, no per-sample allocation) on itself for the tracker to read; `onset_*` backdates the start of a
condition that began before it was detectable (stuck: the last change).

Extreme values (the contract with `Detector`, which maps NaN to "missing" and ±inf to ±MAX_FLOAT
before calling, so every value a check sees is finite):
- `value` and `excursion` are always finite: a measure or a distance beyond a threshold that
  overflows (a rate from -1e308 to 1e308, a reading of 1e308 against `max = -1e308`) is reported as
  the largest finite float with its sign (`clamp`); it is still past the threshold, so the verdict
  is the true one.
- limits: compares the value as is (a reading of ±MAX_FLOAT is past any finite bound).
- rate: the difference and the division may overflow; the rate is then ±MAX_FLOAT, past any
  `max_rate`. Subnormal values and differences are ordinary (tiny) numbers.
- stuck: a difference that overflows is a change (|inf| > epsilon); the measure is the value itself.
- baseline: see `BaselineCheck` and `edge_agent.detect.baseline` (a spread that overflows makes the
  band the whole line: nothing is outside it until those samples leave the window).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from itertools import chain
from operator import lt, sub, truediv

from edge_agent.detect.baseline import (
    MAD_TO_SIGMA,
    Band,
    BlockWindow,
    RobustStats,
    summarise,
    window_band,
)

MAX_FLOAT = sys.float_info.max


def clamp(x: float) -> float:
    """`x` if finite, else the largest finite float with its sign (callers never pass NaN)."""
    if x > MAX_FLOAT:
        return MAX_FLOAT
    if x < -MAX_FLOAT:
        return -MAX_FLOAT
    return x


def _num(x: float) -> str:
    return f"{x:.6g}"


class ValueCheck:
    __slots__ = ("excursion", "onset_mono", "onset_wall", "threshold", "value")

    kind: str = ""
    measure: str = "value"

    def __init__(self) -> None:
        self.value = 0.0
        self.excursion = 0.0
        self.threshold = ""
        self.onset_mono: float | None = None
        self.onset_wall: float | None = None

    def describe(self, channel: str) -> str:
        raise NotImplementedError

    def observe(self, value: float, mono: float, wall: float) -> bool | None:
        raise NotImplementedError

    def first_active(self, values: Sequence[float], monos: Sequence[float], walls: Sequence[float]) -> int:
        """`observe` of the samples in order (finite values; at least one) up to the first that is
        active: its index (its `value`, `excursion`, ... are then on the check), or len(values) when
        none is (every sample observed). The detector's batch path (edge_agent/detect/batch.py);
        subclasses answer the all-clear case in C-level passes where they can."""
        observe = self.observe
        for index, (value, mono, wall) in enumerate(zip(values, monos, walls, strict=True)):
            if observe(value, mono, wall):
                return index
        return len(values)


class LimitsCheck(ValueCheck):
    """Outside [min, max] (either bound optional; a value equal to a bound is inside)."""

    __slots__ = ("_above", "_below", "high", "low")
    kind = "limits"

    def __init__(self, low: float | None, high: float | None) -> None:
        super().__init__()
        if low is None and high is None:
            raise ValueError("a limits check needs min or max")
        self.low = -math.inf if low is None else low
        self.high = math.inf if high is None else high
        if not self.low < self.high:
            raise ValueError("min must be below max")
        self._above = f"max {_num(self.high)}"
        self._below = f"min {_num(self.low)}"

    def describe(self, channel: str) -> str:
        if self.low == -math.inf:
            return f"{channel} above {_num(self.high)}"
        if self.high == math.inf:
            return f"{channel} below {_num(self.low)}"
        return f"{channel} outside [{_num(self.low)}, {_num(self.high)}]"

    def observe(self, value: float, mono: float, wall: float) -> bool | None:
        if value > self.high:
            self.value = value
            self.excursion = clamp(value - self.high)
            self.threshold = self._above
            return True
        if value < self.low:
            self.value = value
            self.excursion = clamp(self.low - value)
            self.threshold = self._below
            return True
        return False

    def first_active(self, values: Sequence[float], monos: Sequence[float], walls: Sequence[float]) -> int:
        if min(values) >= self.low and max(values) <= self.high:
            return len(values)  # no state: every sample clear
        return ValueCheck.first_active(self, values, monos, walls)


class RateCheck(ValueCheck):
    """|dv/dt| between consecutive samples above `max_rate` (units per second, host monotonic time).

    Samples with the same receive time (lines read in one chunk) give no verdict and do not move the
    reference sample, so the next rate is taken over the longer, meaningful interval.
    """

    __slots__ = ("_prev_mono", "_prev_value", "max_rate")
    kind = "rate"
    measure = "rate (units/s)"

    def __init__(self, max_rate: float) -> None:
        super().__init__()
        if not (math.isfinite(max_rate) and max_rate > 0):
            raise ValueError("max_rate must be a finite number > 0")
        self.max_rate = max_rate
        self.threshold = f"max_rate {_num(max_rate)}/s"
        self._prev_value = 0.0
        self._prev_mono: float | None = None

    def describe(self, channel: str) -> str:
        return f"{channel} changing faster than {_num(self.max_rate)}/s"

    def observe(self, value: float, mono: float, wall: float) -> bool | None:
        prev_mono = self._prev_mono
        if prev_mono is None:
            self._prev_mono = mono
            self._prev_value = value
            return None
        dt = mono - prev_mono
        if dt <= 0.0:
            return None
        rate = (value - self._prev_value) / dt
        self._prev_mono = mono
        self._prev_value = value
        magnitude = abs(rate)
        if magnitude > self.max_rate:
            # A difference or a quotient that overflowed is +-inf here: report the largest finite rate.
            self.value = clamp(rate)
            self.excursion = clamp(magnitude - self.max_rate)
            return True
        return False

    def first_active(self, values: Sequence[float], monos: Sequence[float], walls: Sequence[float]) -> int:
        prev_mono = self._prev_mono
        # The all-clear case when every interval is > 0 (then each sample moves the reference): the
        # same differences and quotients `observe` computes, in C-level passes.
        if prev_mono is not None and prev_mono < monos[0] and all(map(lt, monos, monos[1:])):
            rates = map(
                truediv,
                map(sub, values, chain((self._prev_value,), values)),
                map(sub, monos, chain((prev_mono,), monos)),
            )
            if max(map(abs, rates)) <= self.max_rate:
                self._prev_mono = monos[-1]
                self._prev_value = values[-1]
                return len(values)
        return ValueCheck.first_active(self, values, monos, walls)


class StuckCheck(ValueCheck):
    """No change for `stuck_for` seconds. "No change" is |value - reference| <= epsilon, where the
    reference is the value at the last change, so a slow drift is a change (epsilon 0 = exact equality,
    right for a sensor that repeats its last reading)."""

    __slots__ = ("_last_mono", "_ref", "_since_mono", "_since_wall", "epsilon", "stuck_for")
    kind = "stuck"
    measure = "value (unchanged)"

    def __init__(self, stuck_for: float, epsilon: float = 0.0) -> None:
        super().__init__()
        if not (math.isfinite(stuck_for) and stuck_for > 0):
            raise ValueError("stuck_for must be > 0 seconds")
        if not (math.isfinite(epsilon) and epsilon >= 0):
            raise ValueError("epsilon must be >= 0")
        self.stuck_for = stuck_for
        self.epsilon = epsilon
        self.threshold = f"unchanged for >= {_num(stuck_for)}s"
        self._ref = math.nan  # NaN never compares equal: the first sample is a change
        self._since_mono = 0.0
        self._since_wall = 0.0
        self._last_mono = -math.inf

    def describe(self, channel: str) -> str:
        return f"{channel} stuck (no change for {_num(self.stuck_for)}s)"

    def observe(self, value: float, mono: float, wall: float) -> bool | None:
        # A gap of `stuck_for` without samples (link down, device silent) proves nothing about the value:
        # one sample that happens to repeat the last one before the gap must not read as "stuck".
        gap = mono - self._last_mono
        self._last_mono = mono
        if abs(value - self._ref) <= self.epsilon and gap < self.stuck_for:
            elapsed = mono - self._since_mono
            if elapsed >= self.stuck_for:
                self.value = value
                self.excursion = elapsed - self.stuck_for
                self.onset_mono = self._since_mono
                self.onset_wall = self._since_wall
                return True
            return False
        self._ref = value
        self._since_mono = mono
        self._since_wall = wall
        return False


# The most block summaries a band keeps: bounds a channel's memory (3 floats a block) and the
# cost of a band update (a sort of that many values), whatever window and update are configured.
MAX_BLOCKS = 1024
# A countdown that never reaches 0: how a check stops keeping samples without a branch per sample.
_NEVER = 1 << 62


class BaselineCheck(ValueCheck):
    """Outside the channel's robust normal band: learned from the channel's own recent samples (a rolling
    band, or a static one learned once), or given (`stats`, from a baseline file: fixed, no warm-up).

    The learned band, exactly (a batch form over a recording can reproduce it sample for sample):

    1. Time is the `mono` the caller passes (the rule clock). A segment starts at the first sample,
       and again at any sample more than `relearn_after` seconds after the previous one (0 = never):
       a new segment forgets the band and learns again (a maintenance stop, a long unplug).
    2. In a segment that started at t0, block j holds the samples with
       t0 + j*update <= t < t0 + (j+1)*update. A block closes at the first sample at or after its
       end. Of a block's n samples (in arrival order, 0-based position i) those with i % s == 0 are
       kept, s the smallest power of two with ceil(n / s) < capacity (all of them while
       n < capacity); a closed block with kept samples becomes a `BlockSummary`.
    3. The band changes only when a block closes, and only from block J = max(1, ceil(warmup /
       update)) on: until the first sample with t >= t0 + J*update there is no band (every sample is
       clear). From then on, at every close, the band is `window_band` of the last W summaries, with
       W = max(1, ceil(window / update)). With window = 0 (static) it is computed once, at that
       first close, from the warm-up's blocks, and kept until the segment ends.
    4. Each sample is judged against the band in force after any close its arrival caused (so the
       sample that closes a block is judged by the new band): active if value > high or value < low.

    Samples are expected in time order; one earlier than the current block's start (a clock that
    stepped back) is counted in the current block.

    Per-sample cost: two comparisons, a countdown, an occasional append; the sorting happens once per
    block (`update` seconds), on at most `capacity` samples. Memory: at most `capacity` floats plus W
    summaries per channel, whatever the sample rate.
    """

    __slots__ = (
        "_above", "_below", "_block", "_block_end", "_capacity", "_countdown", "_file", "_index",
        "_last", "_learn_blocks", "_relearn_after", "_static", "_stride", "_t0", "_window", "band",
        "high", "k", "low", "segments", "update",
    )  # fmt: skip
    kind = "baseline"

    def __init__(
        self,
        k: float,
        warmup: float,
        stats: RobustStats | None = None,
        *,
        window: float = 0.0,
        update: float | None = None,
        relearn_after: float = 0.0,
        capacity: int = 256,
    ) -> None:
        super().__init__()
        if not (math.isfinite(k) and k > 0):
            raise ValueError("baseline_k must be > 0")
        update = warmup if update is None else update
        for name, seconds in (("baseline_warmup", warmup), ("baseline_window", window),
                              ("baseline_relearn_after", relearn_after)):  # fmt: skip
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0")
        if not (math.isfinite(update) and update > 0):
            raise ValueError("baseline_update must be > 0 seconds")
        if capacity < 2 or capacity % 2:
            raise ValueError("capacity must be an even number >= 2")
        self.k = k
        self.update = update
        self._static = window == 0
        self._learn_blocks = max(1, math.ceil(warmup / update))
        # A static band is learned from the warm-up's blocks; a rolling one from the last `window`.
        blocks = self._learn_blocks if self._static else max(1, math.ceil(window / update))
        if max(blocks, self._learn_blocks) > MAX_BLOCKS:
            raise ValueError(
                f"baseline_window and baseline_warmup must each be at most {MAX_BLOCKS} x baseline_update"
                " (the band keeps one summary per block)"
            )
        self._window = BlockWindow(blocks)
        self._relearn_after = relearn_after
        self._capacity = capacity
        self._file = stats
        self.band: Band | None = None
        self.segments = 0  # how many times learning (re)started
        self._t0 = 0.0
        self._index = 0
        self._last = -math.inf
        self._block: list[float] = []
        self._stride = 1
        self._countdown = _NEVER
        self.low = -math.inf
        self.high = math.inf
        self._above = self._below = ""
        if stats is not None:
            self._block_end = math.inf  # a file's band is fixed: no blocks, no relearning
            low, high = stats.band(k)
            self._set_band(low, high, f"median {_num(stats.median)}, k={_num(k)}, from file")
        else:
            self._block_end = -math.inf  # the first sample starts the first segment

    @property
    def learning(self) -> bool:
        return self._file is None and self.band is None

    @property
    def stats(self) -> RobustStats | None:
        """The band in force as a baseline file entry (median = centre, mad = sigma / 1.4826)."""
        if self._file is not None:
            return self._file
        band = self.band
        if band is None:
            return None
        return RobustStats(median=band.centre, mad=band.sigma / MAD_TO_SIGMA, samples=band.blocks)

    def describe(self, channel: str) -> str:
        return f"{channel} outside its baseline band (k={_num(self.k)})"

    # A batch runner (`edge-agent backtest`) calls `observe` only on the samples that can change
    # anything - one at or after `next_boundary`, the `samples_until_kept`-th from now, one outside
    # [low, high] - and `skip`s the others: what `observe` would have done with them, in one step.

    @property
    def next_boundary(self) -> float:
        """The time from which the next sample closes a block (or starts a segment)."""
        return self._block_end

    @property
    def samples_until_kept(self) -> int:
        """Which sample from now is the next one kept for the band (1: the next one)."""
        return self._countdown

    def skip(self, count: int, last_mono: float) -> None:
        """`count` samples, the last at `last_mono`, all before `next_boundary`, none of them kept
        (`count < samples_until_kept`) and none outside the band: their effect on the check."""
        if not 0 <= count < self._countdown:
            raise ValueError(f"cannot skip {count} samples: the {self._countdown}th from now is kept")
        self._countdown -= count
        self._last = last_mono

    def first_active(self, values: Sequence[float], monos: Sequence[float], walls: Sequence[float]) -> int:
        count = len(values)
        if (
            count < self._countdown
            and max(monos) < self._block_end
            and min(values) >= self.low
            and max(values) <= self.high
        ):
            self.skip(count, monos[-1])  # what `observe` would do with them, as a backtest skips
            return count
        return ValueCheck.first_active(self, values, monos, walls)

    def observe(self, value: float, mono: float, wall: float) -> bool | None:
        if mono >= self._block_end:
            self._boundary(mono)
        self._last = mono
        left = self._countdown - 1
        if left:
            self._countdown = left
        else:
            block = self._block
            block.append(value)
            if len(block) < self._capacity:
                self._countdown = self._stride
            else:  # keep every other sample from now on: the kept ones stay evenly spread
                del block[1::2]
                self._countdown = self._stride
                self._stride *= 2
        # The same band test as LimitsCheck.observe, inlined on purpose: sharing it through a base-class
        # call measured 20 % fewer frames/s through the detector (bench/bench_detect.py, 8 ch x 5 rules).
        if value > self.high:
            self.value = value
            self.excursion = clamp(value - self.high)
            self.threshold = self._above
            return True
        if value < self.low:
            self.value = value
            self.excursion = clamp(self.low - value)
            self.threshold = self._below
            return True
        return False

    def _boundary(self, t: float) -> None:
        """The slow path, once per block: start a segment, or close the block and update the band."""
        relearn = self._relearn_after
        if self._block_end == -math.inf or (relearn and t - self._last > relearn):
            self._start(t)
            return
        if self._block:
            self._window.add(summarise(self._block))
            self._block = []
        # The block t falls in: boundaries are the floats t0 + j*update, whatever floor() rounds to.
        t0, update, first = self._t0, self.update, self._index + 1
        index = max(first, math.floor((t - t0) / update))
        while index > first and t0 + index * update > t:
            index -= 1
        while t0 + (index + 1) * update <= t:
            index += 1
        self._index = index
        self._block_end = t0 + (index + 1) * update
        if self._static and self.band is not None:
            return  # a static band keeps its blocks' boundaries only to notice a relearning gap
        self._stride = 1
        self._countdown = 1
        if index < self._learn_blocks or not self._window:
            return
        window = self._window
        band = window_band(window.medians, window.mads, window.steps, self.k)
        self.band = band
        text = f"centre {_num(band.centre)}, sigma {_num(band.sigma)}, k={_num(self.k)}"
        self._set_band(band.low, band.high, text)
        if self._static:
            self._countdown = _NEVER
            self._window.clear()

    def _start(self, t: float) -> None:
        self.segments += 1
        self._t0 = t
        self._index = 0
        self._block_end = t + self.update
        self._window.clear()
        self._block = []
        self._stride = 1
        self._countdown = 1
        self.band = None
        self.low = -math.inf
        self.high = math.inf

    def _set_band(self, low: float, high: float, text: str) -> None:
        self.low = low
        self.high = high
        band = f"[{_num(low)}, {_num(high)}] ({text})"
        self._above = f"above baseline band {band}"
        self._below = f"below baseline band {band}"
