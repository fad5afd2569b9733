"""The C allocator's settings for `run` (edge_agent/service/allocator.py), checked in a child process
(they are process-wide): with them, a 256 KiB block (an evidence ring block) is mapped on its own, also
after a larger buffer was freed, so dropping it gives its pages back; without them glibc raises its
threshold to the larger buffer's size at that free and the block comes from the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

PROBE = """
import ctypes, sys
from edge_agent.service import allocator

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "configured":
    assert allocator.configure()
libc.free(libc.malloc(1024 * 1024))  # a larger buffer freed: glibc's dynamic threshold rises to it
before = libc.mallinfo2().hblks  # chunks mapped on their own
block = libc.malloc(256 * 1024)
print(libc.mallinfo2().hblks - before)
libc.free(block)
print(allocator.release_start_up_garbage())
"""


def probe(mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, env={}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_ring_sized_blocks_stay_mapped_on_their_own_after_a_free() -> None:
    mapped, trimmed = probe("configured")
    assert int(mapped) == 1 and trimmed == "True"


def test_without_the_settings_glibc_would_take_them_from_the_heap() -> None:
    """The control: what the setting changes (if glibc ever stops raising its threshold, this says so)."""
    mapped, _ = probe("default")
    assert int(mapped) == 0
