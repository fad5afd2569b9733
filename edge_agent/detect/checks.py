"""Per-channel value checks (sans-I/O): limits, rate of change, stuck value, baseline band.

Each check sees one channel of one source, one finite value at a time, and answers
`observe(value, mono, wall) -> bool | None`: True = the condition holds, False = clear, None = no
verdict yet (first sample of a rate, baseline still warming up, dt <= 0). When it answers True it also
leaves `value` (the measure at this sample), `excursion` (how far beyond the threshold, >= 0) and
`threshold` (a constant text, no per-sample allocation) on itself for the tracker to read; `onset_*`
backdates the start of a condition that began before it was detectable (stuck: the last change).

Callers filter out NaN/inf before calling (see `Detector`), so no check has to.
"""

from __future__ import annotations

import math

from edge_agent.detect.baseline import RobustStats, WarmupSampler, robust_stats


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
            self.excursion = value - self.high
            self.threshold = self._above
            return True
        if value < self.low:
            self.value = value
            self.excursion = self.low - value
            self.threshold = self._below
            return True
        return False


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
            self.value = rate
            self.excursion = magnitude - self.max_rate
            return True
        return False


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


class BaselineCheck(ValueCheck):
    """Outside the channel's robust normal band: learned over `warmup` seconds from its first sample
    (at least `min_samples` of them), or given (`stats`, from a baseline file). No verdict while learning."""

    __slots__ = (
        "_above", "_below", "_sampler", "_started", "high", "k", "low", "min_samples", "stats", "warmup",
    )  # fmt: skip
    kind = "baseline"

    def __init__(
        self,
        k: float,
        warmup: float,
        stats: RobustStats | None = None,
        capacity: int = 4096,
        min_samples: int = 10,
    ) -> None:
        super().__init__()
        if not (math.isfinite(k) and k > 0):
            raise ValueError("baseline_k must be > 0")
        self.k = k
        self.warmup = warmup
        self.min_samples = max(1, min_samples)
        self._sampler = WarmupSampler(capacity)
        self._started: float | None = None
        self.stats: RobustStats | None = None
        self.low = -math.inf
        self.high = math.inf
        self._above = self._below = ""
        if stats is not None:
            self._learned(stats)

    def _learned(self, stats: RobustStats) -> None:
        self.stats = stats
        self.low, self.high = stats.band(self.k)
        band = f"[{_num(self.low)}, {_num(self.high)}] (median {_num(stats.median)}, k={_num(self.k)})"
        self._above = f"above baseline band {band}"
        self._below = f"below baseline band {band}"

    @property
    def learning(self) -> bool:
        return self.stats is None

    def describe(self, channel: str) -> str:
        return f"{channel} outside its baseline band (k={_num(self.k)})"

    def observe(self, value: float, mono: float, wall: float) -> bool | None:
        if self.stats is None:
            if self._started is None:
                self._started = mono
            self._sampler.add(value)
            if mono - self._started >= self.warmup and self._sampler.kept >= self.min_samples:
                self._learned(robust_stats(self._sampler.samples()))
                self._sampler = WarmupSampler(2)  # the warm-up buffer is no longer needed
            return None
        # The same band test as LimitsCheck.observe, inlined on purpose: sharing it through a base-class
        # call measured 20 % fewer frames/s through the detector (bench/bench_detect.py, 8 ch x 5 rules).
        if value > self.high:
            self.value = value
            self.excursion = value - self.high
            self.threshold = self._above
            return True
        if value < self.low:
            self.value = value
            self.excursion = self.low - value
            self.threshold = self._below
            return True
        return False
