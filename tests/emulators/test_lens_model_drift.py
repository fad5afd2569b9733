"""The emulated lens over long runs of the bench simulator: its normal drift (temp_c swings 1.5 degC over
15 min) is never a fault, and the injected faults are, early in a run and after the band has followed
the drift. In process and fast: the simulator's lines are played without real time and cut into
windows the way the demo's agent does (50 samples at 50 lines/s: one window a second)."""

from __future__ import annotations

import pytest

from edge_agent.bench_sim.model import DEFAULT_CHANNELS, BenchModel
from edge_agent.bench_sim.outputs import Write, WriteKind
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.scenario import FaultSpec, Scenario
from edge_agent.demo import RATE
from edge_agent.emulators.lens_model import BandModel

WINDOW = 50  # the demo's [lens] window_size (= step_size)
TWO_TEMP_PERIODS = 2 * max(c.drift_period_s for c in DEFAULT_CHANNELS if c.name == "temp_c")


def windows(scenario: Scenario, seed: int) -> list[tuple[float, list[list[float]]]]:
    """(start time in s, channel-first window) for every full window of the scenario's sample lines."""
    player = ScenarioPlayer(scenario, BenchModel(seed), RATE, seed)
    rows: list[list[float]] = []
    while (due := player.next_due()) is not None:
        for out in player.advance(due):
            if isinstance(out, Write) and out.kind is WriteKind.SAMPLE:
                rows.append([float(field) for field in out.data.decode().split(",")])
    return [
        (
            rows[i][0] / 1000.0,
            [list(column) for column in zip(*(row[1:] for row in rows[i : i + WINDOW]), strict=True)],
        )
        for i in range(0, len(rows) - WINDOW + 1, WINDOW)
    ]


@pytest.mark.parametrize("seed", [0, 7])
def test_normal_drift_over_two_periods_is_never_a_fault(seed: int) -> None:
    run = windows(Scenario(name="normal", duration=TWO_TEMP_PERIODS + 120.0), seed)
    assert run[-1][0] >= TWO_TEMP_PERIODS  # 32 simulated minutes, both temp_c swings up and down
    model = BandModel()  # the emulator's defaults: 5 baseline windows, k = 4
    labels = [model.classify(window)[0] for _, window in run]
    assert labels.count("fault") == 0


# The demo's level faults (edge_agent/bench_sim/scenario.py `_demo`) and the soak's fast drift, each once
# early (the band is still the baseline's) and once late (the band has followed 30 min of drift). A
# stuck sensor stays inside the band: not the lens's fault to see (the demo's stuck rule sees it).
KINDS = [
    ("step", "supply_v", 4.0, 1.8),  # the demo's over-voltage
    ("spike", "vibration_g", 0.0, 1.5),
    ("drift", "temp_c", 8.0, 20.0),
    ("step", "supply_v", 60.0, 1.8),  # a long one: its windows are never learned as normal
]


def _faults(offset: float) -> list[FaultSpec]:
    return [
        FaultSpec(
            kind=kind, channel=channel, start=offset + 80.0 * i + 0.5, duration=duration, magnitude=size
        )
        for i, (kind, channel, duration, size) in enumerate(KINDS)
    ]


def test_every_injected_fault_kind_is_a_fault_early_and_after_the_band_has_drifted() -> None:
    early, late = _faults(40.0), _faults(TWO_TEMP_PERIODS)
    scenario = Scenario(name="faults", duration=TWO_TEMP_PERIODS + 80.0 * len(KINDS), faults=early + late)
    period = 1.0 / RATE
    model = BandModel()
    verdicts = []
    for start, window in windows(scenario, seed=3):
        end = start + WINDOW * period
        overlapping = [f for f in scenario.faults if f.start < end and f.end(period) > start]
        label = model.classify(window)[0]
        verdicts.append((start, end, overlapping, label))
    assert not [v for v in verdicts if not v[2] and v[3] == "fault"]  # no false fault, early or late
    for fault in scenario.faults:
        # A spike is one sample: its window. Otherwise the windows wholly inside the fault.
        inside = [
            label
            for start, end, overlapping, label in verdicts
            if fault in overlapping
            and (fault.kind == "spike" or (fault.start <= start and end <= fault.end(period)))
        ]
        assert inside and set(inside) == {"fault"}, (fault.kind, fault.start, inside)
