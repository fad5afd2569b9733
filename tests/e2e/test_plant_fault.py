"""Issue 10, first acceptance point: one physical fault is one Atlas issue.

The simulator's pump breakdown (edge_agent/bench_sim/plant.py: 7 of 10 channels move at once, precursor
spikes on two channels in the minutes before, a restart transient after it) is replayed from its CSV
through a real pty into the whole agent, with the lens emulator streaming windows of three channels (it
labels the fault windows "fault") and the Atlas emulator. Rules are what a test engineer would set for
this skid: a limit per channel outside its normal range, held 3 samples. The recording carries step
markers around the fault. Everything goes through the real agent: the device clock (t_ms), the rules,
the lens, the incident grouper, the reporter, the outbox.

Expected, and asserted: exactly one issue; every fault channel and the lens in its tags; one closing
narrative with the timeline; one evidence CSV holding every channel of the source across the whole
incident; the step the fault overlapped is failed and its note names the issue.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path

import pytest
from e2e_helpers import TOKEN, wait_until

from edge_agent.agent import Agent
from edge_agent.bench_sim import plant
from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.pty_port import PtyPort
from edge_agent.bench_sim.replay import ReplayPlayer
from edge_agent.bench_sim.runner import BenchRunner
from edge_agent.config import EmulatorSection, load_config
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

pytestmark = pytest.mark.timeout(180)

SPEED = 60.0  # device seconds per real second: the 16-minute recording plays in ~16 s
SYSTEM_ID = "0b7c6a52-3f1e-4c3a-9a57-2d8f2b8e6c11"
LENS_CHANNELS = ["flow_m3h", "discharge_kpa", "vibration_mm_s"]
# (channel, min, max, severity): outside each channel's normal range on this skid (plant.PUMP_CHANNELS),
# inside what the breakdown does to the 7 channels it moves.
LIMITS = [
    ("flow_m3h", 90.0, None, "high"),
    ("discharge_kpa", 400.0, None, "high"),
    ("suction_kpa", 85.0, None, "medium"),
    ("motor_current_a", 26.0, 38.0, "medium"),
    ("vibration_mm_s", None, 5.0, "medium"),
    ("speed_rpm", 1470.0, 1492.0, "medium"),
    ("bearing_temp_c", None, 60.0, "medium"),
    ("motor_temp_c", 50.0, 90.0, "medium"),
    ("supply_v", 22.0, 26.0, "medium"),
    ("oil_level_pct", 60.0, 100.0, "medium"),
]


def _recording(path: Path) -> plant.FaultOracle:
    rec = plant.pump_fault(10, lead_in_s=420.0, fault_s=300.0, tail_s=240.0, precursor_s=240.0)
    oracle = rec.fault
    assert oracle is not None and len(oracle.channels) >= 6 and oracle.precursor_rows
    lines = list(rec.lines())
    # Step markers around the fault, as the skid's sequencer prints them (line 0 is the header).
    lines.insert(oracle.end_row + 150 + 1, "#STEP END pump_run PASS\n")
    lines.insert(oracle.onset_row - 200 + 1, "#STEP START pump_run\n")
    path.write_text("".join(lines), encoding="utf-8")
    return oracle


def _config(tmp_path: Path, link: Path, archetype: ArchetypeEmulator, atlas: AtlasEmulator) -> Path:
    rules = "".join(
        f"""
[[rules]]
channel = "{channel}"
kind = "limits"
{f"min = {low}" if low is not None else ""}
{f"max = {high}" if high is not None else ""}
hold_samples = 3
clear_after = "5s"
severity = "{severity}"
"""
        for channel, low, high, severity in LIMITS
    )
    text = f"""
[agent]
bench = "pump-skid"
state_dir = "{tmp_path / "state"}"

[[serial]]
name = "skid"
url = "{link}"
columns = {json.dumps(["t_ms", *(c.name for c in plant.PUMP_CHANNELS)])}
device_time = "t_ms"
reconnect_min = "50ms"
reconnect_max = "200ms"

[lens]
api_url = "{archetype.base_url}"
api_key = "{archetype.api_key}"
lens_id = "{archetype.settings.lenses[0].lens_id}"
channels = {json.dumps(LENS_CHANNELS)}
window_size = 50
step_size = 50
max_windows_per_second = 5
read_interval = "100ms"
status_poll_interval = "100ms"
anomaly_labels = ["fault"]
anomaly_severity = "high"

[atlas]
url = "{atlas.base_url}"
token = "{TOKEN}"

[evidence]
ring_seconds = "30m"
pre = "60s"
post = "30s"
max_duration = "30m"

[steps]
system_id = "{SYSTEM_ID}"

[outbox]
retry_base = "100ms"
retry_cap = "1s"
drain_deadline = "20s"

[control]
listen = "127.0.0.1:0"
{rules}
"""
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


async def test_the_pump_breakdown_is_one_issue_with_every_channel_the_lens_and_one_evidence_csv(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    recording = tmp_path / "pump-fault.csv"
    oracle = _recording(recording)
    settings = EmulatorSection.model_validate(
        {"warmup": 0.3, "inference_interval": 0.1, "baseline_windows": 5, "band_k": 4.0}
    )
    archetype = ArchetypeEmulator(settings, port=0, seed=3)
    await archetype.start()
    link = tmp_path / "ttySKID0"
    agent = Agent(load_config(_config(tmp_path, link, archetype, atlas), environ={}))
    replay = ReplayPlayer(lambda: recording.read_bytes().splitlines(keepends=True), speed=1.0)
    runner = BenchRunner(Feed(replay, replay.header), PtyPort(link), speed=SPEED)
    try:
        await agent.start()
        bench = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 10)
        await asyncio.wait_for(bench, 60)

        async def step_ended() -> bool:
            return any(c["step"] == "pump_run" for c in agent.steps.status()["completed"])

        # The recording goes on 240 device s after the fault, past the incident's quiet period (on
        # the device's clock), so the incident closes by itself; the stop then sends what is left.
        await wait_until(step_ended, 15, "the step END marker")
        assert agent.lens is not None and agent.inference_labels["fault"] > 0, dict(agent.inference_labels)
    finally:
        drained = await agent.stop(time.monotonic() + 20)
        await archetype.stop()
        runner.stop()
    assert drained
    state = atlas.state()

    issues = state["issues"]
    assert len(issues) == 1, [i["title"] for i in issues]
    (issue,) = issues
    assert issue["priority"] == "high"
    tags = set(issue["tags"])
    assert set(oracle.channels) <= tags, sorted(set(oracle.channels) - tags)
    assert "lens" in tags and "pump-skid" in tags
    incident_tags = [t for t in tags if t.startswith("edge-agent:")]
    assert len(incident_tags) == 1  # one incident, not a repeat of another
    assert issue["title"].startswith("[pump-skid] ") and " more" in issue["title"]

    markers = [c["content"].splitlines()[-1] for c in issue["comments"]]
    assert markers[0].endswith(":open") and markers[-1].endswith(":close")
    assert sum(m.endswith(":close") for m in markers) == 1
    closing = issue["comments"][-1]
    assert "Incident over" in closing["content"] and "Timeline" in closing["content"]
    for channel in oracle.channels:
        assert f"{channel} on skid" in closing["content"], channel
    assert "lens on skid" in closing["content"]

    # One evidence CSV: every channel of the source, across the whole incident plus pre and post.
    attachments = {a["attachment_name"]: a["attachment_id"] for a in closing["attachments"]}
    (csv_name,) = [n for n in attachments if n.endswith(".csv")]
    rows = _rows(atlas.attachment_bytes(attachments[csv_name]))
    assert {c.name for c in plant.PUMP_CHANNELS} <= set(rows[0]), rows[0].keys()
    device_ms = [int(float(r["device_time"])) for r in rows]
    assert device_ms[0] <= oracle.onset_ms - 30_000 and device_ms[-1] >= oracle.end_ms
    summary = json.loads(atlas.attachment_bytes(attachments[csv_name.removesuffix(".csv") + ".json"]))
    members = summary["incident"]["members"]
    assert {m["channel"] for m in members} >= set(oracle.channels) | {""}

    # The step the fault overlapped failed, and its note names this issue.
    steps = {s["title"]: s for c in state["test_runs"][0]["test_cards"] for s in c["test_steps"]}
    assert steps["pump_run"]["execution_status"] == "failed"
    assert f"issue {issue['uuid']}" in (steps["pump_run"]["exception"] or "")
