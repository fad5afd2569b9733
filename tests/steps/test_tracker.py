"""StepTracker against the real Atlas emulator, with a real Outbox, anomalies from the real Detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reporter_helpers import SYSTEM_ID, Bench, fault, make_bench, wait_for

from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.frames import StepEdge, StepMarker, Verdict
from edge_agent.steps import StepTracker


async def _tracker(bench: Bench, tmp_path: Path) -> StepTracker:
    tracker = StepTracker(
        config=bench.config, outbox=bench.outbox, client=bench.client, state_dir=tmp_path,
        mono=bench.clock.now_mono, wall=bench.clock.now_wall,
    )  # fmt: skip
    run = bench.reporter.run
    assert run is not None
    await tracker.start(run.run_id, run.started_wall)
    return tracker


async def _feed(bench: Bench, tracker: StepTracker, rows: list[dict[str, float]]) -> None:
    await tracker.on_anomaly_events(await bench.feed(rows))


def _steps(emulator: AtlasEmulator) -> dict[str, dict[str, Any]]:
    runs = emulator.state()["test_runs"]
    return {s["title"]: s for r in runs for c in r["test_cards"] for s in c["test_steps"]}


async def test_outcomes_from_api_and_markers(emulator: AtlasEmulator, tmp_path: Path) -> None:
    bench = await make_bench(emulator, tmp_path, steps={"source": "markers", "system_id": SYSTEM_ID})
    tracker = await _tracker(bench, tmp_path)
    normal = [{"supply_v": 12.0, "temp_c": 25.0}] * 10
    # high anomaly inside step 1 -> failed
    await tracker.start_step("power on", card="Power")
    await _feed(bench, tracker, normal + [fault()] * 5 + normal)
    r1 = await tracker.end_step("power on", "PASS")
    assert r1["execution_status"] == "failed"
    # only a low one (temp) -> passed_with_exception with a note naming it
    await tracker.start_step("heat soak", card="Power")
    await _feed(bench, tracker, normal + [fault(12.0, 95.0)] * 5 + normal)
    r2 = await tracker.end_step("heat soak")
    assert r2["execution_status"] == "passed_with_exception" and "temp_c" in r2["exception"]
    # nothing -> passed; a FAIL marker -> failed (markers carry the stream's times)
    await tracker.start_step("idle")
    await _feed(bench, tracker, normal)
    assert (await tracker.end_step("idle"))["execution_status"] == "passed"
    m = bench.clock
    await tracker.on_marker(StepMarker("bench", StepEdge.START, "self test", m.mono, m.now_wall()))
    await _feed(bench, tracker, normal)
    await tracker.on_marker(
        StepMarker("bench", StepEdge.END, "self test", m.mono, m.now_wall(), Verdict.FAIL)
    )
    assert tracker.status()["completed"][-1]["execution_status"] == "failed"
    assert (await tracker.end_step("nothing running"))["error"]
    await bench.outbox.drain(10.0)
    await wait_for(
        lambda: len([s for s in _steps(emulator).values() if s["execution_status"] != "todo"]) == 4
    )
    steps = _steps(emulator)
    assert {k: v["execution_status"] for k, v in steps.items()} == {
        "power on": "failed", "heat soak": "passed_with_exception", "idle": "passed", "self test": "failed",
    }  # fmt: skip
    assert "temp_c" in steps["heat soak"]["exception"]
    for step in steps.values():
        assert step["started_at"] and step["ended_at"] and step["started_at"] <= step["ended_at"]
    (run,) = emulator.state()["test_runs"]
    assert run["system_id"] == SYSTEM_ID
    assert sorted(c["title"] for c in run["test_cards"]) == ["Power", "bench-07 steps"]
    await bench.stop()


@pytest.mark.parametrize("source", ["markers", "api", "plan"])
async def test_what_each_steps_source_takes(emulator: AtlasEmulator, tmp_path: Path, source: str) -> None:
    """As README and config/edge-agent.example.toml say: the control API marks steps whatever
    `steps.source` says; "api" makes it the only way (#STEP markers ignored, counted on /status), and
    "plan" takes what "markers" takes (a [steps.plan] applies with every source)."""
    bench = await make_bench(emulator, tmp_path, steps={"source": source})
    tracker = await _tracker(bench, tmp_path)
    await tracker.start_step("from the api")
    assert (await tracker.end_step("from the api", "PASS"))["execution_status"] == "passed"
    m = bench.clock
    await tracker.on_marker(StepMarker("bench", StepEdge.START, "from a marker", m.mono, m.now_wall()))
    await tracker.on_marker(
        StepMarker("bench", StepEdge.END, "from a marker", m.mono, m.now_wall(), Verdict.PASS)
    )
    status = tracker.status()
    by_markers = [] if source == "api" else ["from a marker"]
    assert [step["step"] for step in status["completed"]] == ["from the api", *by_markers]
    assert status["ignored_markers"] == (2 if source == "api" else 0)
    await bench.stop()


async def test_plan_created_up_front_and_names_mapped(emulator: AtlasEmulator, tmp_path: Path) -> None:
    plan = {
        "run_title": "{bench} acceptance",
        "system_id": SYSTEM_ID,
        "cards": [
            {"title": "OVP", "steps": [{"title": "Apply 13V"}, {"title": "Check trip"}]},
            {"title": "Thermal", "steps": [{"title": "Soak"}]},
        ],
    }
    bench = await make_bench(emulator, tmp_path, steps={"source": "plan", "plan": plan})
    tracker = await _tracker(bench, tmp_path)
    await bench.outbox.drain(10.0)
    await wait_for(lambda: len(_steps(emulator)) == 3)
    (run,) = emulator.state()["test_runs"]
    assert run["title"] == "bench-07 acceptance"
    await tracker.start_step("apply 13v")  # case-insensitive match to the plan's title
    await _feed(bench, tracker, [{"supply_v": 12.0, "temp_c": 25.0}] * 5)
    await tracker.end_step("apply 13v", "PASS")
    await bench.outbox.drain(10.0)
    await wait_for(lambda: _steps(emulator)["Apply 13V"]["execution_status"] == "passed")
    assert len(_steps(emulator)) == 3  # mapped, not a new step
    await bench.stop()


async def test_no_system_id_keeps_outcomes_local(emulator: AtlasEmulator, tmp_path: Path) -> None:
    bench = await make_bench(emulator, tmp_path)
    tracker = await _tracker(bench, tmp_path)
    assert "system_id" in tracker.status()["atlas"]
    await tracker.start_step("s1")
    assert (await tracker.end_step("s1"))["execution_status"] == "passed"
    await bench.stop()
    assert emulator.state()["test_runs"] == []


async def test_bad_system_id_is_a_kept_failure_not_a_retry_loop(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path, steps={"system_id": "not-a-uuid"})
    tracker = await _tracker(bench, tmp_path)
    await tracker.start_step("s1")
    await tracker.end_step("s1")
    await bench.outbox.drain(5.0)
    status = await bench.outbox.status()
    failures = status["failures"]
    assert any(f["kind"] == "atlas.test_run" and f["status"] == 422 for f in failures)
    assert status["depth"]["pending"] == 0  # the card, step and outcome failed with it, not waiting
    await bench.stop()


async def test_anomalies_seen_before_a_crash_count_in_the_running_step(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """Killed mid-step after an anomaly: the restarted tracker (same state dir, same run) still fails
    the step on the END marker, because the step's anomalies were saved with its state."""
    bench = await make_bench(emulator, tmp_path, steps={"source": "markers", "system_id": SYSTEM_ID})
    tracker = await _tracker(bench, tmp_path)
    normal = [{"supply_v": 12.0, "temp_c": 25.0}] * 10
    await tracker.start_step("burn in")
    await _feed(bench, tracker, normal + [fault()] * 5 + normal)
    # A new tracker on the same state is what the restarted agent builds; the old one is never closed.
    restarted = await _tracker(bench, tmp_path)
    await _feed(bench, restarted, normal)
    result = await restarted.end_step("burn in")
    assert result["execution_status"] == "failed" and "supply_v" in result["exception"]
    await bench.stop()
