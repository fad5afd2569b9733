"""The process settings of the tree's systemd unit, for whatever runs the agent as it is deployed: the
benchmarks (bench/soak_lib/agent_bench.py) and the end-to-end tests (tests/e2e, tests/service_e2e).
Standard library only: the tests import it by path."""

from __future__ import annotations

from pathlib import Path


def unit_runtime_env(repo: Path) -> dict[str, str]:
    """The process settings the tree's systemd unit runs the agent with: glibc's malloc (MALLOC_*) and
    Python's (PYTHON*, e.g. PYTHONOPTIMIZE), not the agent's own config (EDGE_AGENT_*). The agent is
    measured, and the end-to-end tests run it, as it is deployed; a tree whose unit sets none runs with
    the defaults."""
    unit = repo / "systemd" / "edge-agent.service"
    out: dict[str, str] = {}
    if unit.exists():
        for line in unit.read_text().splitlines():
            if line.startswith("Environment="):
                for item in line.removeprefix("Environment=").split():
                    name, _, value = item.partition("=")
                    if name.startswith(("MALLOC_", "PYTHON")):
                        out[name] = value
    return out
