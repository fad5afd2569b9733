"""The plant recordings: deterministic per seed, with the properties of real plant data they claim
(heavy tails, drift, correlated channels, spikes, quantised sensors, a maintenance step), the fault's
oracle, and a CSV that the replay, the serial decoder and the lens emulator's model all read."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from edge_agent.bench_sim import plant
from edge_agent.bench_sim.replay import ReplayPlayer
from edge_agent.config import SerialPort
from edge_agent.emulators.lens_model import BandModel
from edge_agent.frames import Frame
from edge_agent.serial.decoders import make_decoder


@cache
def day(seed: int = 0) -> plant.PlantRecording:
    return plant.normal(seed)


@cache
def fault(seed: int = 0) -> plant.PlantRecording:
    return plant.pump_fault(seed)


def test_same_seed_same_recording_other_seed_other_recording() -> None:
    a, b, c = plant.normal(7, hours=1.5), plant.normal(7, hours=1.5), plant.normal(8, hours=1.5)
    assert a.t_ms == b.t_ms and a.columns == b.columns and a.maintenance == b.maintenance
    assert a.columns != c.columns
    assert (
        plant.pump_fault(3, lead_in_s=1200, precursor_s=600).columns
        == plant.pump_fault(3, lead_in_s=1200, precursor_s=600).columns
    )


def test_a_channel_does_not_depend_on_which_other_channels_exist() -> None:
    few = plant.normal(5, hours=1.0, channels=plant.PUMP_CHANNELS[:2])
    full = plant.normal(5, hours=1.0)
    assert few.columns["flow_m3h"] == full.columns["flow_m3h"]


def test_a_day_is_24_h_at_1_hz_of_10_channels_with_one_maintenance_stop() -> None:
    rec = day()
    assert len(rec.names) == 10 and all(len(col) == len(rec) for col in rec.columns.values())
    assert rec.maintenance is not None
    start, end = rec.maintenance
    assert 30 * 60_000 <= end - start <= 90 * 60_000
    gaps = [(a, b) for a, b in zip(rec.t_ms, rec.t_ms[1:], strict=False) if b - a != 1000]
    assert gaps == [(start - 1000, end)]  # one stop, 1 s between all other rows
    assert len(rec) == 86_400 - (end - start) // 1000 and rec.t_ms[0] == 0 and rec.t_ms[-1] == 86_399_000


def _around_the_stop(rec: plant.PlantRecording, name: str) -> tuple[float, float]:
    assert rec.maintenance is not None
    start, end = rec.maintenance
    before = [v for t, v in zip(rec.t_ms, rec.columns[name], strict=True) if start - 1_800_000 <= t < start]
    after = [v for t, v in zip(rec.t_ms, rec.columns[name], strict=True) if end <= t < end + 1_800_000]
    return statistics.median(before), statistics.median(after)


def test_levels_step_after_the_maintenance_stop() -> None:
    rec = day()
    oil_before, oil_after = _around_the_stop(rec, "oil_level_pct")
    bearing_before, bearing_after = _around_the_stop(rec, "bearing_temp_c")
    assert oil_after - oil_before == pytest.approx(6.0, abs=1.0)
    assert bearing_after - bearing_before == pytest.approx(-3.0, abs=1.1)


@pytest.mark.parametrize(
    ("name", "grid", "coarse"),
    [("discharge_kpa", 0.5, False), ("motor_temp_c", 0.1, True), ("bearing_temp_c", 0.5, True),
     ("speed_rpm", 1.0, False), ("supply_v", 0.01, True), ("oil_level_pct", 1.0, True)],
)  # fmt: skip
def test_quantised_sensors_sit_on_their_grid_with_long_runs(name: str, grid: float, coarse: bool) -> None:
    column = day().columns[name]
    assert all(abs(v / grid - round(v / grid)) < 1e-6 for v in column)
    repeats = sum(1 for a, b in itertools.pairwise(column) if a == b) / len(column)
    assert repeats > 0.15
    if coarse:  # a grid coarser than the noise: most minute-long blocks have MAD = 0
        blocks = [column[i : i + 60] for i in range(0, len(column) - 60, 60)]
        mad_zero = sum(1 for b in blocks if statistics.median(abs(x - statistics.median(b)) for x in b) == 0)
        assert mad_zero > len(blocks) / 2


def test_heavy_tails_spikes_wander_and_correlation() -> None:
    rec = day()
    current = rec.columns["motor_current_a"]
    steps = [b - a for a, b in itertools.pairwise(current)]
    sigma = 1.4826 * statistics.median(abs(s) for s in steps)
    # Beyond 8 robust sigmas: a Gaussian would give ~1e-15 of 86,000 samples; Student-t(3) gives many.
    assert sum(1 for s in steps if abs(s) > 8 * sigma) > 100
    vibration = rec.columns["vibration_mm_s"]
    spikes = [
        i for i in range(1, len(vibration) - 1)
        if vibration[i] - max(vibration[i - 1], vibration[i + 1]) > 12 * 0.07
    ]  # fmt: skip
    assert len(spikes) >= 40 and min(vibration) >= 0.0  # ~4 an hour; a vibration level is never < 0
    motor = rec.columns["motor_temp_c"]
    assert max(motor) - min(motor) > 3.0  # the load and the day move a quiet channel by degrees
    flow, discharge = rec.columns["flow_m3h"], rec.columns["discharge_kpa"]
    assert statistics.correlation(flow, discharge) > 0.8  # the shared load


def test_the_fault_oracle_and_what_the_fault_does() -> None:
    rec = fault()
    oracle = rec.fault
    assert oracle is not None and len(oracle.channels) >= 6
    assert oracle.onset_row == 4 * 3600 and oracle.end_row - oracle.onset_row == 600
    assert rec.t_ms[oracle.onset_row] == oracle.onset_ms and rec.t_ms[oracle.end_row - 1] == oracle.end_ms
    assert len(oracle.precursor_rows) == 6
    assert all(oracle.onset_row - 600 <= row < oracle.onset_row for _, row in oracle.precursor_rows)
    assert oracle.transient_end_row > oracle.end_row
    for name in oracle.channels:
        column = rec.columns[name]
        before = statistics.median(column[oracle.onset_row - 1800 : oracle.onset_row])
        during = statistics.median(column[oracle.end_row - 60 : oracle.end_row])
        day_range = max(day().columns[name]) - min(day().columns[name])
        # Every fault channel ends up further from its level than much of a normal day's range.
        assert abs(during - before) > 0.4 * day_range, name
    current = rec.columns["motor_current_a"]
    assert current[oracle.end_row] - statistics.median(current[: oracle.onset_row]) > 5.0  # restart inrush
    record = oracle.record()
    assert record["channels"] == list(oracle.channels) and record["expect_lens_label"] == "fault"
    json.dumps(rec.oracle_records())


def test_the_lens_emulator_labels_the_fault_and_not_the_hour_before() -> None:
    rec = fault()
    oracle = rec.fault
    assert oracle is not None
    lens_channels = ["flow_m3h", "discharge_kpa", "vibration_mm_s"]
    model = BandModel(baseline_windows=5, k=4.0)
    first = oracle.onset_row - 3600
    labels: list[tuple[int, str]] = []
    for start in range(first, oracle.end_row - 50, 50):
        window = [rec.columns[c][start : start + 50] for c in lens_channels]
        labels.append((start, model.classify(window)[0]))
    normal_hour = [label for start, label in labels if start + 50 <= oracle.onset_row - 600]
    during = [label for start, label in labels if start >= oracle.onset_row]
    assert normal_hour and set(normal_hour) == {"normal"}
    assert during and set(during) == {"fault"}


def test_the_csv_replays_and_decodes_to_the_same_numbers(tmp_path: Path) -> None:
    rec = plant.normal(2, hours=0.5)
    path = tmp_path / "day.csv"
    rec.write_csv(path)
    player = ReplayPlayer(lambda: path.read_bytes().splitlines(keepends=True), speed=1000.0)
    assert player.time_column == "t_ms"
    writes = []
    while (due := player.next_due()) is not None:
        writes += player.advance(due)
    assert player.stats()["rows"] == len(rec) and player.stats()["malformed"] == 0
    decoder = make_decoder(SerialPort(name="plant", url="loop://", device_time="t_ms"))
    frames = [
        d for d in decoder.feed(b"".join(w.data for w in writes), 0.0, 0.0) if isinstance(d, Frame)
    ]  # fmt: skip
    assert len(frames) == len(rec)
    for i in (0, 1, len(rec) // 2, len(rec) - 1):
        assert frames[i].values == {n: rec.columns[n][i] for n in rec.names}
        assert frames[i].device_time == rec.t_ms[i]


def test_simulate_writes_a_recording_and_its_oracle(tmp_path: Path) -> None:
    out, oracle = tmp_path / "fault.csv", tmp_path / "fault.jsonl"
    command = [sys.executable, "-m", "edge_agent", "simulate", "--write", "plant-fault", "--out", str(out),
               "--oracle", str(oracle), "--seed", "4", "--lead-in", "1200", "--rate", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    expected = plant.pump_fault(4, lead_in_s=1200, precursor_s=600, rate=2.0)
    assert lines[1:] == [line.rstrip("\n") for line in list(expected.lines())[1:]]
    assert len(lines) == len(expected) + 1 and lines[0].startswith("t_ms,flow_m3h,")
    (record,) = [json.loads(line) for line in oracle.read_text().splitlines()]
    assert record["onset_row"] == expected.fault.onset_row if expected.fault else False
    missing = subprocess.run(command[:6], capture_output=True, text=True, timeout=60, check=False)  # no --out
    assert missing.returncode == 2 and "--write needs --out FILE" in missing.stderr
