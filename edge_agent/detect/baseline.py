"""Robust baselines: a channel's normal band from median and MAD, learned from a warm-up or read from a file.

The band is `median ± k * 1.4826 * MAD` (1.4826 makes the MAD estimate the standard deviation of a normal
signal, so `k` reads as "sigmas"), robust to the odd spike during warm-up that would drag a mean/std band.
A warm-up where most samples are identical (a quantised, quiet sensor) has MAD = 0; the spread then falls
back to the mean absolute deviation from the median (x 1.2533, its normal-consistency factor), and never
below a tiny floor relative to the median, so the band is never zero-width.

Baseline file (JSON): `{"supply_v": {"median": 12.0, "mad": 0.02}, ...}` - what `dump_baselines` writes.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533
RELATIVE_SPREAD_FLOOR = 1e-6  # of |median|
ABSOLUTE_SPREAD_FLOOR = 1e-12


@dataclass(frozen=True, slots=True)
class RobustStats:
    median: float
    mad: float  # raw median absolute deviation (not yet scaled to sigma)
    samples: int = 0  # how many samples it was learned from (0: loaded from a file)

    def sigma(self) -> float:
        """The spread used for the band, with the MAD = 0 fallbacks described in the module doc."""
        return max(self.mad * MAD_TO_SIGMA, RELATIVE_SPREAD_FLOOR * abs(self.median), ABSOLUTE_SPREAD_FLOOR)

    def band(self, k: float) -> tuple[float, float]:
        half = k * self.sigma()
        return self.median - half, self.median + half


def robust_stats(samples: list[float]) -> RobustStats:
    """Median and MAD of `samples` (non-empty, finite); MAD = 0 falls back to the mean abs deviation."""
    if not samples:
        raise ValueError("no samples")
    median = statistics.median(samples)
    deviations = [abs(x - median) for x in samples]
    mad = statistics.median(deviations)
    if mad == 0.0:
        # Re-expressed on the MAD's scale so that RobustStats.sigma() applies one factor to both.
        mad = statistics.fmean(deviations) * MEAN_AD_TO_SIGMA / MAD_TO_SIGMA
    return RobustStats(median=median, mad=mad, samples=len(samples))


class WarmupSampler:
    """Keeps an evenly spaced subset of a warm-up's samples in bounded memory.

    When the buffer is full every other kept sample is dropped and the stride doubles, so the kept set
    always spans the whole warm-up evenly (a "first N" buffer would learn only its start, a reservoir
    would need a random source) and memory stays below `capacity`.
    """

    __slots__ = ("_buffer", "_capacity", "_seen", "_stride")

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 2:
            raise ValueError("capacity must be >= 2")
        self._capacity = capacity
        self._buffer: list[float] = []
        self._stride = 1
        self._seen = 0

    def add(self, value: float) -> None:
        if self._seen % self._stride == 0:
            self._buffer.append(value)
            if len(self._buffer) >= self._capacity:
                del self._buffer[1::2]
                self._stride *= 2
        self._seen += 1

    @property
    def kept(self) -> int:
        return len(self._buffer)

    @property
    def seen(self) -> int:
        return self._seen

    def samples(self) -> list[float]:
        return list(self._buffer)


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
    """The baseline file text for `stats` (learned baselines can be saved and loaded next run)."""
    return json.dumps(
        {channel: {"median": s.median, "mad": s.mad} for channel, s in sorted(stats.items())}, indent=2
    )
