"""Sealed blocks of the evidence ring held compressed (issue 12 item 4): the same frames bit for bit as an
unpacked ring, a fraction of the bytes (accounted as they are), slices that cut a packed block in the
middle, and the agent's packer that compresses in a thread of its own and swaps on the event loop while
the evidence writer reads slices in another thread."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

from edge_agent.evidence import EvidenceRings
from edge_agent.evidence.packer import ThreadPacker
from edge_agent.evidence.packing import Packed
from edge_agent.evidence.ring import MIB
from edge_agent.evidence.source_ring import MAX_IN_PACKER
from edge_agent.frames import FrameBatch

from .test_ring import accounted_right, keys, real_bytes, the_ring

WALL0 = 1_776_000_000.0
NAMES = tuple(f"ch{c}" for c in range(8))


def pack_at_once(work: Callable[[], Packed], done: Callable[[Packed], None]) -> None:
    done(work())


def batches(count: int, per_read: int = 40, rate: float = 5000.0) -> list[FrameBatch]:
    """8-channel reads as the CSV decoder packs them: a sensor with 4-decimal noise on every channel."""
    out = []
    k = 0
    while k < count:
        rows = min(per_read, count - k)
        monos = [(k + i) / rate for i in range(rows)]
        values = [
            round(1.0 + c * 0.1 + 0.01 * math.sin(0.37 * (k + i) * (c + 1)), 4)
            for i in range(rows)
            for c in range(8)
        ]
        out.append(FrameBatch("bench", WALL0 + k / rate, NAMES, monos, values))
        k += rows
    return out


def test_a_packed_ring_holds_the_same_frames_in_a_fraction_of_the_bytes() -> None:
    plain = EvidenceRings(30.0)
    packed = EvidenceRings(30.0, packer=pack_at_once)
    for batch in batches(60_000):
        plain.add_batch(batch)
        packed.add_batch(batch)
    assert packed.blocks_packed > 10
    assert packed.nbytes < 0.6 * plain.nbytes, (packed.nbytes, plain.nbytes)
    assert accounted_right(the_ring(packed))
    for start, end in [(-1.0, 100.0), (1.2345, 7.77), (3.0001, 3.0002), (11.99, 12.5), (50.0, 60.0)]:
        got, want = packed.slice("bench", start, end), plain.slice("bench", start, end)
        assert len(got) == len(want)
        assert keys(got) == keys(want)
        assert got.channels() == want.channels() == list(NAMES) or not len(want)
        if len(want):
            assert keys([got[0], got[-1]]) == keys([want[0], want[-1]])
    assert packed.status()["blocks_packed"] == packed.blocks_packed


async def test_the_thread_packer_swaps_on_the_loop_while_the_writer_reads() -> None:
    """Blocks are packed in the packer's thread and swapped in on the loop (the ring's bytes drop); a
    slice taken before the swaps, walked in another thread meanwhile, reads what was stored."""
    packer = ThreadPacker()
    rings = EvidenceRings(30.0, packer=packer)
    plain = EvidenceRings(30.0)
    feed = batches(40_000)
    for batch in feed[:500]:
        rings.add_batch(batch)
        plain.add_batch(batch)
    piece, want = rings.slice("bench", 0.5, 3.5), keys(plain.slice("bench", 0.5, 3.5))
    raw = rings.nbytes
    walked: list[object] = []
    reader = threading.Thread(target=lambda: walked.extend(keys(piece)))
    reader.start()
    for batch in feed[500:]:
        rings.add_batch(batch)
        plain.add_batch(batch)
        await asyncio.sleep(0)  # the loop runs: packed blocks come back
    for _ in range(200):  # the last blocks sealed: bounded wait for their packing
        if rings.blocks_packed >= the_ring(rings).blocks - 2:
            break
        await asyncio.sleep(0.01)
    reader.join(10.0)
    packer.close()
    assert walked == want
    assert rings.blocks_packed >= the_ring(rings).blocks - 2 > 0
    assert rings.nbytes < plain.nbytes and raw > 0
    assert keys(rings.slice("bench", 2.0, 6.0)) == keys(plain.slice("bench", 2.0, 6.0))
    assert accounted_right(the_ring(rings))


def test_a_block_evicted_while_being_packed_stays_charged_until_the_packer_lets_go() -> None:
    """Its rows are held by the packing work until that comes back: charged till then (the budget counts
    what memory really holds: a packer behind on a starved machine once took the process 1.7 MB past
    an 8 MiB budget), then let go, not packed."""
    waiting: list[tuple[Callable[[], Packed], Callable[[Packed | None], None]]] = []
    rings = EvidenceRings(0.5, packer=lambda work, done: waiting.append((work, done)))
    for batch in batches(20_000):
        rings.add_batch(batch)
    ring = the_ring(rings)
    assert rings.blocks_evicted["time"] > 0 and waiting
    assert ring.nbytes > real_bytes(ring) + 256 * ring.blocks  # the evicted ones still with the packer
    before = rings.nbytes
    work, done = waiting[0]  # the first block sealed: long expired
    done(work())
    assert rings.nbytes < before and rings.blocks_packed == 0  # let go, not packed
    held = rings.nbytes
    work, done = waiting[-1]  # the newest sealed block: still held
    done(work())
    assert rings.nbytes < held and rings.blocks_packed == 1
    for _, done in waiting[1:-1]:
        done(None)  # the packer could not: let go all the same
    assert accounted_right(ring)


def test_a_starved_packer_holds_at_most_two_blocks_and_the_budget_holds() -> None:
    """A packer that does not come back (starved of CPU, or of the GIL by a flood on the event loop) is
    handed at most MAX_IN_PACKER blocks: those sealed meanwhile wait raw, charged raw, and memory can drop
    them at once, so the ring keeps to its budget at every batch and keeps taking frames (unbounded, every
    sealed block went to the packer and stayed charged, evicted or not: the blocks the packer held took
    the whole budget and new frames found no room). When the packer comes back, the waiting blocks
    follow, oldest first."""
    waiting: list[tuple[Callable[[], Packed], Callable[[Packed | None], None]]] = []
    budget = 2 * MIB
    rings = EvidenceRings(3600.0, budget, packer=lambda work, done: waiting.append((work, done)))
    for batch in batches(60_000):
        rings.add_batch(batch)
        assert rings.nbytes <= budget
    assert rings.frames_not_kept == 0  # unbounded: the packer's blocks took the whole budget, none fit
    assert len(waiting) == MAX_IN_PACKER == rings.status()["blocks_in_packer"]
    assert rings.blocks_evicted["memory"] > 0
    ring = the_ring(rings)
    first = ring.blocks
    for _ in range(6):  # the packer catches up: what it held is let go (evicted) or packed
        work, done = waiting.pop(0)
        done(work())
        assert len(waiting) <= MAX_IN_PACKER
    assert rings.blocks_packed >= 1
    assert rings.nbytes <= budget and ring.blocks == first
    for work, done in waiting:
        done(work())
    assert accounted_right(ring) and rings.status()["blocks_in_packer"] == 0
    got, want = rings.slice("bench", -1.0, 100.0), batches(60_000)
    assert keys(got) == keys(frame for batch in want for frame in batch.frames())[-len(got) :]
