"""The soak's short variant (bench/soak --short): every fault kind once in about 45 s of chaos, then
the same checks as the long soak (oracle-matched issues, step outcomes, no lens session left,
resources flat, shed items logged). The soak is a script; this test runs it as a subprocess and
asserts on its exit status and its printed checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_short_soak_passes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak"), "--short", "--quiet", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=140,
        cwd=REPO,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "RESULT: PASS" in report
    # The schedule held at least one of each kind, the harness's faults and the bench's, and played them.
    played = next(line for line in report.splitlines() if line.startswith("harness faults:"))
    for kind in ("kill", "atlas_outage", "atlas_errors", "atlas_slow", "ws_drop", "session_destroy"):
        assert re.search(rf"'{kind}': [1-9]", played), kind
    assert re.search(r"SIGKILLs [1-9]", played)
    assert "sim_garbage" in report and "sim_unplug" in report
    assert "[FAIL]" not in report
