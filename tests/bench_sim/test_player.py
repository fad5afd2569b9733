"""The sans-I/O scenario player: determinism, each fault kind, markers, oracle records, unplug feed."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest

from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.outputs import LinkChange, OracleEntry, Output, Write, WriteKind
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.scenario import FaultSpec, Scenario, ScenarioError, StepSpec, load_scenario, soak
from edge_agent.config import DEFAULT_MARKER_REGEX

RATE = 50.0
COLUMNS = ["t_ms", "supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"]


def play(scenario: Scenario, seed: int = 7, **kwargs: Any) -> list[Output]:
    model = BenchModel(seed)
    feed = Feed(ScenarioPlayer(scenario, model, RATE, seed, **kwargs), model.header())
    outputs: list[Output] = []
    for _ in range(100_000):  # bounded: every scenario here ends
        due = feed.next_due()
        if due is None:
            return outputs
        outputs += feed.advance(due + 0.25)
    raise AssertionError("the scenario never ended")


def writes(outputs: list[Output], kind: WriteKind) -> list[bytes]:
    return [o.data for o in outputs if isinstance(o, Write) and o.kind is kind]


def samples(outputs: list[Output]) -> dict[int, list[str]]:
    """t_ms -> the other fields, as printed."""
    rows = {}
    for line in writes(outputs, WriteKind.SAMPLE):
        fields = line.decode().rstrip("\n").split(",")
        rows[int(fields[0])] = fields[1:]
    return rows


def records(outputs: list[Output], kind: str) -> list[dict[str, Any]]:
    return [o.record for o in outputs if isinstance(o, OracleEntry) and o.record["record"] == kind]


def with_fault(fault: FaultSpec, length: float = 4.0) -> tuple[Scenario, Scenario]:
    base = Scenario(name="t", duration=length, steps=[StepSpec(name="s1", start=0.5, duration=3.0)])
    return base, base.model_copy(update={"faults": [fault]})


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    demo = load_scenario("demo")
    first, again, other = play(demo, seed=3), play(demo, seed=3), play(demo, seed=4)
    assert [o for o in first if isinstance(o, Write)] == [o for o in again if isinstance(o, Write)]
    assert writes(first, WriteKind.SAMPLE) != writes(other, WriteKind.SAMPLE)


def test_header_then_rate_spaced_plausible_samples() -> None:
    out = play(load_scenario("clean"))
    assert writes(out, WriteKind.HEADER) == [(",".join(COLUMNS) + "\n").encode()]
    assert isinstance(out[0], Write) and out[0].kind is WriteKind.HEADER
    rows = samples(out)
    times = sorted(rows)
    assert len(times) == 24 * RATE
    assert {b - a for a, b in itertools.pairwise(times)} == {20}
    means = [sum(float(r[i]) for r in rows.values()) / len(rows) for i in range(5)]
    nominal = [12.0, 1.5, 35.0, 0.05, 101.3]
    tolerance = [0.05, 0.5, 1.0, 0.01, 0.3]  # current_a is raised during load_test
    for mean, nom, tol in zip(means, nominal, tolerance, strict=True):
        assert abs(mean - nom) < tol


def test_step_change_offsets_only_its_window_and_channel() -> None:
    base, faulty = with_fault(
        FaultSpec(kind="step", channel="supply_v", start=1.0, duration=1.0, magnitude=2.0)
    )
    clean, hit = samples(play(base)), samples(play(faulty))
    assert clean.keys() == hit.keys()
    changed = sorted(t for t in clean if clean[t] != hit[t])
    assert changed[0] == 1000 and changed[-1] == 1980 and len(changed) == 50
    for t in changed:
        assert float(hit[t][0]) - float(clean[t][0]) == pytest.approx(2.0, abs=0.0011)
        assert hit[t][1:] == clean[t][1:]


def test_drift_grows_linearly_to_its_magnitude() -> None:
    base, faulty = with_fault(
        FaultSpec(kind="drift", channel="temp_c", start=1.0, duration=2.0, magnitude=10.0)
    )
    clean, hit = samples(play(base)), samples(play(faulty))
    offsets = {t: float(hit[t][2]) - float(clean[t][2]) for t in clean}
    assert offsets[1000] == pytest.approx(0.0, abs=0.011)
    assert offsets[2000] == pytest.approx(5.0, abs=0.011)
    assert offsets[2980] == pytest.approx(9.9, abs=0.011)
    assert offsets[3000] == pytest.approx(0.0, abs=0.011)  # the fault is over


def test_spike_hits_exactly_one_sample() -> None:
    base, faulty = with_fault(FaultSpec(kind="spike", channel="vibration_g", start=2.0, magnitude=1.5))
    clean, hit = samples(play(base)), samples(play(faulty))
    changed = [t for t in clean if clean[t] != hit[t]]
    assert changed == [2000]
    assert float(hit[2000][3]) - float(clean[2000][3]) == pytest.approx(1.5, abs=0.0002)


def test_stuck_sensor_repeats_one_value_exactly() -> None:
    base, faulty = with_fault(FaultSpec(kind="stuck", channel="temp_c", start=1.0, duration=1.5))
    clean, hit = samples(play(base)), samples(play(faulty))
    stuck = {hit[t][2] for t in hit if 1000 <= t < 2500}
    assert len(stuck) == 1
    assert len({clean[t][2] for t in clean if 1000 <= t < 2500}) > 5
    assert all(hit[t] == clean[t] for t in clean if t < 1000 or t >= 2500)
    assert records(play(faulty), "fault")[0]["stuck_value"] == float(stuck.pop())


def test_device_dropout_silences_lines_and_channel_dropout_prints_nan() -> None:
    _, silent = with_fault(FaultSpec(kind="dropout", start=1.0, duration=1.0))
    rows = samples(play(silent))
    assert not [t for t in rows if 1000 <= t < 2000]
    assert 980 in rows and 2000 in rows
    _, one = with_fault(FaultSpec(kind="dropout", channel="current_a", start=1.0, duration=1.0))
    rows = samples(play(one))
    assert all(math.isnan(float(rows[t][1])) for t in rows if 1000 <= t < 2000)
    assert not math.isnan(float(rows[980][1])) and not math.isnan(float(rows[2000][1]))


def test_garbage_burst_is_one_non_utf8_line_and_expects_no_anomaly() -> None:
    _, faulty = with_fault(FaultSpec(kind="garbage", start=1.0, size=200))
    out = play(faulty)
    (burst,) = writes(out, WriteKind.GARBAGE)
    assert len(burst) == 201 and burst.endswith(b"\n") and b"\n" not in burst[:-1] and b"\r" not in burst
    with pytest.raises(UnicodeDecodeError):
        burst.decode("utf-8")
    (record,) = records(out, "fault")
    assert record["expect_anomaly"] is False and record["expected_rule"] is None
    # the burst does not disturb the samples around it
    base, _ = with_fault(FaultSpec(kind="garbage", start=1.0))
    assert samples(play(base)) == samples(out)


def test_markers_are_well_formed_and_match_the_default_regex() -> None:
    out = play(load_scenario("demo"))
    pattern = re.compile(DEFAULT_MARKER_REGEX)
    seen = []
    for line in writes(out, WriteKind.MARKER):
        match = pattern.match(line.decode().rstrip("\n"))
        assert match, line
        seen.append((match["edge"], match["name"], match["verdict"]))
    assert seen == [
        ("START", "power_on", None), ("END", "power_on", "PASS"),
        ("START", "load_test", None), ("END", "load_test", "FAIL"),
        ("START", "thermal_soak", None), ("END", "thermal_soak", "PASS"),
        ("START", "vibration_check", None), ("END", "vibration_check", "PASS"),
    ]  # fmt: skip


def test_marker_precedes_the_sample_at_its_time() -> None:
    out = [o for o in play(load_scenario("clean")) if isinstance(o, Write)]
    i = next(i for i, o in enumerate(out) if o.data == b"#STEP START power_on\n")
    assert out[i + 1].data.startswith(b"1000,")


def test_demo_oracle_records_faults_and_expected_step_outcomes() -> None:
    out = play(load_scenario("demo"))
    faults = {r["id"]: r for r in records(out, "fault")}
    assert set(faults) == {"garbage-1", "overvoltage-1", "stuck-temp-1", "spike-vib-1"}
    over = faults["overvoltage-1"]
    assert over["severity"] == "high" and over["expected_rule"] == "limits" and over["expect_anomaly"]
    assert (over["start_device_ms"], over["end_device_ms"], over["samples_affected"]) == (13000, 17000, 200)
    # As the demo's agent config files them (edge_agent/demo.py): a low stuck rule on temp_c, and the
    # vibration spike crosses vibration_g's limits rule (the demo has no rate rule).
    assert (faults["stuck-temp-1"]["severity"], faults["stuck-temp-1"]["expected_rule"]) == ("low", "stuck")
    assert (faults["spike-vib-1"]["severity"], faults["spike-vib-1"]["expected_rule"]) == ("medium", "limits")
    steps = {r["name"]: r for r in records(out, "step")}
    assert steps["load_test"]["expected_verdict"] == "FAIL"
    assert steps["load_test"]["faults"] == ["overvoltage-1"]
    assert steps["power_on"]["expected_outcome"] == "passed"  # garbage is not an anomaly
    assert steps["thermal_soak"]["expected_outcome"] == "passed_with_exception"


def test_unplug_loses_lines_holds_markers_and_resends_the_header() -> None:
    scenario = Scenario(
        name="u", duration=5.0,
        steps=[StepSpec(name="s1", start=0.5, duration=1.0)],
        faults=[FaultSpec(kind="unplug", start=1.0, duration=2.0)],
    )  # fmt: skip
    out = play(scenario)
    links = [(o.t, o.up) for o in out if isinstance(o, LinkChange)]
    assert links == [(1.0, False), (3.0, True)]
    down = next(i for i, o in enumerate(out) if isinstance(o, LinkChange) and not o.up)
    up = next(i for i, o in enumerate(out) if isinstance(o, LinkChange) and o.up)
    assert not [o for o in out[down:up] if isinstance(o, Write)]
    after = [o.data for o in out[up:] if isinstance(o, Write)][:3]
    assert (
        after[0].startswith(b"t_ms,") and after[1] == b"#STEP END s1 PASS\n" and after[2].startswith(b"3000,")
    )
    (record,) = records(out, "fault")
    assert (
        record["lines_lost"] == 100 and record["markers_held"] == 1 and record["expected_rule"] == "dropout"
    )


def test_unplug_on_request_extends_and_records() -> None:
    model = BenchModel(1)
    feed = Feed(ScenarioPlayer(load_scenario("clean"), model, RATE, 1), model.header())
    feed.advance(2.0)
    feed.request_unplug(2.0, 1.0)
    feed.request_unplug(2.5, 1.0)  # while down: extends to 3.5
    out = feed.advance(5.0)
    assert [(o.t, o.up) for o in out if isinstance(o, LinkChange)] == [(2.0, False), (3.5, True)]
    (record,) = records(out, "fault")
    assert record["requested"] and record["end_s"] == 3.5


def test_loop_repeats_with_continuing_device_time() -> None:
    scenario = Scenario(name="l", duration=2.0, steps=[StepSpec(name="a", start=0.5, duration=1.0)])
    out = play(scenario, duration=6.0, loop=True)
    times = sorted(samples(out))
    assert times[0] == 0 and times[-1] == 5980 and len(times) == 300
    assert len(writes(out, WriteKind.MARKER)) == 6
    assert [r["run"] for r in records(out, "step")] == [0, 1, 2]


def test_duration_past_the_scenario_keeps_normal_data_and_close_truncates() -> None:
    out = play(load_scenario("clean"), duration=30.0)
    assert max(samples(out)) == 29980
    model = BenchModel(0)
    player = ScenarioPlayer(load_scenario("demo"), model, RATE, 0)
    player.advance(15.0)
    truncated = [o.record for o in player.close(15.0) if isinstance(o, OracleEntry)]
    assert {(r["record"], r.get("id", r.get("name"))) for r in truncated} == {
        ("fault", "overvoltage-1"), ("step", "load_test"),
    }  # fmt: skip
    assert all(r["truncated"] and r["end_s"] == 15.0 for r in truncated)


def test_soak_is_seeded_and_faults_never_overlap() -> None:
    first, again, other = soak(1800.0, 5), soak(1800.0, 5), soak(1800.0, 6)
    assert first == again and first != other
    faults = first.with_ids().faults
    assert len(faults) > 30 and {f.kind for f in faults} >= {"step", "drift", "spike", "stuck", "garbage"}
    for a, b in itertools.pairwise(faults):
        assert a.end(1 / RATE) < b.start
    assert all(s.end <= 1800.0 for s in first.steps)


def test_scenario_file_loads_and_errors_name_the_problem(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text(
        'duration = "10s"\n[[steps]]\nname = "warm"\nstart = "1s"\nduration = "2s"\n'
        '[[faults]]\nkind = "step"\nchannel = "supply_v"\nstart = "500ms"\nduration = 1\nmagnitude = 1.0\n'
    )
    scenario = load_scenario(str(good))
    assert scenario.name == "mine" and scenario.length == 10.0 and scenario.faults[0].id == "f1"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[faults]]\nkind = "step"\nstart = "1s"\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml.*needs a channel"):
        load_scenario(str(bad))
    with pytest.raises(ScenarioError, match="no built-in scenario 'nope'"):
        load_scenario("nope")
    unknown = Scenario(name="x", faults=[FaultSpec(kind="stuck", channel="rpm", start=1.0)])
    with pytest.raises(ValueError, match="unknown channel 'rpm'"):
        ScenarioPlayer(unknown, BenchModel(0), RATE, 0)
