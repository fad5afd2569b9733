"""What the agent's process imports (issue 12 item 4: its idle memory is mostly imported code). A real
`edge-agent run` under `python -X importtime`, up until its control API answers, then stopped: the
modules of other commands (emulators, simulated bench, backtest, demo) and the libraries a run needs
only when configured (boto3 without S3; matplotlib and numpy, which only the plot's child process
loads; pandas; playwright) are not among them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

NOT_IN_A_RUN = (
    "edge_agent.emulators",
    "edge_agent.bench_sim",
    "edge_agent.backtest",
    "edge_agent.demo",
    "edge_agent.recorder.export",
    "boto3",
    "botocore",
    "matplotlib",
    "numpy",
    "pandas",
    "playwright",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_run_imports_only_what_it_runs(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
bench = "bench-imports"
state_dir = "{tmp_path / "state"}"
[[serial]]
name = "bench"
url = "loop://"
columns = ["v"]
[lens]
enabled = false
[atlas]
enabled = false
[control]
listen = "127.0.0.1:{port}"
""",
        encoding="utf-8",
    )
    log = (tmp_path / "stderr").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "edge_agent", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30.0
        up = False
        while not up and time.monotonic() < deadline and proc.poll() is None:  # bounded: 30 s
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as reply:
                    up = reply.status == 200
            except OSError:
                time.sleep(0.1)
        assert up, "the agent did not come up"
        time.sleep(0.5)  # its components started (their lazy imports happen at start)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    log.seek(0)
    modules = {
        line.split("|")[2].strip()
        for line in log.read().decode(errors="replace").splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    # (A module imported by `importlib.import_module`, as the command's own is, has no line of its own.)
    assert {"edge_agent.cli", "edge_agent.agent", "aiohttp"} <= modules  # the parse found the run's
    unexpected = sorted(m for m in modules if m.startswith(NOT_IN_A_RUN))
    assert unexpected == []
