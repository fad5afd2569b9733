"""`edge-agent demo --duration 30` runs the whole product offline and leaves the expected results in Atlas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).with_name("edge-agent")


def test_demo_30s_leaves_issues_and_step_outcomes(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = subprocess.run(
        [str(EXE), "demo", "--duration", "30", "--workdir", str(tmp_path / "work"), "--summary-json",
         str(summary_path)],
        capture_output=True, text=True, timeout=150, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "What Atlas now holds" in result.stdout
    summary = json.loads(summary_path.read_text())

    # In 30 s the demo scenario injects a high over-voltage (13-17 s) and a stuck temperature (22-28 s).
    by_title = {issue["title"]: issue for issue in summary["issues"]}
    overvoltage = [i for t, i in by_title.items() if "supply_v" in t]
    stuck = [i for t, i in by_title.items() if "temp_c" in t and "stuck" in t]
    assert len(overvoltage) == 1 and overvoltage[0]["priority"] == "high"
    assert len(stuck) == 1 and stuck[0]["priority"] == "low"
    for issue in summary["issues"]:
        assert issue["attachments"] >= 2, issue  # evidence CSV + JSON summary
        assert issue["comments"] >= 1, issue  # the narrative
    # No issue without a fault behind it: every issue is one of the injected faults (or the lens on them).
    assert all(any(k in t for k in ("supply_v", "temp_c", "lens")) for t in by_title), list(by_title)

    steps = {step["step"]: step["status"] for step in summary["steps"]}
    assert steps["power_on"] == "passed"
    assert steps["load_test"] == "failed"  # the high over-voltage overlapped it
    assert steps["thermal_soak"] == "passed_with_exception"  # only the low stuck sensor overlapped it
    # The lens path ran end to end: windows went out over the websocket and inferences came back.
    assert summary["agent"]["frames"] >= 1000  # 30 s at 50 lines/s, minus start-up slack
    assert summary["agent"]["windows_sent"] >= 20
    assert sum(summary["agent"]["inferences"].values()) >= 10
    assert summary["lens_sessions_left"] == 0
    # Evidence files live in the state directory only until Atlas has them: after the drain, none is left.
    assert summary["atlas_counts"]["attachments"] >= 2 * len(summary["issues"])
    assert not list((tmp_path / "work" / "state").rglob("*.csv"))
    config_text = (tmp_path / "work" / "edge-agent.toml").read_text()
    assert "[lens]" in config_text and "[atlas]" in config_text
