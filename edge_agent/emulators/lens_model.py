"""The emulated lens model: what turns one channel-first window into a label and per-label scores.

The real Machine State lens is an n-shot KNN over learned embeddings; the emulator only needs a
model that is deterministic, cheap and reacts to the faults a bench simulator injects. The default
`BandModel` learns each channel's range from the first windows of a session, calls a window
anomalous when any channel leaves that range widened by `k` spreads, and lets each band follow
the channel's slow drift. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol


class LensModel(Protocol):
    """One instance per session (models keep per-session state such as a learned baseline)."""

    def classify(self, window: Sequence[Sequence[float]]) -> tuple[str, dict[str, float]]:
        """`window` is channel-first (`window[channel][sample]`). Returns (label, {label: score}).

        Raises ValueError when the window cannot be classified (the session reports an
        `inference.error` output for it, as the real service does for a bad window).
        """
        ...


LensModelFactory = Callable[[], LensModel]


class BandModel:
    """Per-channel band learned over the first `baseline_windows` windows, then kept up to date.

    Band for a channel after the baseline: centre = the middle of the baseline's [min, max], half
    width = (max - min) / 2 + k * spread, spread = max - min (with a floor so a constant channel
    still has a usable band). The anomaly score is d / (1 + d) where d is the largest normalised
    distance of any sample from the band's centre (d = 1 on the edge), so the score crosses 0.5
    exactly where the label flips and the two scores sum to 1.

    A bench drifts (a room warms and cools), and a lens that knew only its first seconds would call
    the drift a fault for good. The real Machine State lens matches each window against n-shot
    examples of normal running (shared/research/archetype-protocol.md §6.1, §6.4); that it does not
    call a slow drift a fault is INFERRED. So every
    channel whose window is inside its band moves that band a little (`adapt_rate`, an exponentially
    weighted average): the centre towards the window's mean, the spread towards the window's own
    range. A drift far slower than `adapt_rate` band widths a window is followed; a fault is never
    learned, because its windows are outside the band. (A fault on a drifting channel that lasts
    long enough for the drift to leave the band meanwhile stays a fault afterwards.)

    A frozen sensor inside the band is not a fault for this model (the agent's stuck rule sees it).
    """

    def __init__(
        self,
        *,
        baseline_windows: int = 5,
        k: float = 4.0,
        adapt_rate: float = 0.05,
        normal_label: str = "normal",
        anomaly_label: str = "fault",
    ) -> None:
        if baseline_windows < 1:
            raise ValueError("baseline_windows must be >= 1")
        if k <= 0:
            raise ValueError("k must be > 0")
        if not 0.0 <= adapt_rate < 1.0:
            raise ValueError("adapt_rate must be in [0, 1)")
        if normal_label == anomaly_label:
            raise ValueError("normal_label and anomaly_label must differ")
        self.baseline_windows = baseline_windows
        self.k = k
        self.adapt_rate = adapt_rate
        self.normal_label = normal_label
        self.anomaly_label = anomaly_label
        self._seen = 0
        self._mins: list[float] = []
        self._maxs: list[float] = []
        self._sums: list[float] = []
        self._counts: list[int] = []
        # Set once the baseline is complete: one band per channel.
        self._bands: list[_Band] | None = None

    @property
    def learning(self) -> bool:
        return self._bands is None

    def classify(self, window: Sequence[Sequence[float]]) -> tuple[str, dict[str, float]]:
        if not window or any(len(channel) == 0 for channel in window):
            raise ValueError("window has no samples")
        if self._mins and len(window) != len(self._mins):
            raise ValueError(
                f"window has {len(window)} channels, the session's baseline has {len(self._mins)}"
            )
        if self._bands is None:
            self._learn(window)
            # While learning, every window is by definition what "normal" looks like.
            return self._scores(0.0)
        worst = 0.0
        for band, channel in zip(self._bands, window, strict=True):
            distance = band.distance(channel)
            worst = max(worst, distance)
            # Per channel: a fault on one channel must not stop the others' bands following their drift.
            if distance <= 1.0 and self.adapt_rate:
                band.follow(channel, self.adapt_rate)
        return self._scores(worst)

    def _learn(self, window: Sequence[Sequence[float]]) -> None:
        if not self._mins:
            n = len(window)
            self._mins = [math.inf] * n
            self._maxs = [-math.inf] * n
            self._sums = [0.0] * n
            self._counts = [0] * n
        for i, channel in enumerate(window):
            self._mins[i] = min(self._mins[i], min(channel))
            self._maxs[i] = max(self._maxs[i], max(channel))
            self._sums[i] += math.fsum(channel)
            self._counts[i] += len(channel)
        self._seen += 1
        if self._seen >= self.baseline_windows:
            self._bands = [
                _Band.from_baseline(lo, hi, total / count, self.k)
                for lo, hi, total, count in zip(self._mins, self._maxs, self._sums, self._counts, strict=True)
            ]

    def _scores(self, distance: float) -> tuple[str, dict[str, float]]:
        anomaly = distance / (1.0 + distance)
        label = self.anomaly_label if distance > 1.0 else self.normal_label
        return label, {self.normal_label: 1.0 - anomaly, self.anomaly_label: anomaly}


class _Band:
    """One channel's band: `centre`, `spread` (a typical range) and `half_width` = range / 2 + k * spread."""

    def __init__(self, centre: float, range_: float, spread: float, k: float) -> None:
        self.centre = centre
        self.range = range_
        self.spread = spread
        self.k = k

    @classmethod
    def from_baseline(cls, lo: float, hi: float, mean: float, k: float) -> _Band:
        return cls((lo + hi) / 2, hi - lo, max(hi - lo, _floor(mean)), k)

    @property
    def half_width(self) -> float:
        return self.range / 2 + self.k * self.spread

    def distance(self, channel: Sequence[float]) -> float:
        lo, hi = min(channel), max(channel)
        return max(abs(hi - self.centre), abs(lo - self.centre)) / self.half_width

    def follow(self, channel: Sequence[float], rate: float) -> None:
        """Move a little towards a window judged normal (see BandModel: how a drift is followed)."""
        lo, hi = min(channel), max(channel)
        mean = math.fsum(channel) / len(channel)
        self.centre += rate * (mean - self.centre)
        self.range += rate * (hi - lo - self.range)
        self.spread += rate * (max(hi - lo, _floor(mean)) - self.spread)


def _floor(level: float) -> float:
    # A constant channel (spread 0) would otherwise flag any change at all.
    return 1e-3 * max(1.0, abs(level))


def band_model_factory(
    *, baseline_windows: int, k: float, normal_label: str, anomaly_label: str
) -> LensModelFactory:
    def make() -> LensModel:
        return BandModel(
            baseline_windows=baseline_windows, k=k, normal_label=normal_label, anomaly_label=anomaly_label
        )

    return make
