"""The process settings the agent is deployed with (systemd unit and Dockerfile alike; the benchmarks and
the end-to-end tests run it so: bench/soak_lib/agent_bench.py), and what they do, checked in child
processes. glibc's malloc: a 256 KiB block (an evidence ring block) is mapped on its own, also after a
larger buffer was freed, so dropping it gives its pages back; with glibc's defaults the threshold rises
to the larger buffer's size at that free and the block comes from the heap. Python's -OO
(PYTHONOPTIMIZE=2): the agent's docstrings are not loaded, and its commands work without them (the
end-to-end tests run `edge-agent run` so: tests/e2e, tests/service_e2e)."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from soak_lib.unit_env import unit_runtime_env  # noqa: E402

PROBE = """
import ctypes

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(1024 * 1024))  # a larger buffer freed: glibc's dynamic threshold rises to it
before = libc.mallinfo2().hblks  # chunks mapped on their own
block = libc.malloc(256 * 1024)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def test_the_unit_and_the_dockerfile_set_the_same_process_settings() -> None:
    env = unit_runtime_env(REPO)
    assert env == {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONOPTIMIZE": "2"}
    dockerfile = (REPO / "Dockerfile").read_text()
    for name, value in env.items():
        assert re.search(rf"^\s+{name}={value}\b", dockerfile, re.MULTILINE), name
    # The image holds the -OO bytecode (its runtime writes none), and the systemd install makes it.
    assert re.search(r"compileall .*-o 2 /opt/edge-agent/lib", dockerfile)
    assert "compileall -q -o 2 /opt/edge-agent/lib" in (REPO / "systemd" / "README.md").read_text()


def _deployed(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python args` as the unit runs it: its process settings, nothing of the developer's environment."""
    full = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **unit_runtime_env(REPO), **env}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=full, cwd=REPO
    )


def test_the_deployed_interpreter_drops_the_agents_docstrings(tmp_path: Path) -> None:
    probe = "import sys, edge_agent.cli, edge_agent.agent; print(sys.flags.optimize, edge_agent.cli.__doc__)"
    done = _deployed(["-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "None"]


@pytest.mark.parametrize(
    ("module", "words"),
    [
        ("edge_agent", "one subcommand per tool"),
        ("edge_agent.lens.runner", "Run the lens side alone"),
        ("edge_agent.service.healthcheck", "GET /healthz"),
    ],
)
def test_each_entry_point_answers_help_without_docstrings(module: str, words: str, tmp_path: Path) -> None:
    done = _deployed(["-m", module, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert words in done.stdout


def test_check_config_runs_without_docstrings_and_asserts(tmp_path: Path) -> None:
    """ExecStartPre: the unit's check-config under -OO, on the example config (secrets from the
    environment): valid; and with an infinite value, exit 78 naming the file and the field."""
    config = tmp_path / "config.toml"
    config.write_text((REPO / "config" / "edge-agent.example.toml").read_text())
    secrets = {
        "ATAI_API_KEY": "lens-key", "ATLAS_URL": "http://127.0.0.1:9", "ATLAS_TOKEN": "atlas-token",
        "EDGE_AGENT_AGENT__STATE_DIR": str(tmp_path / "state"),
    }  # fmt: skip
    done = _deployed(["-m", "edge_agent", "check-config", "--config", str(config)], tmp_path, **secrets)
    assert done.returncode == 0, done.stderr
    assert f"{config}: valid" in done.stdout
    text, count = re.subn(r"^ring_seconds = .*$", "ring_seconds = inf", config.read_text(), flags=re.M)
    assert count == 1
    config.write_text(text)
    done = _deployed(["-m", "edge_agent", "check-config", "--config", str(config)], tmp_path, **secrets)
    assert done.returncode == 78, done.stdout + done.stderr
    assert str(config) in done.stderr and "evidence.ring_seconds" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
@pytest.mark.parametrize(("deployed", "mapped"), [(True, 1), (False, 0)])
def test_ring_sized_blocks_stay_mapped_on_their_own_after_a_larger_free(deployed: bool, mapped: int) -> None:
    env = {k: v for k, v in unit_runtime_env(REPO).items() if k.startswith("MALLOC_")} if deployed else {}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == mapped
