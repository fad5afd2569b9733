"""The baseline check (sans-I/O): a channel's value outside its robust normal band, learned from the
channel's own recent samples or given by a baseline file. The band's statistics are
`edge_agent.detect.baseline`; the contract every check keeps (`observe`, `first_active`, finite
`value` and `excursion`) is `ValueCheck`'s (checks.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from edge_agent.detect.baseline import (
    MAD_TO_SIGMA,
    Band,
    BlockWindow,
    RobustStats,
    summarise,
    window_band,
)
from edge_agent.detect.checks import ValueCheck, clamp, number_text

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
            self._set_band(low, high, f"median {number_text(stats.median)}, k={number_text(k)}, from file")
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
        return f"{channel} outside its baseline band (k={number_text(self.k)})"

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
        text = f"centre {number_text(band.centre)}, sigma {number_text(band.sigma)}, k={number_text(self.k)}"
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
        band = f"[{number_text(low)}, {number_text(high)}] ({text})"
        self._above = f"above baseline band {band}"
        self._below = f"below baseline band {band}"
