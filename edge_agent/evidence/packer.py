"""The evidence ring's packer (adapter): compresses sealed blocks in a thread of its own and hands each
result back on the event loop, where the ring swaps it in (edge_agent/evidence/ring.py). One thread:
blocks are sealed a few times a second at most (a 256 KiB block in 1-3 ms of zlib, which lets go of the
GIL), and a single queue keeps them in order. A block still waiting when the agent stops is dropped
with the ring."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from edge_agent.evidence.packing import Packed


class ThreadPacker:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, work: Callable[[], Packed], done: Callable[[Packed | None], None]) -> None:
        loop = asyncio.get_running_loop()  # the ring is fed on the event loop
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence-pack")
        future = loop.run_in_executor(self._pool, work)
        future.add_done_callback(partial(_deliver, done))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _deliver(done: Callable[[Packed | None], None], future: asyncio.Future[Packed]) -> None:
    # Cancelled (the agent stopping) or failed (out of memory): the block stays unpacked, charged in full;
    # `done` is told either way, so the ring knows the packer let go of the block's rows.
    if not future.cancelled() and future.exception() is None:
        done(future.result())
    else:
        done(None)
