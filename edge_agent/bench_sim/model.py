"""The healthy bench: a handful of channels with plausible values and seeded noise.

Pure: `values(t, baselines)` gives the channel values at scenario time `t`. Each call draws exactly
one Gaussian per channel from the model's own RNG, in channel order, so two models with the same
seed give the same values whatever faults are applied on top (faults never touch this RNG).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A sensor channel: nominal value, noise (std dev), printed decimals and a slow sinusoidal
    drift (amplitude, period) such as a bench warming up and cooling with the room."""

    name: str
    nominal: float
    noise: float
    decimals: int
    drift_amplitude: float = 0.0
    drift_period_s: float = 600.0


DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("supply_v", 12.0, 0.015, 3),
    ChannelSpec("current_a", 1.5, 0.01, 3),
    ChannelSpec("temp_c", 35.0, 0.03, 2, drift_amplitude=1.5, drift_period_s=900.0),
    ChannelSpec("vibration_g", 0.05, 0.01, 4),
    ChannelSpec("pressure_kpa", 101.3, 0.05, 2, drift_amplitude=0.2, drift_period_s=1800.0),
)
TIME_COLUMN = "t_ms"


class BenchModel:
    def __init__(self, seed: int, channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS) -> None:
        self.channels = tuple(channels)
        self.names = tuple(c.name for c in self.channels)
        self.index = {name: i for i, name in enumerate(self.names)}
        self._rng = random.Random(f"bench-{seed}")
        self._nominal = [c.nominal for c in self.channels]

    def header(self) -> bytes:
        return (",".join((TIME_COLUMN, *self.names)) + "\n").encode()

    def values(self, t: float, baselines: Mapping[int, float] | None = None) -> list[float]:
        """Channel values at `t`; `baselines` overrides some nominal values (by channel index)."""
        gauss = self._rng.gauss
        out = []
        for i, spec in enumerate(self.channels):
            base = self._nominal[i] if baselines is None else baselines.get(i, self._nominal[i])
            if spec.drift_amplitude:
                base += spec.drift_amplitude * math.sin(2.0 * math.pi * t / spec.drift_period_s)
            out.append(base + gauss(0.0, spec.noise))
        return out
