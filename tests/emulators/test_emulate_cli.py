"""`edge-agent emulate` runs both emulators, prints where they are and what they accept, dumps state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).with_name("edge-agent")


def test_emulate_prints_urls_and_tokens_and_dumps_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    result = subprocess.run(
        [str(EXE), "emulate", "--duration", "1", "--state-out", str(state), "--log-level", "warning"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Archetype lens API : http://127.0.0.1:" in out and "/v0.5" in out
    assert "Atlas API          : http://127.0.0.1:" in out and "/api/v1" in out
    assert "export ATAI_API_KEY=emulator-atai-key" in out
    assert "export ATLAS_TOKEN=emulator-atlas-token" in out
    dumped = json.loads(state.read_text())
    assert dumped["archetype"]["lenses"][0]["lens_id"] == "lns-emulated-machine-state"
    assert dumped["atlas"]["counts"]["issues"] == 0
    # The dumped state never carries the credentials.
    assert "emulator-atai-key" not in state.read_text()
    assert "emulator-atlas-token" not in state.read_text()
