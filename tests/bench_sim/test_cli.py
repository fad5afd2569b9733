"""`edge-agent simulate` as a process: the machine-readable pty line, the oracle, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent", "simulate", "--log-format", "json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=25, check=False)


def test_simulate_prints_pty_and_link_and_writes_the_oracle(tmp_path: Path) -> None:
    link, oracle = tmp_path / "ttyBENCH0", tmp_path / "oracle.jsonl"
    done = simulate("--scenario", "demo", "--speed", "40", "--link", str(link), "--oracle", str(oracle))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("pty=/dev/pts/") and first.endswith(f" link={link}")
    records = [json.loads(line) for line in oracle.read_text().splitlines()]
    assert records[1]["record"] == "run" and records[1]["scenario"] == "demo"
    assert {r["id"] for r in records if r["record"] == "fault"} == {
        "garbage-1", "overvoltage-1", "stuck-temp-1", "spike-vib-1",
    }  # fmt: skip
    assert records[-1]["record"] == "summary" and records[-1]["samples"] == 2000
    assert not os.path.lexists(link)  # removed at exit


def test_list_and_bad_input_give_clear_answers(tmp_path: Path) -> None:
    listed = simulate("--scenario", "list")
    assert listed.returncode == 0 and {"clean", "demo", "soak"} <= {
        ln.split()[0] for ln in listed.stdout.splitlines()
    }
    missing = simulate("--scenario", "nope", "--link", str(tmp_path / "l"))
    assert missing.returncode == 2 and "no built-in scenario 'nope'" in missing.stderr
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b\n1,2\n")
    replay = simulate("--replay", str(csv), "--link", str(tmp_path / "l"))
    assert replay.returncode == 2 and "no time column" in replay.stderr
