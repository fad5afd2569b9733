"""A recording's rows on the source's timeline: the time every rule, tick and incident window runs on.

`edge-agent run` stamps each frame on its source's timeline (`edge_agent.serial.clock`): with a device
time field, t = device seconds + an offset fixed at the first frame; a device time that goes back is a
clock step (the timeline holds at the previous t and re-anchors); a frame without a usable device time
takes the host time elapsed since the previous frame. The backtest stamps the rows as that clock stamps
a replay of the recording at 1x (the host time between rows is the device time between them, a row
that goes back or has no time arrives at once), with the host clock starting at 0 at the first row:

- `t = 0` at the first row; then `t = device * scale + offset` with `offset = -(first device * scale)`;
- a device time below the previous one: t holds (`t = previous t`) and the offset re-anchors there;
- a row without a usable device time (missing, NaN, inf): t holds.

t never decreases. Without a time column, `RateTimeline` places data row n at `(n - 1) / rate`.

Vectorised per block; a block with a step or a missing time goes sample by sample (the rule above,
written once in `_stamp_one`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def unit_scale(column: str, unit: str | None) -> float:
    """Seconds per unit of a device time column: `unit` (s, ms, us, ns), or read from the column name's
    suffix (`t_ms`, `time_s`, ...). ValueError saying what to set when neither tells."""
    if unit is not None and unit != "auto":
        if unit not in UNIT_SECONDS:
            raise ValueError(f"unknown time unit {unit!r} (use s, ms, us or ns)")
        return UNIT_SECONDS[unit]
    suffix = column.rsplit("_", 1)[-1].lower() if "_" in column else ""
    if suffix in UNIT_SECONDS:
        return UNIT_SECONDS[suffix]
    raise ValueError(
        f"the unit of time column {column!r} cannot be told from its name (no _s, _ms, _us or _ns"
        " suffix): give it with --time-unit"
    )


class DeviceTimeline:
    """Stamps blocks of device times (in the column's units) onto the timeline, carrying its state."""

    __slots__ = ("_last_dev", "_last_t", "_offset", "missing", "scale", "steps_back")

    def __init__(self, scale: float) -> None:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be > 0 seconds per unit, not {scale!r}")
        self.scale = scale
        self._last_t = -math.inf
        self._last_dev: float | None = None
        self._offset = 0.0
        self.steps_back = 0  # rows whose device time went back: held
        self.missing = 0  # rows without a usable device time: held

    def stamp(self, device: Floats) -> Floats:
        if device.size == 0:
            return np.empty(0)
        if self._last_dev is None and math.isfinite(device[0]):  # the first row anchors the timeline
            first = self._stamp_one(float(device[0]))
            return np.concatenate(([first], self.stamp(device[1:])))
        last_dev = self._last_dev
        regular = (
            last_dev is not None
            and bool(np.isfinite(device).all())
            and device[0] >= last_dev
            and bool((device[1:] >= device[:-1]).all())
        )
        if not regular:
            return np.fromiter((self._stamp_one(float(d)) for d in device), np.float64, device.size)
        t = device * self.scale + self._offset
        np.maximum(t, self._last_t, out=t)
        self._last_t = float(t[-1])
        self._last_dev = float(device[-1])
        return t

    def _stamp_one(self, device: float) -> float:
        last_t = self._last_t
        held = 0.0 if last_t == -math.inf else last_t
        if not math.isfinite(device):
            self.missing += 1
            t = held
        elif self._last_dev is None:
            self._offset = 0.0 - device * self.scale
            t = held
            self._last_dev = device
        elif device < self._last_dev:
            self.steps_back += 1
            t = held
            self._offset = t - device * self.scale
            self._last_dev = device
        else:
            t = device * self.scale + self._offset
            if t < last_t:
                t = last_t
            self._last_dev = device
        self._last_t = t
        return t


class RateTimeline:
    """No time column: data row n (1-based, bad rows counted) at `(n - 1) / rate` seconds."""

    __slots__ = ("rate",)

    def __init__(self, rate: float) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0 rows per second, not {rate!r}")
        self.rate = rate

    def stamp_rows(self, rows: npt.NDArray[np.int64]) -> Floats:
        return (rows - 1) / self.rate
