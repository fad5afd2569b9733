"""The rules' verdicts over a block of samples at once: what each check's `observe` would answer.

A `Batch` evaluates one check of one channel over that channel's samples of a block (those the
live `Detector` hands the check), carrying the check's state from block to block, and answers which
samples gave a verdict (`observe` returned True or False, not None) and which of them were active.
The engine feeds the tracker slot only where that matters (active samples, and clear ones while the
slot is live), with the measure, excursion and threshold the live check would have left:

- limits, and a baseline once learned, are stateless band tests: the mask is computed in numpy and the
  check itself is asked (`observe`) at the samples that are fed, so those values are its own;
- rate and stuck (epsilon 0) keep a reference sample; their state is a running "previous sample" and
  "last change" that numpy computes exactly (the same float operations, in the same order);
- a baseline learns from its warm-up sample by sample through the real check, then turns stateless;
- anything else (a stuck check with an epsilon, a check type this module does not know) runs the real
  check sample by sample (`SequentialBatch`): exact by construction, and slower.

The property test (tests/backtest/test_equivalence.py) holds every batch to the live `Detector`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.detect.baseline_check import BaselineCheck
from edge_agent.detect.checks import MAX_FLOAT, LimitsCheck, RateCheck, StuckCheck, ValueCheck

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Samples:
    """One channel's samples of a block (what the Detector hands its checks: NaN left out, +-inf as
    +-MAX_FLOAT): block frame index, time, value, data row."""

    at: Ints
    t: Floats
    v: Floats
    rows: Ints


@dataclass(slots=True)
class Verdicts:
    """Per verdict sample (in sample order): where it is, whether active, and for checks that compute
    them here, the measure, the excursion and the onset (time and row; NaN/-1 when none)."""

    at: Ints  # block frame index
    active: Bools
    value: Floats | None = None  # None: ask the check itself at the sample (stateless checks)
    excursion: Floats | None = None
    onset_t: Floats | None = None
    onset_row: Ints | None = None
    thresholds: list[str] | None = None  # per verdict sample (sequential checks); else check.threshold


class Batch:
    def __init__(self, check: ValueCheck) -> None:
        self.check = check

    def evaluate(self, samples: Samples) -> Verdicts:
        raise NotImplementedError

    def pending_since(self, now: float) -> float | None:
        """The check's `pending_since` as the live check has it after the samples up to `now` (of the
        block last evaluated, or before it). Limits, rate and baseline have no condition in progress
        that is not active yet: the check's own answer (None) stands."""
        return self.check.pending_since()

    @property
    def asks_check(self) -> bool:
        """True when the engine gets value, excursion and threshold from `check.observe` at a sample."""
        return False


class LimitsBatch(Batch):
    def __init__(self, check: LimitsCheck) -> None:
        super().__init__(check)
        self.low = check.low
        self.high = check.high

    @property
    def asks_check(self) -> bool:
        return True

    def evaluate(self, samples: Samples) -> Verdicts:
        v = samples.v
        return Verdicts(samples.at, (v > self.high) | (v < self.low))


class RateBatch(Batch):
    """|dv/dt| against the reference sample. On a non-decreasing timeline the reference is the first
    sample of the previous run of equal times, and only the first sample of each run gets a verdict."""

    def __init__(self, check: RateCheck) -> None:
        super().__init__(check)
        self.max_rate = check.max_rate
        self.ref_t: float | None = None
        self.ref_v = 0.0

    def evaluate(self, samples: Samples) -> Verdicts:
        t, v = samples.t, samples.v
        if t.size == 0:
            return _no_verdicts()
        starts_run = np.empty(t.size, dtype=bool)
        starts_run[0] = self.ref_t is None or t[0] > self.ref_t
        np.greater(t[1:], t[:-1], out=starts_run[1:])
        if starts_run.all():  # strictly increasing times: every sample is a reference (views)
            refs = np.arange(t.size)
            run_t, run_v = t, v
        else:
            refs = np.flatnonzero(starts_run)
            run_t, run_v = t[refs], v[refs]
        ref_t = np.concatenate(([math.nan if self.ref_t is None else self.ref_t], run_t))
        ref_v = np.concatenate(([self.ref_v], run_v))
        if refs.size:
            self.ref_t, self.ref_v = float(ref_t[-1]), float(ref_v[-1])
        # Verdicts: every run start that has a reference before it.
        with np.errstate(over="ignore", invalid="ignore"):
            rate = (ref_v[1:] - ref_v[:-1]) / (ref_t[1:] - ref_t[:-1])
        has_ref = ~np.isnan(ref_t[:-1])
        rate = rate[has_ref]
        magnitude = np.abs(rate)
        active = magnitude > self.max_rate
        # A difference or quotient that overflowed is reported as the largest finite rate (RateCheck).
        excursion = np.clip(magnitude - self.max_rate, -MAX_FLOAT, MAX_FLOAT)
        value = np.clip(rate, -MAX_FLOAT, MAX_FLOAT)
        return Verdicts(samples.at[refs[has_ref]], active, value=value, excursion=excursion)


class StuckBatch(Batch):
    """No change (exact equality: epsilon 0, so the reference is always the previous value) for
    `stuck_for`; a gap of `stuck_for` without samples is a change."""

    def __init__(self, check: StuckCheck) -> None:
        super().__init__(check)
        if check.epsilon != 0.0:
            raise ValueError("StuckBatch is exact for epsilon 0 only")
        self.stuck_for = check.stuck_for
        self.prev_v = math.nan
        self.prev_t = -math.inf
        self.since_t = 0.0
        self.since_row = -1
        self.unchanged_since = PendingTimes()

    def pending_since(self, now: float) -> float | None:
        return self.unchanged_since.at(now)

    def evaluate(self, samples: Samples) -> Verdicts:
        t, v, rows = samples.t, samples.v, samples.rows
        n = t.size
        before = None if self.prev_t == -math.inf else self.since_t  # no sample yet: nothing unchanged
        self.unchanged_since = PendingTimes(t, t, before)  # every sample a change, until found otherwise
        if n == 0:
            return _no_verdicts()
        prev_v = np.concatenate(([self.prev_v], v[:-1]))
        prev_t = np.concatenate(([self.prev_t], t[:-1]))
        with np.errstate(invalid="ignore", over="ignore"):  # an overflowing difference is a change
            unchanged = (np.abs(v - prev_v) <= 0.0) & ((t - prev_t) < self.stuck_for)
        self.prev_v, self.prev_t = float(v[-1]), float(t[-1])
        if not unchanged.any():  # every sample a change (a noisy channel): nothing can be stuck
            self.since_t, self.since_row = float(t[-1]), int(rows[-1])
            return Verdicts(samples.at, unchanged, value=v, excursion=np.zeros(n))
        change = ~unchanged
        last_change = np.where(change, np.arange(n), -1)
        np.maximum.accumulate(last_change, out=last_change)
        carried = last_change < 0
        idx = np.where(carried, 0, last_change)
        since_t = np.where(carried, self.since_t, t[idx])
        since_row = np.where(carried, self.since_row, rows[idx])
        elapsed = t - since_t
        active = unchanged & (elapsed >= self.stuck_for)
        self.since_t, self.since_row = float(since_t[-1]), int(since_row[-1])
        self.unchanged_since = PendingTimes(t, since_t, before)
        return Verdicts(
            samples.at, active, value=v, excursion=elapsed - self.stuck_for, onset_t=since_t,
            onset_row=since_row.astype(np.int64),
        )  # fmt: skip


class RollingBaselineBatch(Batch):
    """The rolling (or static, or file) baseline band: the real check, called only on the samples that
    can change it - the first at or after its next block boundary, the next one it keeps for the band,
    one outside the band in force - and advanced past the others in one step (`BaselineCheck.skip`).
    Between two boundaries the band is fixed, so "outside it" is one numpy comparison."""

    def __init__(self, check: BaselineCheck) -> None:
        super().__init__(check)
        self.baseline = check

    def evaluate(self, samples: Samples) -> Verdicts:
        check = self.baseline
        observe, skip = check.observe, check.skip
        t, v = samples.t, samples.v
        time, val = t.item, v.item  # a sample as a Python float: only the few observed are looked at
        n = t.size
        active = np.zeros(n, dtype=bool)
        value, excursion = np.zeros(n), np.zeros(n)
        thresholds = [""] * n
        i = 0
        while i < n:
            end = check.next_boundary
            at = time(i)
            if at >= end:  # it crosses the boundary: observed alone, then the band is read again
                if observe(val(i), at, at):
                    active[i] = True
                    value[i], excursion[i], thresholds[i] = check.value, check.excursion, check.threshold
                i += 1
                continue
            stop = n if end == math.inf else int(np.searchsorted(t, end, side="left"))
            low, high = check.low, check.high  # fixed until the next boundary
            run = v[i:stop]
            outside = (np.flatnonzero((run > high) | (run < low)) + i).tolist()
            outside.append(stop)
            o = 0
            k = i
            while k < stop:
                target = min(outside[o], k + check.samples_until_kept - 1)
                if target > k:
                    skip(target - k, time(target - 1))
                    k = target
                    continue
                if k == outside[o]:
                    o += 1
                at = time(k)
                if observe(val(k), at, at):
                    active[k] = True
                    value[k], excursion[k], thresholds[k] = check.value, check.excursion, check.threshold
                k += 1
            i = k
        return Verdicts(samples.at, active, value=value, excursion=excursion, thresholds=thresholds)


class SequentialBatch(Batch):
    """The real check, sample by sample: exact for any check, at per-sample Python speed (what it
    measures and leaves is kept for the active samples only: the others are fed as clear; and its
    `pending_since` after each sample)."""

    def __init__(self, check: ValueCheck) -> None:
        super().__init__(check)
        self.since = PendingTimes(before=check.pending_since())

    def pending_since(self, now: float) -> float | None:
        return self.since.at(now)

    def evaluate(self, samples: Samples) -> Verdicts:
        check = self.check
        observe, pending_since = check.observe, check.pending_since
        at: list[int] = []
        active: list[bool] = []
        measured: dict[int, tuple[float, float, str, float | None]] = {}
        before = pending_since()
        since: list[float] = []
        for k, (t, v) in enumerate(zip(samples.t.tolist(), samples.v.tolist(), strict=True)):
            verdict = observe(v, t, t)
            pending = pending_since()
            since.append(math.nan if pending is None else pending)
            if verdict is None:
                continue
            if verdict:
                measured[len(at)] = (check.value, check.excursion, check.threshold, check.onset_mono)
            at.append(k)
            active.append(verdict)
        self.since = PendingTimes(samples.t, np.array(since), before)
        count = len(at)
        value, excursion, onset_t = np.zeros(count), np.zeros(count), np.full(count, math.nan)
        thresholds = [""] * count
        for index, (val, exc, threshold, onset) in measured.items():
            value[index], excursion[index], thresholds[index] = val, exc, threshold
            if onset is not None:
                onset_t[index] = onset
        positions = np.array(at, dtype=np.int64)
        return Verdicts(
            samples.at[positions] if count else np.empty(0, np.int64), np.array(active, dtype=bool),
            value=value, excursion=excursion, onset_t=onset_t, thresholds=thresholds,
        )  # fmt: skip


class PendingTimes:
    """A check's `pending_since` after each sample of a block (NaN: None), and before the block: what
    it was at any time in the block."""

    __slots__ = ("before", "since", "times")

    def __init__(
        self, times: Floats | None = None, since: Floats | None = None, before: float | None = None
    ) -> None:
        self.times = np.empty(0) if times is None else times
        self.since = self.times if since is None else since
        self.before = before

    def at(self, now: float) -> float | None:
        k = int(np.searchsorted(self.times, now, side="right"))
        if not k:
            return self.before
        since = float(self.since[k - 1])
        return None if math.isnan(since) else since


def batch_for(check: ValueCheck) -> Batch:
    """The fastest exact evaluator for `check` (exact types only: a subclass may behave otherwise)."""
    kind = type(check)
    if kind is LimitsCheck:
        assert isinstance(check, LimitsCheck)
        return LimitsBatch(check)
    if kind is RateCheck:
        assert isinstance(check, RateCheck)
        return RateBatch(check)
    if kind is StuckCheck and isinstance(check, StuckCheck) and check.epsilon == 0.0:
        return StuckBatch(check)
    if kind is BaselineCheck:
        assert isinstance(check, BaselineCheck)
        return RollingBaselineBatch(check)
    return SequentialBatch(check)


def _no_verdicts() -> Verdicts:
    empty = np.empty(0)
    return Verdicts(np.empty(0, np.int64), np.empty(0, dtype=bool), value=empty, excursion=empty)
