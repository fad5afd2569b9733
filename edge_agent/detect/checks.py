"""Per-channel value checks (sans-I/O): limits, rate of change, stuck value; the baseline band is
`BaselineCheck` (baseline_check.py).

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
- baseline: see `BaselineCheck` (baseline_check.py) and `edge_agent.detect.baseline` (a spread that
  overflows makes the band the whole line: nothing is outside it until those samples leave the window).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from itertools import chain
from operator import lt, sub, truediv

MAX_FLOAT = sys.float_info.max


def clamp(x: float) -> float:
    """`x` if finite, else the largest finite float with its sign (callers never pass NaN)."""
    if x > MAX_FLOAT:
        return MAX_FLOAT
    if x < -MAX_FLOAT:
        return -MAX_FLOAT
    return x


def number_text(x: float) -> str:
    """A threshold or a measure as the descriptions show it: 6 significant digits."""
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

    def pending_since(self) -> float | None:
        """When a condition began that holds already but is not active yet because it needs time to
        show (stuck: unchanged since the last change, not yet for `stuck_for`), as the anomaly's start
        would be backdated to it; None when there is none. Read at tick time, never per sample."""
        return None

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
        self._above = f"max {number_text(self.high)}"
        self._below = f"min {number_text(self.low)}"

    def describe(self, channel: str) -> str:
        if self.low == -math.inf:
            return f"{channel} above {number_text(self.high)}"
        if self.high == math.inf:
            return f"{channel} below {number_text(self.low)}"
        return f"{channel} outside [{number_text(self.low)}, {number_text(self.high)}]"

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
        self.threshold = f"max_rate {number_text(max_rate)}/s"
        self._prev_value = 0.0
        self._prev_mono: float | None = None

    def describe(self, channel: str) -> str:
        return f"{channel} changing faster than {number_text(self.max_rate)}/s"

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
        self.threshold = f"unchanged for >= {number_text(stuck_for)}s"
        self._ref = math.nan  # NaN never compares equal: the first sample is a change
        self._since_mono = 0.0
        self._since_wall = 0.0
        self._last_mono = -math.inf

    def describe(self, channel: str) -> str:
        return f"{channel} stuck (no change for {number_text(self.stuck_for)}s)"

    def pending_since(self) -> float | None:
        # Every channel is "unchanged since its last change": a noisy one since its last sample.
        return None if self._ref != self._ref else self._since_mono  # NaN: no sample yet

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
