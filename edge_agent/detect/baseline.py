"""Robust baselines: a channel's normal band from medians and median absolute deviations (MAD).

Two sources of a band:

* **Learned (rolling)**: the samples are cut into blocks of `update` seconds; each complete block is
  summarised (`BlockSummary`: median, MAD, finest step between its values) and the band is computed
  from the summaries of the last blocks (`window_band`). The exact rule is in `BaselineCheck`'s
  docstring (`edge_agent/detect/baseline_check.py`); this module holds the arithmetic.
* **From a file** (`baseline_file`, JSON `{"supply_v": {"median": 12.0, "mad": 0.02}, ...}`, what
  `dump_baselines` writes): a fixed band `median ± k * max(1.4826 * mad, 1e-6 * |median|, 1e-12)`.

1.4826 makes a MAD estimate the standard deviation of a normal signal, so `k` reads as "sigmas".

Arithmetic on extreme values never produces NaN: medians of two values are taken so that they cannot
overflow (`midpoint`), a spread that overflows is +inf (the band is then the whole line, so nothing is
outside it), and a band edge is always a float (possibly ±inf), never NaN.
"""

from __future__ import annotations

import bisect
import json
import math
import operator
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MAD_TO_SIGMA = 1.4826
RELATIVE_SPREAD_FLOOR = 1e-6  # of |median|, for file baselines
ABSOLUTE_SPREAD_FLOOR = 1e-12
# Rolling bands: the spread is never below this many grid steps (see `window_band`).
RESOLUTION_FLOOR = 0.5


@dataclass(frozen=True, slots=True)
class RobustStats:
    """A fixed baseline (from a file, or a learned band saved as one): centre and raw MAD."""

    median: float
    mad: float  # raw median absolute deviation (not yet scaled to sigma)
    samples: int = 0  # how many samples it was learned from (0: loaded from a file)

    def sigma(self) -> float:
        return max(self.mad * MAD_TO_SIGMA, RELATIVE_SPREAD_FLOOR * abs(self.median), ABSOLUTE_SPREAD_FLOOR)

    def band(self, k: float) -> tuple[float, float]:
        half = k * self.sigma()
        return self.median - half, self.median + half


def midpoint(a: float, b: float) -> float:
    """(a + b) / 2 without overflow for finite a, b (1e308 and 1e308 give 1e308, not inf)."""
    total = a + b
    if math.isinf(total):
        return a / 2.0 + b / 2.0
    return total / 2.0


def sorted_median(ordered: Sequence[float]) -> float:
    """Median of an already sorted, non-empty sequence of finite floats."""
    n = len(ordered)
    half = n // 2
    if n % 2:
        return ordered[half]
    return midpoint(ordered[half - 1], ordered[half])


def median(values: Iterable[float]) -> float:
    return sorted_median(sorted(values))


def median_distance(ordered: Sequence[float], centre: float) -> float:
    """Median of |x - centre| over a sorted, non-empty sequence, without building the distances.

    The distances are two sorted runs, going left and right from `centre`; the k-th smallest of
    their union is found by bisection (O(log n) comparisons instead of an O(n) list and a sort).
    """
    n = len(ordered)
    split = bisect.bisect_left(ordered, centre)
    left, right = split, n - split

    def kth(k: int) -> float:  # the k-th smallest distance (0-based)
        lo, hi = max(0, k + 1 - right), min(k + 1, left)
        while lo < hi:  # how many come from the left run
            a = (lo + hi) // 2
            if centre - ordered[split - 1 - a] < ordered[split + k - a] - centre:
                lo = a + 1
            else:
                hi = a
        b = k + 1 - lo
        best = -math.inf
        if lo:
            best = centre - ordered[split - lo]
        if b:
            best = max(best, ordered[split + b - 1] - centre)
        return best

    half = n // 2
    if n % 2:
        return kth(half)
    return midpoint(kth(half - 1), kth(half))


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """One block of samples: its median, its raw MAD, and the smallest positive difference between
    two of its values (`step`; +inf when all are equal), which reveals a quantised sensor's grid."""

    median: float
    mad: float
    step: float
    samples: int


def summarise(values: list[float]) -> BlockSummary:
    """Summary of a non-empty block of finite values (sorts `values` in place)."""
    values.sort()
    centre = sorted_median(values)
    mad = median_distance(values, centre)  # an overflowing distance is +inf, never NaN
    # Differences of sorted values are >= 0; filter(None, ...) drops the zeros of repeated values.
    step = min(filter(None, map(operator.sub, values[1:], values[:-1])), default=math.inf)
    return BlockSummary(centre, mad, step, len(values))


def printed_resolution(x: float) -> float:
    """The resolution a finite value was written with: 0.1 for 55.5, 1 for 82.0, 1e-05 for 1e-05.

    The fallback grid of a channel whose window never changed value: a sensor prints what it
    resolves, so a reading of 82 proves a resolution of at least 1, and 24.01 of at least 0.01.
    """
    text = repr(float(x)).lstrip("-")
    mantissa, _, exponent = text.partition("e")
    fraction = mantissa.partition(".")[2]
    decimals = len(fraction.rstrip("0"))
    try:
        return 10.0 ** (int(exponent or "0") - decimals)
    except OverflowError:
        return math.inf


@dataclass(frozen=True, slots=True)
class Band:
    """A learned band: `centre ± k * sigma`, with what it was made of (for the threshold text)."""

    centre: float
    sigma: float
    low: float
    high: float
    blocks: int


def window_band(medians: Sequence[float], mads: Sequence[float], steps: Iterable[float], k: float) -> Band:
    """The band from a window of block summaries: their medians and MADs (each sorted ascending) and
    their steps (non-empty):

        centre   = median of the block medians
        within   = 1.4826 * median of the block MADs          (noise inside a block)
        between  = 1.4826 * median |block median - centre|    (wander and drift across blocks)
        grid     = the smallest step of any block, else the printed resolution of `centre`
        sigma    = max(hypot(within, between), RESOLUTION_FLOOR * grid)
        band     = [centre - k * sigma, centre + k * sigma]
    """
    centre = sorted_median(medians)
    within = MAD_TO_SIGMA * sorted_median(mads)
    between = MAD_TO_SIGMA * median_distance(medians, centre)
    grid = min(steps)
    if math.isinf(grid):
        grid = printed_resolution(centre)
    sigma = max(math.hypot(within, between), RESOLUTION_FLOOR * grid)
    half = k * sigma  # inf when the spread overflowed: then nothing is outside the band
    return Band(centre, sigma, centre - half, centre + half, len(medians))


class BlockWindow:
    """The last `size` block summaries, their medians and MADs also kept sorted, so that a band update
    moves memory in C and bisects (no sort) however long the window is."""

    __slots__ = ("_order", "mads", "medians", "size", "steps")

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[BlockSummary] = deque()
        self.medians: list[float] = []
        self.mads: list[float] = []
        self.steps: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._order)

    def add(self, summary: BlockSummary) -> None:
        if len(self._order) == self.size:
            oldest = self._order.popleft()
            del self.medians[bisect.bisect_left(self.medians, oldest.median)]
            del self.mads[bisect.bisect_left(self.mads, oldest.mad)]
            self.steps.popleft()
        self._order.append(summary)
        bisect.insort(self.medians, summary.median)
        bisect.insort(self.mads, summary.mad)
        self.steps.append(summary.step)

    def clear(self) -> None:
        self._order.clear()
        self.medians.clear()
        self.mads.clear()
        self.steps.clear()


class BaselineFileError(ValueError):
    """A baseline file that cannot be used; the message names the file and the reason."""


def parse_baselines(document: object, where: str = "baseline") -> dict[str, RobustStats]:
    if not isinstance(document, dict):
        raise BaselineFileError(f"{where}: expected an object of channel -> {{median, mad}}")
    out: dict[str, RobustStats] = {}
    for channel, entry in document.items():
        if not isinstance(entry, dict):
            raise BaselineFileError(f"{where}: {channel!r} is not an object with median and mad")
        numbers: dict[str, float] = {}
        for name in ("median", "mad"):
            raw = entry.get(name)
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                raise BaselineFileError(f"{where}: {channel}.{name} must be a finite number, not {raw!r}")
            numbers[name] = float(raw)
        if numbers["mad"] < 0:
            raise BaselineFileError(f"{where}: {channel}.mad must be >= 0")
        out[str(channel)] = RobustStats(median=numbers["median"], mad=numbers["mad"])
    return out


def load_baselines(path: Path) -> dict[str, RobustStats]:
    """Read a baseline file; `BaselineFileError` names the file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineFileError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BaselineFileError(f"{path}: is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineFileError(f"{path}: not valid JSON: {exc}") from None
    return parse_baselines(document, str(path))


def dump_baselines(stats: Mapping[str, RobustStats]) -> str:
    """The baseline file text for `stats` (learned baselines can be saved and loaded next run).

    A learned band whose spread overflowed (+inf) cannot be written as a finite number: it is left
    out, since a file must only hold bands that `load_baselines` accepts."""
    usable = {c: s for c, s in stats.items() if math.isfinite(s.median) and math.isfinite(s.mad)}
    return json.dumps(
        {channel: {"median": s.median, "mad": s.mad} for channel, s in sorted(usable.items())},
        indent=2,
        allow_nan=False,
    )
