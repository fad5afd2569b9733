"""Sans-I/O evidence rings: the last `seconds` of every source's frames, bounded in bytes.

Each source's frames are stored packed (edge_agent/evidence/blocks.py): blocks of about `block_bytes`,
one `array('d')` each, allocated whole, filled row by row and dropped whole from the old end. One memory
budget covers every source together (what the data path's budget leaves the ring, at most
`evidence.memory_mb`: edge_agent/memory_budget.py): what the blocks really occupy
(`sys.getsizeof` of the array, the block and its struct, getter, layout tuples and channel names) is
charged when a block is made and given back when it is sealed short or dropped. Two bounds apply,
whichever is hit first:

- time: a block whose newest row is older than the source's newest frame minus `seconds` is dropped
  (so the ring keeps at least `seconds`, plus at most one block);
- bytes: before a block is made, blocks are dropped until it fits, each time the oldest block of the
  source that holds the most bytes. A source that floods (wide lines, a fast port) is cut before a
  quiet one loses anything, and no source's history is cut below what the others hold.

When the data path's other consumers (the recorder's queue, the lens queue, the live page) grow, the
ring gives way: at every batch of frames (every `CHECK_EVERY` single frames) it drops blocks, by the same
rule, until it and they fit the data path's budget again.

Given a `packer` (the agent's runs in a thread of its own: edge_agent/evidence/packer.py), every block
is packed when it is sealed (`packing.pack_rows`: zlib of its columns) and held packed from then on; its
raw bytes are charged until the packed ones are swapped in (on the event loop, where the ring lives), so
the budget never counts on a compression that has not happened. A source hands the packer at most
`MAX_IN_PACKER` blocks at a time; the others wait raw and can be dropped, so a starved packer never
holds the budget. Only the evidence writer, in its thread, decompresses (a slice's bounds need at most
the mono column of the two blocks at its ends).

A row wider than the whole budget is not kept (counted). Whatever was dropped for memory is remembered
per source (`evicted_until`), so a slice that reaches back into it says so (`Coverage.cut_by`), and
`slices_cut` counts how often evidence came out shorter than asked, by reason.

The per-frame path (`add`) is two C calls whatever the width (the layout's values out of the frame's
dict, packed into the block in place) and one comparison for the time bound; blocks are made, sealed
and dropped only every few hundred or thousand frames.
Frames are assumed to arrive in `mono` order (each source's timeline never goes back:
edge_agent/serial/clock.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.config import DEFAULT_EVIDENCE_MEMORY_MB, EvidenceSection
from edge_agent.evidence.blocks import CutBy
from edge_agent.evidence.packing import Packed
from edge_agent.evidence.slices import Coverage, RingSlice
from edge_agent.evidence.source_ring import SourceRing
from edge_agent.frames import Frame, FrameBatch

if TYPE_CHECKING:
    from edge_agent.memory_budget import DataPathBudget

# Runs `work` (off the event loop, if it likes) and then `done` with its result, on the event loop.
Packer = Callable[[Callable[[], Packed], Callable[[Packed | None], None]], None]

# 256 KiB blocks: ~3,300 rows of 8 channels (0.65 s at 5,000 lines/s), so the time bound overshoots by
# little; a block's fixed part (~1 kB for 8 channels, ~20 kB of names and tuples for 270) is well under
# 10 % of it; and one block is small against the budget (at most 1/16 of it, see below).
DEFAULT_BLOCK_BYTES = 256 * 1024
MIB = 1024 * 1024
# Single frames (JSON lines) between two looks at the data path's budget: what the other consumers can
# grow by before the ring gives way is at most this many frames' worth.
CHECK_EVERY = 16


class EvidenceRings:
    """A `SourceRing` per source (made on its first frame) under one byte budget."""

    __slots__ = (
        "_data_path",
        "_rings",
        "_unchecked",
        "block_bytes",
        "blocks_evicted",
        "blocks_packed",
        "budget",
        "frames_not_kept",
        "nbytes",
        "packer",
        "seconds",
        "slices_cut",
    )

    def __init__(
        self,
        seconds: float,
        memory_bytes: int = int(DEFAULT_EVIDENCE_MEMORY_MB * MIB),
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        data_path: DataPathBudget | None = None,
        packer: Packer | None = None,
    ) -> None:
        """`memory_bytes`: the ring's own bound; with `data_path`, the ring holds at most what that
        budget leaves it too (`DataPathBudget.ring_limit`), and gives way when the others grow."""
        if not (seconds > 0 and math.isfinite(seconds)) or memory_bytes < 1 or block_bytes < 1:
            raise ValueError("evidence rings need seconds > 0, memory_bytes >= 1 and block_bytes >= 1")
        self.seconds = seconds
        self.budget = memory_bytes
        # Blocks of at most 1/16 of the budget, so a small budget still holds several blocks.
        self.block_bytes = max(1, min(block_bytes, memory_bytes // 16))
        self.nbytes = 0
        self.frames_not_kept = 0
        self.blocks_evicted: dict[CutBy, int] = {"memory": 0, "time": 0}
        self.slices_cut: dict[CutBy, int] = {"memory": 0, "time": 0}
        self._rings: dict[str, SourceRing] = {}
        self._data_path = data_path
        self.packer = packer
        self.blocks_packed = 0
        self._unchecked = 0  # single frames since the last look at the data path's budget

    @classmethod
    def from_config(
        cls, section: EvidenceSection, data_path: DataPathBudget | None = None, packer: Packer | None = None
    ) -> EvidenceRings:
        """The ring of `section`: within `data_path` when given (the agent's), else within its own
        `memory_mb` (the data path's default total when that is unset)."""
        own = DEFAULT_EVIDENCE_MEMORY_MB if section.memory_mb is None else section.memory_mb
        if data_path is not None:
            return cls(section.ring_seconds, data_path.ring_cap, data_path=data_path, packer=packer)
        return cls(section.ring_seconds, int(own * MIB), packer=packer)

    def add(self, frame: Frame) -> None:
        ring = self._rings.get(frame.source)
        if ring is None:
            ring = self._rings[frame.source] = SourceRing(frame.source, self)
        ring.add(frame)
        if self._data_path is not None:
            self._unchecked += 1
            if self._unchecked >= CHECK_EVERY:
                self._unchecked = 0
                self.give_way()

    def add_batch(self, batch: FrameBatch) -> None:
        ring = self._rings.get(batch.source)
        if ring is None:
            ring = self._rings[batch.source] = SourceRing(batch.source, self)
        ring.add_batch(batch)
        if self._data_path is not None:
            self.give_way()

    def limit(self) -> int:
        """The most the ring may hold now."""
        if self._data_path is None:
            return self.budget
        return min(self.budget, self._data_path.ring_limit())

    def give_way(self) -> None:
        """Drop blocks (the oldest of the source holding the most, the open one last) until the ring
        fits what the data path's other consumers leave it (all of them, if they leave nothing)."""
        limit = self.limit()
        while self.nbytes > limit and self._evict_largest():
            pass

    def slice(self, source: str, start_mono: float, end_mono: float) -> RingSlice:
        ring = self._rings.get(source)
        if ring is None:
            return RingSlice(source, [], Coverage(source, start_mono, None, None))
        piece = ring.slice(start_mono, end_mono)
        cut_by = piece.coverage()[0].cut_by
        if cut_by is not None:
            self.slices_cut[cut_by] += 1
        return piece

    def make_room(self, nbytes: int) -> bool:
        """Drop blocks until `nbytes` more fit the budget: each time the oldest block of the source
        holding the most. False if it cannot fit even with every other block gone."""
        limit = self.limit()
        if nbytes > limit:
            return False
        while self.nbytes + nbytes > limit:
            if not self._evict_largest():
                return False
        return True

    def _evict_largest(self) -> bool:
        victim = max(
            (ring for ring in self._rings.values() if ring.has_blocks()),
            key=lambda ring: ring.nbytes,
            default=None,
        )
        if victim is None:
            return False
        victim.evict_oldest("memory")
        return True

    def settle(self, requester: SourceRing) -> None:
        """After a block is made: its real size may exceed the estimate by a few bytes of dict slack;
        drop old blocks (never the one just made) until the budget holds again."""
        limit = self.limit()
        while self.nbytes > limit:
            candidates = [
                ring
                for ring in self._rings.values()
                if ring.has_blocks() and (ring is not requester or ring.blocks > 1)
            ]
            if not candidates:
                return
            max(candidates, key=lambda ring: ring.nbytes).evict_oldest("memory")

    def ring(self, source: str) -> SourceRing | None:
        return self._rings.get(source)

    @property
    def sources(self) -> list[str]:
        return list(self._rings)

    def status(self) -> dict[str, Any]:
        """For /status and the metrics: bytes held against the budget, span per source, what the
        bounds dropped and how often evidence came out shorter than asked."""
        sources: dict[str, Any] = {}
        for name, ring in list(self._rings.items()):
            oldest, newest = ring.oldest_mono, ring.newest_mono
            sources[name] = {
                "bytes": ring.nbytes,
                "frames": len(ring),
                "span_s": round(newest - oldest, 3) if oldest is not None and newest is not None else 0.0,
            }
        return {
            "budget_bytes": self.limit(),  # what the ring may hold now (the data path's others aside)
            "cap_bytes": self.budget,
            "bytes": self.nbytes,
            "ring_seconds": self.seconds,
            "sources": sources,
            "blocks_evicted": dict(self.blocks_evicted),
            "frames_not_kept": self.frames_not_kept,
            "blocks_packed": self.blocks_packed,
            # Above 0 for long: the packer is behind (starved of CPU), and what it holds is charged raw.
            "blocks_in_packer": sum(ring.in_packer for ring in list(self._rings.values())),
            "slices_cut": dict(self.slices_cut),
        }
