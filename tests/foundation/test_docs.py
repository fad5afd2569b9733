"""The README's configuration reference is the one the models generate, and lists every key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_config_reference_is_current() -> None:
    generated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config-reference")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr
    table = generated.stdout.strip()
    assert table.count("\n") > 80
    assert table in (REPO / "README.md").read_text(), (
        "README reference is stale: run scripts/config-reference"
    )


def test_readme_starts_with_the_two_commands() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]
