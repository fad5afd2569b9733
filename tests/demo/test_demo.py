"""`edge-agent demo --duration 30` runs the whole product offline and leaves the expected results in Atlas."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

EXE = Path(sys.executable).with_name("edge-agent")


def test_demo_40s_leaves_one_issue_per_fault_and_step_outcomes(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = subprocess.run(
        [str(EXE), "demo", "--duration", "40", "--workdir", str(tmp_path / "work"), "--summary-json",
         str(summary_path)],
        capture_output=True, text=True, timeout=150, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "What Atlas now holds" in result.stdout
    summary = json.loads(summary_path.read_text())

    # In 40 s the demo scenario injects a high over-voltage (13-17 s), a stuck temperature (22-28 s) and
    # a 20 ms vibration spike (34 s). The bench's oracle says what the agent should file for each: one
    # issue per fault, led by its channel, of its severity, tagged with the rule that catches it.
    oracle = [json.loads(line) for line in (tmp_path / "work" / "oracle.jsonl").read_text().splitlines()]
    faults = [r for r in oracle if r["record"] == "fault" and r["expect_anomaly"]]
    assert sorted(f["id"] for f in faults) == ["overvoltage-1", "spike-vib-1", "stuck-temp-1"]
    issues = summary["issues"]
    titles = [issue["title"] for issue in issues]
    assert len(issues) == len(faults), titles  # no issue without a fault behind it
    for f in faults:
        led = [i for i in issues if i["title"].startswith(f"[demo-bench] {f['channel']} ")]
        assert len(led) == 1, (f, titles)
        issue = led[0]
        assert issue["priority"] == f["severity"], (f, issue)
        assert {f["channel"], f"rule:{f['expected_rule']}", "demo-bench"} <= set(issue["tags"]), (f, issue)
        assert not [t for t in issue["tags"] if re.fullmatch(r"rule\d+:.*", t)], issue["tags"]
    # The titles say what happened, in words (the lens's verdict on a fault joins its issue: "+1 more").
    by_channel = {t.split()[1]: t for t in titles}
    assert re.fullmatch(
        r"\[demo-bench\] supply_v above max 12\.6 \(peak 13\.\d+\)( \+1 more)?", by_channel["supply_v"]
    )
    assert re.fullmatch(
        r"\[demo-bench\] temp_c stuck at \d+\.\d+ for at least 3 s( \+1 more)?", by_channel["temp_c"]
    )
    assert re.fullmatch(
        r"\[demo-bench\] vibration_g above max 0\.5 \(peak 1\.\d+\)( \+1 more)?", by_channel["vibration_g"]
    )
    # One issue per physical event: the lens's verdict on the spike's window comes back a window and a
    # round trip later, after the spike's quiet period (end + 2 s), and still joins the spike's issue.
    assert not any(t.startswith("[demo-bench] lens") for t in titles), titles
    for issue in issues:
        assert issue["attachments"] >= 2, issue  # evidence CSV + JSON summary
        assert issue["comments"] >= 1, issue  # the narrative
        (closing,) = [head for head in issue["comment_heads"] if head.startswith("Incident over")]
        assert re.match(
            r"Incident over: (1 anomaly|[2-9] anomalies) on (supply_v|temp_c|vibration_g)", closing
        )
        assert "channel(s)" not in " ".join(issue["comment_heads"]), issue

    steps = {step["step"]: step["status"] for step in summary["steps"]}
    assert steps["power_on"] == "passed"
    assert steps["load_test"] == "failed"  # the high over-voltage overlapped it
    assert steps["thermal_soak"] == "passed_with_exception"  # only the low stuck sensor overlapped it
    assert steps["vibration_check"] == "passed_with_exception"  # the medium spike
    notes = {step["step"]: step["exception"] or "" for step in summary["steps"]}
    assert "supply_v above max 12.6 (peak 13." in notes["load_test"]  # the same words as the issue
    assert "temp_c stuck at " in notes["thermal_soak"] and "lens says" not in " ".join(notes.values())
    # The lens path ran end to end: windows went out over the websocket and inferences came back.
    assert summary["agent"]["frames"] >= 1500  # 40 s at 50 lines/s, minus start-up slack
    assert summary["agent"]["windows_sent"] >= 20
    assert sum(summary["agent"]["inferences"].values()) >= 10
    assert summary["lens_sessions_left"] == 0
    # Evidence files live in the state directory only until Atlas has them: after the drain, none is left.
    assert summary["atlas_counts"]["attachments"] >= 2 * len(summary["issues"])
    assert not list((tmp_path / "work" / "state").rglob("*.csv"))
    config_text = (tmp_path / "work" / "edge-agent.toml").read_text()
    assert "[lens]" in config_text and "[atlas]" in config_text


def test_demo_keeps_its_temporary_workdir_and_says_where(tmp_path: Path) -> None:
    """Without --workdir the demo's work directory is a new temporary one, kept afterwards: the summary
    names it, and the config, the state and the bench's oracle are there."""
    result = subprocess.run(
        [str(EXE), "demo", "--duration", "6"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("work directory (kept): "))
    workdir = Path(line.removeprefix("work directory (kept): ").split(" (", 1)[0])
    assert workdir.parent == tmp_path and workdir.name.startswith("edge-agent-demo-")
    assert (workdir / "edge-agent.toml").is_file()
    assert (workdir / "state").is_dir() and (workdir / "oracle.jsonl").stat().st_size > 0
    assert f"agent config: {workdir / 'edge-agent.toml'}" in result.stdout


async def _line_with(proc: asyncio.subprocess.Process, prefix: str, seen: list[str], within: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
        assert raw, "the demo ended:\n" + "\n".join(seen[-40:])
        line = raw.decode().rstrip("\n")
        seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting {prefix!r} within {within} s:\n" + "\n".join(seen[-40:]))


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        if "json" in response.headers.get("Content-Type", ""):
            return response.status, await response.json()
        return response.status, await response.text()


async def test_demo_keep_running_leaves_the_agent_and_its_page_up(tmp_path: Path) -> None:
    """--keep-running: after the scripted sequence (an over-voltage at 13-17 s) the summary says what
    Atlas holds (the issue with its attachments and comments) and the page's address; the agent, its
    page and the bench go on (the page's traces keep moving) until SIGINT, which ends it cleanly."""
    summary_path = tmp_path / "summary.json"
    proc = await asyncio.create_subprocess_exec(
        str(EXE), "demo", "--duration", "20", "--keep-running", "--workdir", str(tmp_path / "work"),
        "--summary-json", str(summary_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    seen: list[str] = []
    try:
        page = (await _line_with(proc, "live bench page: http", seen, 120)).split()[-1]
        await _line_with(proc, "  http://", seen, 5)
        text = "\n".join(seen)
        held = text[text.index("=== What Atlas now holds ===") :]
        assert "issues: 1" in held and "supply_v" in held
        issue_id = next(ln.split()[-1] for ln in seen if ln.strip().startswith("Atlas id "))
        assert any(ln.strip().startswith("attachment: ") and ln.endswith("_open.csv") for ln in seen)
        assert any(ln.strip().startswith("comment: Incident detected") for ln in seen)
        assert "work directory (kept): " + str(tmp_path / "work") in held

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            status, html = await _get(http, page)
            assert status == 200 and "<title>" in html
            status, first = await _get(http, page + "live/snapshot?span=60")
            assert status == 200
            assert [i["issue_id"] for i in first["atlas"]["issues"]] == [issue_id]

            async def moved() -> bool:
                _, later = await _get(http, page + "live/snapshot?span=60")
                newest = later["traces"]["bench"]["hi"]["supply_v"][-3:]
                return later["now"] > first["now"] + 1000 and any(v is not None for v in newest)

            deadline = time.monotonic() + 10
            while not await moved():  # the bench still talks and the page's traces follow it
                assert time.monotonic() < deadline, "the page's traces stopped after the sequence"
                await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    summary = json.loads(summary_path.read_text())
    assert [i["id"] for i in summary["issues"]] == [issue_id]
    assert summary["lens_sessions_left"] == 0  # the agent's shutdown destroyed its lens session
