"""glibc's malloc settings the agent is deployed with (systemd unit and Dockerfile alike, and the
benchmarks run it so: bench/soak_lib/agent_bench.py), and what they do, checked in a child process: a
256 KiB block (an evidence ring block) is mapped on its own, also after a larger buffer was freed, so
dropping it gives its pages back; with glibc's defaults the threshold rises to the larger buffer's size
at that free and the block comes from the heap."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from soak_lib.agent_bench import unit_malloc_env  # noqa: E402

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


def test_the_unit_and_the_dockerfile_set_the_same_malloc_settings() -> None:
    env = unit_malloc_env(REPO)
    assert env == {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}
    dockerfile = (REPO / "Dockerfile").read_text()
    for name, value in env.items():
        assert re.search(rf"^\s+{name}={value}\b", dockerfile, re.MULTILINE), name


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
@pytest.mark.parametrize(("deployed", "mapped"), [(True, 1), (False, 0)])
def test_ring_sized_blocks_stay_mapped_on_their_own_after_a_larger_free(deployed: bool, mapped: int) -> None:
    env = unit_malloc_env(REPO) if deployed else {}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == mapped
