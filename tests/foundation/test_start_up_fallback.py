"""`edge-agent run`'s last net for configuration errors: a core that refuses a value of a config the
loader and the preflight passed (a `ValueError` while the agent is built) is exit 78 with the config file
and the reason, not a traceback (a unit under systemd would be retried five times with nothing readable).

No config known reaches it any more (the preflight builds every core that checks its parameters, as the
agent builds them), so the test reaches it by its documented hook, `Daemon.agent_factory`: the real CLI
in a real subprocess, whose agent refuses to be built as a core would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The CLI's entry point, with the agent's constructor replaced by one that refuses the config.
REFUSING_AGENT = """
import sys
from edge_agent import cli, run

def refuse(config, **wiring):
    raise ValueError("evidence.ring_seconds (5) must exceed what no check knows yet")

run.Daemon.agent_factory = refuse
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_core_refusing_a_config_at_start_up_is_exit_78_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"  # a config that starts: no ports, lens and Atlas off
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[lens]\nenabled = false\n[atlas]\nenabled = false\n'
        '[control]\nlisten = "127.0.0.1:0"\n'
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    argv = [sys.executable, "-c", REFUSING_AGENT, "run", "--config", str(config), "--duration", "15"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 78, done
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert str(config) in done.stderr, done.stderr
    assert "(start-up): evidence.ring_seconds (5) must exceed what no check knows yet" in done.stderr
