"""scripts/test-tools, which `make test` runs first: nothing to do where the suite's programs are there,
and a clear refusal (the packages to install) where one is missing and nothing may install it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test-tools"


def test_nothing_to_install_where_the_programs_are_there() -> None:
    # The suite itself needs both: on a machine where it runs, the script must find them and do nothing.
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stdout + done.stderr


def test_a_missing_program_that_nobody_may_install_is_named_and_refused(tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_AGENT_CHROMIUM": str(tmp_path / "no-chromium")}
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        assert runuser is not None, "util-linux's runuser is on every Debian machine"
        # A copy nobody can read wherever the clone is (a checkout under /root is not readable by nobody).
        readable = Path(tempfile.mkdtemp(prefix="edge-test-tools-", dir="/tmp"))
        readable.chmod(0o755)
        shutil.copy(SCRIPT, readable / "test-tools")
        command = [runuser, "-u", "nobody", "--", "bash", str(readable / "test-tools")]
    else:
        sudo = shutil.which("sudo")
        if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0:
            pytest.skip("password-less sudo here: the script would install chromium, not refuse")
        command = ["bash", str(SCRIPT)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(readable)
    assert done.returncode == 1
    assert "make test needs: chromium" in done.stderr
    assert "sudo apt-get install --no-install-recommends chromium" in done.stderr
