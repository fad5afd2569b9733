"""The C allocator's settings for a long-running agent (glibc only; elsewhere nothing is done).

- One malloc arena per CPU-bound thread at most two (`M_ARENA_MAX`): glibc gives every thread that
  allocates its own arena (64 MiB of address space each, and pages it keeps after a burst); the agent's
  threads (the recorder's writer, the evidence packer, the executors) allocate little and rarely at once.
- A fixed mmap threshold (`M_MMAP_THRESHOLD`, 128 KiB, glibc's default start): allocations above it
  (the evidence ring's 256 KiB blocks, the recorder's batches) are mapped on their own and go back to
  the system when freed. Left dynamic, glibc raises the threshold after the first such free, and those
  blocks then come from the heap, where a freed one stays resident until the heap's top is free.
- After start-up, the garbage of importing and configuring (parsed config, schemas built once) is
  collected and the heap's free pages handed back (`malloc_trim`).

bench_ring.py measures what each pays (bench/RESULTS.md, Evidence ring). Environment variables a user
sets (MALLOC_ARENA_MAX and the like) are read by glibc before this runs; these calls then override them
only where they name the same setting, so the settings here are skipped when one is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform

M_MMAP_THRESHOLD = -3  # glibc malloc.h
M_ARENA_MAX = -8
ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def configure() -> bool:
    """Set the arena count and mmap threshold (before the agent starts its threads). False: not glibc."""
    libc = _libc()
    if libc is None:
        return False
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(M_ARENA_MAX, ARENA_MAX)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return True


def release_start_up_garbage() -> bool:
    """Collect what start-up left and give the heap's free pages back. False: not glibc."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
