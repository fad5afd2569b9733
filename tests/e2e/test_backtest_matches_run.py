"""Issue 10 acceptance: the same recording through `edge-agent backtest` and through the whole agent on a
pty, replayed at two speeds, gives the same incidents (same lead, same members, start and end rows within
+-1).

The recording is a quarter hour of the simulator's pump skid (edge_agent/bench_sim/plant.py) with four
faults written into it: one channel, three channels that go together (one of them a few rows late), a
short burst, a slow ramp; plus a single-sample spike that the rules' hold must ignore. The live incidents
are read back from what the agent put in Atlas: each issue's closing JSON summary (members and their
times on the device's timeline) and its evidence CSV (which device time each frame had).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import limit_rules_toml, replayed, skid_config, wait_until

from edge_agent.bench_sim import plant
from edge_agent.emulators.atlas import AtlasEmulator

pytestmark = pytest.mark.timeout(240)

SPEEDS = (60.0, 300.0)
ROWS = 900  # 15 min at 1 row/s
LIMITS = [  # (channel, min, max): outside the skid's normal range (plant.PUMP_CHANNELS)
    ("flow_m3h", 90.0, None),
    ("discharge_kpa", 400.0, None),
    ("suction_kpa", 85.0, None),
    ("motor_current_a", 26.0, 38.0),
    ("vibration_mm_s", None, 5.0),
    ("bearing_temp_c", None, 60.0),
]


def _recording(path: Path) -> list[int]:
    rec = plant.normal(5, hours=ROWS / 3600.0, maintenance=False)
    cols = rec.columns
    for row in range(200, 221):
        cols["flow_m3h"][row] -= 60.0  # one channel, 21 rows
    for row in range(400, 441):
        cols["discharge_kpa"][row] -= 160.0  # three channels of one fault, current 5 rows late
        cols["suction_kpa"][row] -= 25.0
        if row >= 405:
            cols["motor_current_a"][row] -= 14.0
    for row in range(600, 606):
        cols["vibration_mm_s"][row] += 6.0  # a short burst
    cols["vibration_mm_s"][500] += 6.0  # one sample: the hold must ignore it
    for row in range(700, 780):
        cols["bearing_temp_c"][row] += min(10.0, (row - 700) * 0.25)  # a slow ramp
    path.write_text("".join(rec.lines()), encoding="utf-8")
    return rec.t_ms


def _config(path: Path, state: Path, link: Path, atlas_url: str, bench: str) -> Path:
    evidence = '\n[evidence]\nring_seconds = "30m"\npre = "10s"\npost = "5s"\nmax_duration = "30m"\n'
    evidence += "plots = false\n"  # not about plots: a child process's seconds of CPU per incident
    rules = limit_rules_toml((channel, low, high, "medium") for channel, low, high in LIMITS)
    return skid_config(
        path, bench=bench, state_dir=state, link=link, atlas_url=atlas_url, sections=evidence + rules
    )


def _key(member: dict[str, Any]) -> tuple[str, str]:
    return (str(member["rule_id"]), str(member["channel"]))


def _backtest(config: Path, recording: Path, out: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "backtest", "--config", str(config), str(recording), "--json",
         str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [
        {
            "lead": _key(i["lead"]),
            "members": sorted(_key(m) for m in i["members"]),
            "start_row": i["start_row"],
            "end_row": max(m["end_row"] for m in i["members"]),
        }
        for i in json.loads(out.read_text())["incidents"]
    ]


async def _run_live(tmp_path: Path, recording: Path, atlas: AtlasEmulator, speed: float) -> Path:
    bench = f"skid-{speed:g}x"
    link = tmp_path / f"tty-{bench}"
    config = _config(tmp_path / f"{bench}.toml", tmp_path / bench, link, atlas.base_url, bench)
    async with replayed(config, recording, link, speed=speed, play_within=ROWS / speed + 30) as agent:
        # The first rows may go before the agent opens the pty (an open flushes the input): they carry
        # no fault. Wait until the rows stop coming.
        seen = [-1]

        async def settled() -> bool:
            frames = agent.frames_total()
            done = frames == seen[0]
            seen[0] = frames
            return done

        await wait_until(settled, 10, "the last rows decoded", interval=0.3)
        assert agent.frames_total() >= ROWS - 50

        async def closed() -> bool:  # the last incident closed on the device's clock, before the end
            return not agent.incidents.open_incidents()

        await wait_until(closed, 10, "every incident closed by its quiet period")
    return config


def _live_incidents(atlas: AtlasEmulator, bench: str, t_ms: list[int]) -> list[dict[str, Any]]:
    """Each issue of `bench`: its members and rows, from the closing evidence (JSON + CSV)."""
    out = []
    for issue in atlas.state()["issues"]:
        if bench not in issue["tags"]:
            continue
        closing = issue["comments"][-1]
        assert closing["content"].splitlines()[-1].endswith(":close"), closing["content"][-200:]
        files = {a["attachment_name"][-4:]: a["attachment_id"] for a in closing["attachments"]}
        incident = json.loads(atlas.attachment_bytes(files["json"]))["incident"]
        first = next(csv.DictReader(io.StringIO(atlas.attachment_bytes(files[".csv"]).decode())))
        # Device time (ms) of the incident's start: any frame's device time minus its offset from it.
        start_ms = float(first["device_time"]) - float(first["offset_s"]) * 1000.0

        def row(mono: float, incident: dict[str, Any] = incident, start_ms: float = start_ms) -> int:
            device_ms = start_ms + (mono - float(incident["started_mono"])) * 1000.0
            return bisect.bisect_left(t_ms, round(device_ms)) + 1  # 1-based data rows, like backtest's

        members = incident["members"]
        out.append(
            {
                "lead": _key(members[0]),
                "members": sorted(_key(m) for m in members),
                "start_row": min(row(float(m["started_mono"])) for m in members),
                "end_row": max(row(float(m["ended_mono"])) for m in members),
            }
        )
    return sorted(out, key=lambda i: i["start_row"])


async def test_backtest_and_the_live_agent_at_two_speeds_find_the_same_incidents(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    recording = tmp_path / "skid.csv"
    t_ms = _recording(recording)
    configs = [await _run_live(tmp_path, recording, atlas, speed) for speed in SPEEDS]
    offline = _backtest(configs[0], recording, tmp_path / "backtest.json")
    three = [("rule1:limits", "discharge_kpa"), ("rule2:limits", "suction_kpa")]
    three.append(("rule3:limits", "motor_current_a"))
    assert [i["members"] for i in offline] == [
        [("rule0:limits", "flow_m3h")], three, [("rule4:limits", "vibration_mm_s")],
        [("rule5:limits", "bearing_temp_c")],
    ]  # fmt: skip
    for speed in SPEEDS:
        live = _live_incidents(atlas, f"skid-{speed:g}x", t_ms)
        context = f"at {speed:g}x: live {live}\nbacktest {offline}"
        assert len(live) == len(offline), context
        for got, want in zip(live, offline, strict=True):
            assert (got["lead"], got["members"]) == (want["lead"], want["members"]), context
            assert abs(got["start_row"] - want["start_row"]) <= 1, context
            assert abs(got["end_row"] - want["end_row"]) <= 1, context
        print(f"{speed:g}x rows (start, end) live {[(i['start_row'], i['end_row']) for i in live]}")
    print(f"backtest rows (start, end) {[(i['start_row'], i['end_row']) for i in offline]}")
