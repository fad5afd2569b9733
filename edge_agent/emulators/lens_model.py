"""The emulated lens model: what turns one channel-first window into a label and per-label scores.

The real Machine State lens is an n-shot KNN over learned embeddings; the emulator only needs a
model that is deterministic, cheap and reacts to the faults a bench simulator injects. The default
`BandModel` learns each channel's range from the first windows of a session and calls a window
anomalous when any channel leaves that range widened by `k` spreads. Pure: no I/O, no clock.
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
    """Per-channel band learned over the first `baseline_windows` windows.

    Band for a channel: [min - k*spread, max + k*spread], spread = max - min of the baseline (with a
    floor so a constant channel still has a usable band). The anomaly score is d / (1 + d) where d
    is the largest normalised distance of any sample from the band's centre (d = 1 on the edge),
    so the score crosses 0.5 exactly where the label flips and the two scores sum to 1.
    """

    def __init__(
        self,
        *,
        baseline_windows: int = 5,
        k: float = 4.0,
        normal_label: str = "normal",
        anomaly_label: str = "fault",
    ) -> None:
        if baseline_windows < 1:
            raise ValueError("baseline_windows must be >= 1")
        if k <= 0:
            raise ValueError("k must be > 0")
        if normal_label == anomaly_label:
            raise ValueError("normal_label and anomaly_label must differ")
        self.baseline_windows = baseline_windows
        self.k = k
        self.normal_label = normal_label
        self.anomaly_label = anomaly_label
        self._seen = 0
        self._mins: list[float] = []
        self._maxs: list[float] = []
        self._sums: list[float] = []
        self._counts: list[int] = []
        # Computed once the baseline is complete: per channel (centre, half width).
        self._band: list[tuple[float, float]] | None = None

    @property
    def learning(self) -> bool:
        return self._band is None

    def classify(self, window: Sequence[Sequence[float]]) -> tuple[str, dict[str, float]]:
        if not window or any(len(channel) == 0 for channel in window):
            raise ValueError("window has no samples")
        if self._mins and len(window) != len(self._mins):
            raise ValueError(
                f"window has {len(window)} channels, the session's baseline has {len(self._mins)}"
            )
        if self._band is None:
            self._learn(window)
            # While learning, every window is by definition what "normal" looks like.
            return self._scores(0.0)
        worst = 0.0
        for channel, (centre, half_width) in zip(window, self._band, strict=True):
            lo, hi = min(channel), max(channel)
            worst = max(worst, abs(hi - centre) / half_width, abs(lo - centre) / half_width)
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
            band = []
            for lo, hi, total, count in zip(self._mins, self._maxs, self._sums, self._counts, strict=True):
                mean = total / count
                # Floor: a constant channel (spread 0) would otherwise flag any change at all.
                spread = max(hi - lo, 1e-3 * max(1.0, abs(mean)))
                band_lo, band_hi = lo - self.k * spread, hi + self.k * spread
                band.append(((band_lo + band_hi) / 2, (band_hi - band_lo) / 2))
            self._band = band

    def _scores(self, distance: float) -> tuple[str, dict[str, float]]:
        anomaly = distance / (1.0 + distance)
        label = self.anomaly_label if distance > 1.0 else self.normal_label
        return label, {self.normal_label: 1.0 - anomaly, self.anomaly_label: anomaly}


def band_model_factory(
    *, baseline_windows: int, k: float, normal_label: str, anomaly_label: str
) -> LensModelFactory:
    def make() -> LensModel:
        return BandModel(
            baseline_windows=baseline_windows, k=k, normal_label=normal_label, anomaly_label=anomaly_label
        )

    return make
