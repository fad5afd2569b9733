"""`edge-agent backtest` as a test engineer runs it: a subprocess on small recordings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import TICK_SECONDS as AGENT_TICK
from edge_agent.backtest.engine import TICK_SECONDS as BACKTEST_TICK

CONFIG = """
[agent]
bench = "rig-7"
state_dir = "{state}"

[[serial]]
name = "bench"
url = "/dev/ttyUSB0"
device_time = "t_ms"

[atlas]
url = "https://tenant.atlas.example"
token_file = "/run/credentials/edge-agent.service/atlas_token"   # not on this machine: never read

[[rules]]
channel = "supply_v"
kind = "limits"
min = 11.4
max = 12.6
severity = "high"
clear_after = "100ms"

[[rules]]
channel = "current_a"
kind = "limits"
max = 2.0
severity = "medium"
clear_after = "100ms"

[[rules]]
channel = "temp_c"
kind = "limits"
max = 80.0
severity = "low"
clear_after = "100ms"

[incidents]
join_window = "1s"
update_after = "200ms"
"""


def rows(start_ms: int, count: int, *, v: float = 12.0, a: float = 1.0, c: float = 40.0) -> list[str]:
    return [f"{start_ms + 10 * i},{v},{a},{c}" for i in range(count)]


def recording() -> str:
    """Data rows 1-100 normal; a supply fault at rows 104-113 that current_a joins at 107-111; normal
    again; a bad row at 203; then at rows 303-307 (5 s later) temp_c alone; a step around each part."""
    lines = ["t_ms,supply_v,current_a,temp_c", "#STEP START idle"]
    lines += rows(0, 100)
    lines += ["#STEP END idle PASS", "#STEP START load"]
    lines += rows(1000, 3) + rows(1030, 7, v=13.5)[:3] + rows(1060, 5, v=13.5, a=2.5) + rows(1110, 2, v=13.0)
    lines += rows(1130, 89)
    lines += ["1990,12.0,oops,40", "# operator comment"]
    lines += rows(2000, 99)
    lines += ["#STEP END load PASS", "#STEP START soak"]
    lines += rows(7000, 5, c=90.0) + rows(7050, 50)
    lines += ["#STEP END soak FAIL"]
    return "\n".join(lines) + "\n"


def run(tmp_path: Path, *args: str, config: str | None = None, env: dict[str, str] | None = None) -> Any:
    cfg = tmp_path / "config.toml"
    cfg.write_text((config or CONFIG).format(state=tmp_path / "state"))
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "backtest", "--config", str(cfg), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_cli_prints_and_writes_the_incidents_that_would_have_been_filed(tmp_path: Path) -> None:
    rec = tmp_path / "bench.csv"
    rec.write_text(recording())
    out = tmp_path / "result.json"
    done = run(tmp_path, str(rec), "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 incident(s) would have been filed" in done.stdout
    assert "title: [rig-7] supply_v above max 12.6 (peak 13.5)" in done.stdout
    assert "rows are 1-based data rows" in done.stdout

    report = json.loads(out.read_text())
    assert report["format"] == "edge-agent-backtest/1"
    rec_info = report["recording"]
    assert rec_info["data_rows"] == 100 + 3 + 3 + 5 + 2 + 89 + 1 + 99 + 5 + 50
    assert rec_info["frames"] == rec_info["data_rows"] - 1
    assert rec_info["bad_rows"] == {"not_numeric": 1}
    assert rec_info["markers"] == 6 and rec_info["comments"] == 1

    first, second = report["incidents"]
    assert first["severity"] == "high" and first["priority"] == "high"
    assert first["filed_title"] == "[rig-7] supply_v above max 12.6 (peak 13.5)"
    assert first["title"] == first["filed_title"] + " +1 more"  # current_a joined
    assert first["tags"] == ["rig-7", "supply_v", "current_a", "rule:limits", f"edge-agent:{first['id']}"]
    assert first["lead"] == {"rule_id": "rule0:limits", "kind": "rule:limits", "source": "bench",
                             "channel": "supply_v"}  # fmt: skip
    assert [(m["rule_id"], m["channel"], m["severity"]) for m in first["members"]] == [
        ("rule0:limits", "supply_v", "high"),
        ("rule1:limits", "current_a", "medium"),
    ]
    supply, current = first["members"]
    # supply_v is out at data rows 104-113 (13.5, then 13.0), back in at 114; current_a at 107-111.
    assert (supply["start_row"], supply["peak_row"], supply["end_row"]) == (104, 104, 114)
    assert supply["peak_value"] == 13.5 and supply["threshold"] == "max 12.6"
    assert (current["start_row"], current["end_row"]) == (107, 112)
    assert current["peak_value"] == 2.5 and current["peak_excursion"] == pytest.approx(0.5)
    assert (first["start_row"], first["end_row"], first["filed_row"]) == (104, 114, 104)
    assert first["start_s"] == pytest.approx(1.03) and first["end_s"] == pytest.approx(1.13)
    assert first["start_device_time"] == pytest.approx(1030.0)
    assert first["comments"] == 1 and first["close_reason"] == "quiet"

    assert second["severity"] == "low"
    assert [(m["rule_id"], m["channel"]) for m in second["members"]] == [("rule2:limits", "temp_c")]
    assert (second["start_row"], second["end_row"]) == (303, 308)

    steps = {s["name"]: s for s in report["steps"]}
    assert steps["idle"]["execution_status"] == "passed"
    assert (steps["idle"]["start_row"], steps["idle"]["end_row"]) == (1, 100)
    assert steps["load"]["execution_status"] == "failed"  # the high-severity supply fault overlapped it
    assert "supply_v above max 12.6 (peak 13.5) [high, anomaly " in steps["load"]["exception"]
    assert steps["soak"]["execution_status"] == "failed"  # its END said FAIL; temp_c (low) is named too
    assert "step verdict FAIL" in steps["soak"]["exception"] and "temp_c" in steps["soak"]["exception"]
    assert report["summary"] == {
        "incidents": 2, "by_severity": {"high": 1, "low": 1}, "anomalies": 3,
        "steps": {"passed": 1, "failed": 2},
    }  # fmt: skip
    assert not (tmp_path / "state").exists()  # no state directory is made or written


def test_step_outcomes_from_markers(tmp_path: Path) -> None:
    """Steps with nothing in them pass; a lower-severity anomaly passes with an exception naming it; a
    START without an END is ended by the next START; a step running at the end says so."""
    lines = ["t_ms,supply_v,current_a,temp_c", "#STEP START quiet", *rows(0, 20), "#STEP END quiet"]
    lines += ["#STEP START warm", *rows(200, 5, a=2.2), *rows(250, 20)]
    lines += ["#STEP START next", *rows(500, 10), "#STEP END nobody", "#STEP START last", *rows(700, 3)]
    rec = tmp_path / "steps.csv"
    rec.write_text("\n".join(lines) + "\n")
    done = run(tmp_path, str(rec), "--json", "-")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [(s["title"], s["execution_status"]) for s in steps] == [
        ("quiet", "passed"),
        ("warm", "passed_with_exception"),
        ("next", "passed"),
        ("last", "passed"),
    ]
    assert (
        "current_a above max 2 (peak 2.2) [medium, anomaly " in steps[1]["exception"]
        and "ended by the start of 'next'" in steps[1]["exception"]
    )
    assert (steps[1]["start_row"], steps[1]["end_row"]) == (21, 45)
    assert steps[3]["end_line"] is None and "still running at the end" in steps[3]["exception"]


def test_a_config_error_exits_78_naming_the_field(tmp_path: Path) -> None:
    rec = tmp_path / "r.csv"
    rec.write_text(recording())
    done = run(tmp_path, str(rec), config=CONFIG.replace("max = 2.0", 'max = "two"'))
    assert done.returncode == 78
    assert "configuration error in" in done.stderr and "rules[1].max" in done.stderr
    assert "Traceback" not in done.stderr
    missing = tmp_path / "nope.json"
    bad_rule = CONFIG + f'\n[[rules]]\nchannel = "temp_c"\nkind = "baseline"\nbaseline_file = "{missing}"\n'
    done = run(tmp_path, str(rec), config=bad_rule)
    assert done.returncode == 78
    assert "rules[3] (baseline on temp_c)" in done.stderr and "cannot be read" in done.stderr


def test_an_unreadable_recording_is_a_clear_error(tmp_path: Path) -> None:
    done = run(tmp_path, str(tmp_path / "missing.csv"))
    assert done.returncode == 66
    assert (
        done.stderr.strip()
        == f"edge-agent backtest: {tmp_path / 'missing.csv'}: cannot be read: No such file or directory"
    )
    done = run(tmp_path, str(tmp_path))
    assert done.returncode == 66 and "Is a directory" in done.stderr
    rec = tmp_path / "no_time.csv"
    rec.write_text("time,supply_v,current_a,temp_c\n0,12,1,40\n")
    done = run(tmp_path, str(rec))
    assert done.returncode == 65
    assert "time column 't_ms' is not among the recording's columns (time, supply_v" in done.stderr
    assert "Traceback" not in done.stderr


def test_recordings_without_a_time_column_jsonl_and_the_source_option(tmp_path: Path) -> None:
    psu = '[[serial]]\nname = "psu"\nurl = "/dev/ttyUSB1"\nformat = "jsonl"\ndevice_time = "t_s"\n\n'
    two_ports = CONFIG.replace("[atlas]", psu + "[atlas]")
    rec = tmp_path / "psu.jsonl"
    rec.write_text("".join(json.dumps({"t_s": i * 0.5, "supply_v": 13.0 if i in (3, 4) else 12.0}) + "\n"
                           for i in range(10)))  # fmt: skip
    done = run(tmp_path, str(rec), "--source", "psu", "--json", "-", config=two_ports)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["recording"]["source"] == "psu" and report["recording"]["format"] == "jsonl"
    [incident] = report["incidents"]
    assert (incident["start_row"], incident["end_row"]) == (4, 6) and incident["start_s"] == 1.5

    plain = tmp_path / "plain.csv"
    plain.write_text(
        "supply_v,current_a,temp_c\n" + "".join(f"{13 if i == 5 else 12},1,40\n" for i in range(10))
    )
    no_time = CONFIG.replace('device_time = "t_ms"\n', "")
    done = run(tmp_path, str(plain), "--json", "-", config=no_time)
    assert done.returncode == 2 and "no time column" in done.stderr and "--rate HZ" in done.stderr
    done = run(tmp_path, str(plain), "--rate", "100", "--json", "-", config=no_time)
    assert done.returncode == 0, done.stderr
    [incident] = json.loads(done.stdout)["incidents"]
    assert incident["start_row"] == 6 and incident["start_s"] == pytest.approx(0.05)
    done = run(tmp_path, str(plain), "--source", "nope")
    assert done.returncode == 2 and "'nope' is not a [[serial]] port" in done.stderr


def test_without_numpy_the_command_says_what_to_install(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"))
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from edge_agent.cli import main\n"
        f"sys.exit(main(['backtest', '--config', {str(cfg)!r}, 'x.csv']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 69
    assert "pip install 'edge-agent[backtest]'" in done.stderr


def test_the_backtest_ticks_like_the_agent() -> None:
    assert BACKTEST_TICK == AGENT_TICK
