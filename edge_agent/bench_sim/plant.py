"""Long recordings of a plant that looks real: a pump skid's 10 sensors, normal for a day or with one fault.

What a statistical rule meets on a real plant, and what these recordings therefore hold (all seeded):
- heavy-tailed noise: Student-t (3 to 5 degrees of freedom) on the electrical and mechanical channels;
- slow drift: a linear trend per day, a 24 h ambient cycle, and a shared load that wanders (an
  Ornstein-Uhlenbeck process, ~20 min correlation time);
- correlated channels: flow, pressures, current, speed and vibration all follow that load, and the
  motor temperature follows it through a 10 min thermal lag;
- single-sample spikes: a few per hour on current, vibration and flow (EMI, a loose connector);
- quantised sensors: values on the sensor's grid (0.5 kPa, 0.1/0.5 degC, 1 rpm, 10 mV, 1 %), so
  long runs of identical values and a median absolute deviation of 0;
- a maintenance stop: a gap of 30-90 min in the data, after which some channels sit at a new level
  (bearing re-greased: cooler and quieter; oil topped up; a valve re-seated).

`normal(seed)` is the normal day; `pump_fault(seed)` a shorter run with one physical fault (cavitation:
7 channels move at once, some at once and some slowly), precursor spikes before it and a restart
transient after it, with its exact rows in `PlantRecording.fault` (the oracle tests and benchmarks
check detection against). Values are rounded to the decimals the CSV prints, so a recording fed to
the detector directly and one replayed through `edge-agent simulate --replay` are the same numbers.

Pure and fast: columns are built with `random.Random` streams of their own (one per channel, so a
channel's values do not depend on which other channels exist), ~1.5 s for 24 h at 1 Hz x 10 channels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIME_COLUMN = "t_ms"
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class PlantChannel:
    """One sensor. `noise` is the scale of its Student-t noise (`dof` degrees of freedom; None = Gaussian),
    `load` how many units it moves per unit of the shared load (a unit-variance process), `lag_s` a
    first-order lag on that load (thermal inertia), `trend_per_day` a linear drift, `daily` the
    amplitude of a 24 h cycle, `quantum` the sensor's grid (0 = continuous), `spikes_per_h` the rate of
    single-sample spikes of `spike_size` noise scales (x 1..3), `after_maintenance` the level change."""

    name: str
    level: float
    noise: float
    decimals: int
    dof: float | None = None
    load: float = 0.0
    lag_s: float = 0.0
    trend_per_day: float = 0.0
    daily: float = 0.0
    quantum: float = 0.0
    spikes_per_h: float = 0.0
    spike_size: float = 0.0
    spike_sign: float = 0.0  # +1 / -1: spikes go one way only
    minimum: float = -math.inf  # what the sensor cannot read below (a vibration level is never < 0)
    after_maintenance: float = 0.0


PUMP_CHANNELS: tuple[PlantChannel, ...] = (
    PlantChannel("flow_m3h", 120.0, 0.35, 2, dof=5, load=2.5, spikes_per_h=0.5, spike_size=12),
    PlantChannel("discharge_kpa", 450.0, 0.6, 1, dof=4, load=6.0, quantum=0.5, after_maintenance=4.0),
    PlantChannel("suction_kpa", 95.0, 0.25, 2, load=-0.8, daily=0.6),
    PlantChannel("motor_current_a", 32.0, 0.08, 2, dof=3, load=0.7, spikes_per_h=2.0, spike_size=15),
    PlantChannel("motor_temp_c", 68.0, 0.03, 1, load=1.5, lag_s=600.0, daily=1.5, quantum=0.1),
    PlantChannel("bearing_temp_c", 55.0, 0.08, 1, trend_per_day=1.2, daily=1.0, quantum=0.5,
                 after_maintenance=-3.0),
    PlantChannel("vibration_mm_s", 2.8, 0.07, 3, dof=3, load=0.15, spikes_per_h=4.0, spike_size=12,
                 spike_sign=1.0, minimum=0.0, after_maintenance=-0.5),
    PlantChannel("speed_rpm", 1480.0, 0.6, 0, load=0.5, quantum=1.0),  # slip follows the load: ~2 % of 20 rpm
    PlantChannel("supply_v", 24.0, 0.004, 2, daily=0.01, quantum=0.01),
    PlantChannel("oil_level_pct", 82.0, 0.15, 0, trend_per_day=-1.5, quantum=1.0, after_maintenance=6.0),
)  # fmt: skip
LOAD_TAU_S = 1200.0  # correlation time of the shared load


@dataclass(frozen=True, slots=True)
class FaultOracle:
    """Where the injected fault is, in rows of the recording (0-based, `end_row` exclusive) and in
    device time (ms). `channels` are the channels it moves; `precursor_rows` the rows of the
    single-sample spikes before it (channel, row); `transient_end_row` where the restart transient
    after it has died out (exclusive)."""

    onset_row: int
    end_row: int
    onset_ms: int
    end_ms: int
    channels: tuple[str, ...]
    precursor_rows: tuple[tuple[str, int], ...]
    transient_end_row: int

    def record(self) -> dict[str, Any]:
        return {
            "record": "fault", "id": "pump-fault", "kind": "multi", "channels": list(self.channels),
            "onset_row": self.onset_row, "end_row": self.end_row, "start_device_ms": self.onset_ms,
            "end_device_ms": self.end_ms, "precursors": [list(p) for p in self.precursor_rows],
            "transient_end_row": self.transient_end_row, "expect_anomaly": True, "severity": "high",
            "expect_lens_label": "fault",
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlantRecording:
    """A recording as columns: `t_ms[i]` is row i's device time; `columns[name][i]` its value."""

    t_ms: list[int]
    columns: dict[str, list[float]]
    decimals: dict[str, int]
    maintenance: tuple[int, int] | None = None  # (ms when the gap starts, ms when data resumes)
    fault: FaultOracle | None = None
    seed: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(self.t_ms)

    def lines(self) -> Iterator[str]:
        """The CSV text, line by line (header first)."""
        names = self.names
        yield ",".join((TIME_COLUMN, *names)) + "\n"
        fmt = ",".join(["{}"] + [f"{{:.{self.decimals[n]}f}}" for n in names]) + "\n"
        cols = [self.columns[n] for n in names]
        for i, t in enumerate(self.t_ms):
            yield fmt.format(t, *(c[i] for c in cols))

    def write_csv(self, path: Path) -> None:
        with path.open("w", encoding="utf-8", newline="") as out:
            out.writelines(self.lines())

    def oracle_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        if self.maintenance is not None:
            start, end = self.maintenance
            records.append({
                "record": "maintenance", "start_device_ms": start, "end_device_ms": end,
                "expect_anomaly": False,
            })  # fmt: skip
        if self.fault is not None:
            records.append(self.fault.record())
        return records


def _student_t(rng: random.Random, dof: float | None, n: int) -> list[float]:
    gauss = rng.gauss
    if dof is None:
        return [gauss(0.0, 1.0) for _ in range(n)]
    gamma = rng.gammavariate
    half = dof / 2.0  # chi2(dof) = Gamma(dof / 2, 2); t = Z / sqrt(chi2 / dof)
    return [gauss(0.0, 1.0) / math.sqrt(gamma(half, 2.0) / dof) for _ in range(n)]


def _load(rng: random.Random, times: Sequence[float]) -> list[float]:
    """A unit-variance Ornstein-Uhlenbeck process sampled at `times` (exact for any spacing)."""
    out = []
    x = rng.gauss(0.0, 1.0)
    prev = times[0] if times else 0.0
    gauss = rng.gauss
    for t in times:
        phi = math.exp(-(t - prev) / LOAD_TAU_S)
        x = phi * x + math.sqrt(1.0 - phi * phi) * gauss(0.0, 1.0)
        out.append(x)
        prev = t
    return out


def _lagged(values: Sequence[float], times: Sequence[float], tau: float) -> list[float]:
    out = []
    y = values[0] if values else 0.0
    prev = times[0] if times else 0.0
    for x, t in zip(values, times, strict=True):
        a = math.exp(-(t - prev) / tau)
        y = a * y + (1.0 - a) * x
        out.append(y)
        prev = t
    return out


def _channel(
    spec: PlantChannel, seed: int, times: Sequence[float], load: Sequence[float], step_at: float | None
) -> list[float]:
    rng = random.Random(f"plant-{seed}-{spec.name}")
    n = len(times)
    noise = _student_t(rng, spec.dof, n)
    driver = _lagged(load, times, spec.lag_s) if spec.lag_s else load
    two_pi_day = 2.0 * math.pi / DAY_S
    phase = rng.uniform(0.0, 2.0 * math.pi)
    values = [
        spec.level + spec.noise * e + spec.load * ld + spec.trend_per_day * t / DAY_S
        + spec.daily * math.sin(two_pi_day * t + phase)
        for e, ld, t in zip(noise, driver, times, strict=True)
    ]  # fmt: skip
    if step_at is not None and spec.after_maintenance:
        first = next((i for i, t in enumerate(times) if t >= step_at), n)
        for i in range(first, n):
            values[i] += spec.after_maintenance
    if spec.spikes_per_h and n:
        hours = (times[-1] - times[0]) / 3600.0
        count = _poisson(rng, spec.spikes_per_h * hours)
        for _ in range(count):
            i = rng.randrange(n)
            sign = spec.spike_sign or rng.choice((-1.0, 1.0))
            values[i] += sign * spec.spike_size * spec.noise * rng.uniform(1.0, 3.0)
    return _print(spec, values)


def _print(spec: PlantChannel, values: list[float]) -> list[float]:
    """Onto the sensor's grid, then to the decimals the CSV prints (what a decoder would read back)."""
    d = spec.decimals
    if spec.minimum > -math.inf:
        values = [max(v, spec.minimum) for v in values]
    if spec.quantum:
        q = spec.quantum
        return [round(round(v / q) * q, d) for v in values]
    return [round(v, d) for v in values]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method in chunks of 500 keeps exp(-mean) away from underflow for long recordings.
    count = 0
    while mean > 0:
        chunk = min(mean, 500.0)
        limit, p = math.exp(-chunk), rng.random()
        while p > limit:
            count += 1
            p *= rng.random()
        mean -= chunk
    return count


def _times(duration_s: float, rate: float, gap: tuple[float, float] | None) -> list[float]:
    n = int(duration_s * rate)
    times = [i / rate for i in range(n)]
    if gap is None:
        return times
    start, end = gap
    return [t for t in times if not start <= t < end]


def normal(
    seed: int,
    hours: float = 24.0,
    rate: float = 1.0,
    channels: Sequence[PlantChannel] = PUMP_CHANNELS,
    maintenance: bool = True,
) -> PlantRecording:
    """`hours` of normal operation at `rate` rows/s; with `maintenance`, one stop of 30-90 min that
    starts between 35 % and 65 % of the run, after which the channels' levels change."""
    if not (rate > 0 and hours > 0):
        raise ValueError("rate and hours must be > 0")
    rng = random.Random(f"plant-{seed}")
    duration = hours * 3600.0
    gap: tuple[float, float] | None = None
    if maintenance:
        start = round(rng.uniform(0.35, 0.65) * duration)
        gap = (float(start), float(start + round(rng.uniform(1800.0, 5400.0))))
    times = _times(duration, rate, gap)
    load = _load(rng, times)
    step_at = gap[1] if gap is not None else None
    columns = {spec.name: _channel(spec, seed, times, load, step_at) for spec in channels}
    return PlantRecording(
        t_ms=[round(t * 1000.0) for t in times],
        columns=columns,
        decimals={spec.name: spec.decimals for spec in channels},
        maintenance=(round(gap[0] * 1000.0), round(gap[1] * 1000.0)) if gap is not None else None,
        seed=seed,
        notes={"hours": hours, "rate": rate},
    )


# The fault: the pump loses its prime (a clogged suction strainer, then cavitation). What moves, by how
# much (in units), and how fast (seconds to reach the full change; 0 = at once). A breakdown: flow
# falls by more than half, the pressures collapse, the motor unloads (its current drops towards
# the no-load current, its speed rises towards synchronous), the pump shakes; the bearing heats up
# slowly, so a band sees it later than the others.
FAULT_EFFECTS: dict[str, tuple[float, float]] = {
    "suction_kpa": (-20.0, 0.0),
    "flow_m3h": (-70.0, 0.0),
    "discharge_kpa": (-150.0, 0.0),
    "motor_current_a": (-12.0, 0.0),
    "vibration_mm_s": (4.5, 0.0),
    "speed_rpm": (18.0, 0.0),
    "bearing_temp_c": (9.0, 240.0),
}
# Restart after the fault: (overshoot in units at the first row, decay time constant in s).
RESTART_TRANSIENT: dict[str, tuple[float, float]] = {
    "motor_current_a": (9.0, 8.0),
    "discharge_kpa": (30.0, 15.0),
    "flow_m3h": (10.0, 15.0),
    "speed_rpm": (-25.0, 6.0),
    "vibration_mm_s": (2.0, 10.0),
}
PRECURSORS: tuple[str, ...] = ("vibration_mm_s", "motor_current_a")


def pump_fault(
    seed: int,
    lead_in_s: float = 4 * 3600.0,  # the baseline rule's 3 h warm-up, then 1 h judged before the fault
    fault_s: float = 600.0,
    tail_s: float = 1800.0,
    rate: float = 1.0,
    precursor_s: float = 600.0,
    precursor_count: int = 6,
    channels: Sequence[PlantChannel] = PUMP_CHANNELS,
) -> PlantRecording:
    """Normal data for `lead_in_s`, then the fault for `fault_s` (channels of `FAULT_EFFECTS`), then a
    restart transient and normal data for `tail_s`. In the `precursor_s` before the onset,
    `precursor_count` single-sample spikes land on the `PRECURSORS` channels. No maintenance stop."""
    if not (rate > 0 and lead_in_s > precursor_s >= 0 and fault_s > 0 and tail_s >= 0):
        raise ValueError("need rate > 0, lead_in_s > precursor_s >= 0, fault_s > 0, tail_s >= 0")
    base = normal(seed, hours=(lead_in_s + fault_s + tail_s) / 3600.0, rate=rate, channels=channels,
                  maintenance=False)  # fmt: skip
    rng = random.Random(f"plant-fault-{seed}")
    times = [t / 1000.0 for t in base.t_ms]
    onset = next(i for i, t in enumerate(times) if t >= lead_in_s)
    end = next((i for i, t in enumerate(times) if t >= lead_in_s + fault_s), len(times))
    scales = {spec.name: spec for spec in channels}
    columns = {name: list(values) for name, values in base.columns.items()}
    for name, (change, ramp) in FAULT_EFFECTS.items():
        if name not in columns:
            continue
        col = columns[name]
        for i in range(onset, end):
            share = 1.0 if ramp <= 0 else min(1.0, (times[i] - times[onset]) / ramp)
            col[i] += change * share
    transient_end = end
    for name, (overshoot, tau) in RESTART_TRANSIENT.items():
        if name not in columns:
            continue
        col = columns[name]
        for i in range(end, len(times)):
            age = times[i] - times[end]
            if age > 8.0 * tau:
                break
            col[i] += overshoot * math.exp(-age / tau)
            transient_end = max(transient_end, i + 1)
    precursors: list[tuple[str, int]] = []
    first = next(i for i, t in enumerate(times) if t >= lead_in_s - precursor_s)
    for _ in range(precursor_count):
        name = rng.choice([c for c in PRECURSORS if c in columns])
        row = rng.randrange(first, onset)
        columns[name][row] += 25.0 * scales[name].noise * rng.uniform(1.0, 2.0)
        precursors.append((name, row))
    for name in columns:
        columns[name] = _print(scales[name], columns[name])
    oracle = FaultOracle(
        onset_row=onset, end_row=end, onset_ms=base.t_ms[onset], end_ms=base.t_ms[end - 1],
        channels=tuple(n for n in FAULT_EFFECTS if n in columns),
        precursor_rows=tuple(sorted(precursors, key=lambda p: p[1])), transient_end_row=transient_end,
    )  # fmt: skip
    return PlantRecording(
        t_ms=base.t_ms, columns=columns, decimals=base.decimals, fault=oracle, seed=seed,
        notes={"lead_in_s": lead_in_s, "fault_s": fault_s, "tail_s": tail_s, "rate": rate},
    )  # fmt: skip
