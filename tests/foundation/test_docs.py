"""The README's configuration reference is the one the models generate, and lists every key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

from edge_agent.config import StepsSection

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


def test_each_steps_source_is_explained_and_none_is_needed_for_the_api() -> None:
    """Each value `steps.source` accepts has a line of its own in the example config, and README does
    not make the control API depend on one: it marks steps with every source (tests/steps)."""
    values = get_args(StepsSection.model_fields["source"].annotation)
    example = (REPO / "config" / "edge-agent.example.toml").read_text()
    for value in values:
        assert re.search(rf'^#\s+"{value}"\s+\S', example, flags=re.MULTILINE), value
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "the API is taken with every value" in readme
    assert 'with `steps.source = "api"`' not in readme
