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

import csv
import io
import json
import re
from pathlib import Path

import pytest
from e2e_helpers import SYSTEM_ID, limit_rules_toml, replayed, skid_config, wait_until

from edge_agent.bench_sim import plant
from edge_agent.config import EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

pytestmark = pytest.mark.timeout(180)

SPEED = 60.0  # device seconds per real second: the 16-minute recording plays in ~16 s
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
    lens = f"""api_url = "{archetype.base_url}"
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
"""
    sections = f"""
[evidence]
ring_seconds = "30m"
pre = "60s"
post = "30s"
max_duration = "30m"
plots = false  # not about plots (tests/e2e/test_sequence.py is): seconds of a child's CPU each

[steps]
system_id = "{SYSTEM_ID}"
{limit_rules_toml(LIMITS)}"""
    return skid_config(
        tmp_path / "agent.toml", bench="pump-skid", state_dir=tmp_path / "state", link=link,
        atlas_url=atlas.base_url, lens=lens, sections=sections,
    )  # fmt: skip


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
    config = _config(tmp_path, link, archetype, atlas)
    try:
        async with replayed(config, recording, link, speed=SPEED, play_within=60) as agent:

            async def step_ended() -> bool:
                return any(c["step"] == "pump_run" for c in agent.steps.status()["completed"])

            # The recording goes on 240 device s after the fault, past the incident's quiet period (on
            # the device's clock), so the incident closes by itself; the stop then sends what is left.
            await wait_until(step_ended, 15, "the step END marker")
            assert agent.lens is not None and agent.inference_labels["fault"] > 0, dict(
                agent.inference_labels
            )
    finally:
        await archetype.stop()
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
    # The timeline: one line per member, what happened to it in words, and the check that saw it.
    for channel in oracle.channels:
        line = rf"^[-+]\d+\.\d+ s  {channel} .*; \w+ rule on skid, severity "
        assert re.search(line, closing["content"], re.MULTILINE), channel
    assert re.search(
        r"^[-+]\d+\.\d+ s  lens: \w+ on .*; lens on skid, severity ", closing["content"], re.MULTILINE
    )

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
