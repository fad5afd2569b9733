"""Issue 10 acceptance: 24 h of generated normal plant data at 1 Hz x 10 channels, with the default
`baseline` rule on every channel, through `edge-agent backtest` -> 0 incidents (and the same recording
with the pump breakdown in it -> exactly one incident, its channels in it: the rules are not blind)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_agent.bench_sim import plant


def _config(path: Path, names: list[str]) -> Path:
    rules = "".join(f'\n[[rules]]\nchannel = "{name}"\nkind = "baseline"\n' for name in names)
    columns = json.dumps(["t_ms", *names])
    path.write_text(
        f"""
[agent]
bench = "skid"
state_dir = "{path.parent / "state"}"

[[serial]]
name = "skid"
url = "/dev/ttyUSB0"
columns = {columns}
device_time = "t_ms"

[lens]
enabled = false
{rules}""",
        encoding="utf-8",
    )
    return path


def _backtest(config: Path, recording: Path, out: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "backtest", "--config", str(config), str(recording), "--json",
         str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_a_normal_day_files_no_incident_and_the_breakdown_files_one(tmp_path: Path) -> None:
    day = plant.normal(11)  # a seed the defaults were not tuned on (bench/bench_baseline.py: 0-3)
    assert len(day) >= 24 * 3600 - 5400 and len(day.names) == 10  # 24 h less a maintenance stop
    config = _config(tmp_path / "skid.toml", day.names)
    day_csv = tmp_path / "day.csv"
    day.write_csv(day_csv)
    result = _backtest(config, day_csv, tmp_path / "day.json")
    recording = result["recording"]
    assert isinstance(recording, dict) and recording["frames"] == len(day)
    assert result["incidents"] == [], result["incidents"]

    fault = plant.pump_fault(11)  # 4 h of normal data (the 3 h warm-up, then 1 h), then the fault
    assert fault.fault is not None
    fault_csv = tmp_path / "fault.csv"
    fault.write_csv(fault_csv)
    incidents = _backtest(config, fault_csv, tmp_path / "fault.json")["incidents"]
    assert isinstance(incidents, list) and len(incidents) == 1, incidents
    (incident,) = incidents
    assert {m["channel"] for m in incident["members"]} >= set(fault.fault.channels) - {"bearing_temp_c"}
    assert abs(incident["start_row"] - (fault.fault.onset_row + 1)) <= 5
