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
is packed when it is sealed (`blocks.pack_rows`: zlib of its doubles) and held packed from then on; its
raw bytes are charged until the packed ones are swapped in (on the event loop, where the ring lives), so
the budget never counts on a compression that has not happened. Only the evidence writer, in its thread,
decompresses (a slice's bounds need at most the mono column of the two blocks at its ends).

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
from array import array
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from edge_agent.config import DEFAULT_EVIDENCE_MEMORY_MB, EvidenceSection
from edge_agent.evidence.blocks import ABSENT, Block, Coverage, CutBy, Packed, RingSlice, pack_rows
from edge_agent.frames import Frame, FrameBatch

if TYPE_CHECKING:
    from edge_agent.memory_budget import DataPathBudget

# Runs `work` (off the event loop, if it likes) and then `done` with its result, on the event loop.
Packer = Callable[[Callable[[], Packed], Callable[[Packed], None]], None]

# 256 KiB blocks: ~3,300 rows of 8 channels (0.65 s at 5,000 lines/s), so the time bound overshoots by
# little; a block's fixed part (~1 kB for 8 channels, ~20 kB of names and tuples for 270) is well under
# 10 % of it; and one block is small against the budget (at most 1/16 of it, see below).
DEFAULT_BLOCK_BYTES = 256 * 1024
MAX_BLOCK_ROWS = 4096  # a slow source's block still seals within a bounded number of rows
_NO_EXPIRY = math.inf
MIB = 1024 * 1024
# Single frames (JSON lines) between two looks at the data path's budget: what the other consumers can
# grow by before the ring gives way is at most this many frames' worth.
CHECK_EVERY = 16


class SourceRing:
    """One source's blocks, oldest first; the last one is open (being written) unless it was evicted."""

    __slots__ = ("_blocks", "_current", "_expire_after", "_owner", "evicted_until", "nbytes", "source")

    def __init__(self, source: str, owner: EvidenceRings) -> None:
        self.source = source
        self._owner = owner
        self._blocks: deque[Block] = deque()
        self._current: Block | None = None
        self._expire_after = _NO_EXPIRY  # a frame newer than this makes the oldest block expire
        self.nbytes = 0
        # The newest time of any frame dropped, per reason: a slice starting at or before it is cut.
        self.evicted_until: dict[CutBy, float] = {"memory": -math.inf, "time": -math.inf}

    def add(self, frame: Frame) -> None:
        block = self._current
        if block is not None:
            row = block.used
            values = frame.values
            device_time = frame.device_time
            if (
                row < block.capacity
                and len(values) == len(block.layout)
                and (device_time is None or block.device)
            ):
                try:
                    cells = block.get(values)
                except KeyError:
                    cells = None  # another channel set of the same width
                if cells is not None:
                    offset = row * block.row_bytes
                    if block.device:
                        dev = ABSENT if device_time is None else device_time
                        block.pack(block.data, offset, frame.mono, frame.wall, dev, *cells)
                    else:
                        block.pack(block.data, offset, frame.mono, frame.wall, *cells)
                    block.used = row + 1
                    if frame.mono > self._expire_after:
                        self._expire(frame.mono)
                    return
            if block.write(frame):  # some channels missing: absent cells
                if frame.mono > self._expire_after:
                    self._expire(frame.mono)
                return
        self._start_block(frame)

    def add_batch(self, batch: FrameBatch) -> None:
        """Its rows as `add` of each of its frames would store them: packed into the open block a
        stretch at a time (a few C-level slice copies whatever the row count) while they fit its
        layout, frame by frame where a block must end."""
        monos = batch.monos
        count = len(monos)
        start = 0
        while start < count:
            block = self._current
            if (
                block is None
                or block.used >= block.capacity
                or block.layout != batch.names
                or (batch.device_times is not None and not block.device)
            ):
                self.add(batch.frame(start))  # starts a block (or finds the layout differs)
                start += 1
                continue
            end = min(count, start + block.capacity - block.used)
            self._pack(block, batch, start, end)
            newest = monos[end - 1]
            if newest > self._expire_after:
                self._expire(newest)
            start = end

    @staticmethod
    def _pack(block: Block, batch: FrameBatch, start: int, end: int) -> None:
        """Rows [start, end) of `batch` into `block`'s next rows: `mono, wall, [device_time,] values`."""
        rows = end - start
        width, names = block.width, batch.width
        lead = width - names
        flat = [batch.wall] * (rows * width)
        flat[0::width] = batch.monos[start:end]
        if block.device:
            devices = batch.device_times
            flat[2::width] = [ABSENT] * rows if devices is None else devices[start:end]
        values = batch.values[start * names : end * names]
        for index in range(names):
            flat[lead + index :: width] = values[index::names]
        offset = block.used * width
        block.data[offset : offset + rows * width] = array("d", flat)
        block.used += rows

    def _start_block(self, frame: Frame) -> None:
        """Seal the open block and make one that fits `frame` (its channels, and the previous block's
        while the union stays narrow, so optional fields do not end a block every other line)."""
        owner = self._owner
        previous = self._current
        names: list[str] = list(frame.values)
        device_time = frame.device_time is not None
        if previous is not None:
            self._seal(previous)
            union = list(dict.fromkeys([*previous.layout, *names]))
            if len(union) <= 2 * len(names) + 8:
                names = union
                device_time = device_time or previous.device
        self._current = None
        row_bytes = 8 * (2 + int(device_time) + len(names))
        capacity = max(1, min(MAX_BLOCK_ROWS, owner.block_bytes // row_bytes))
        if not owner.make_room(Block.cost(names, capacity, device_time)):
            capacity = 1
            if not owner.make_room(Block.cost(names, 1, device_time)):
                owner.frames_not_kept += 1
                self.evicted_until["memory"] = max(self.evicted_until["memory"], frame.mono)
                return
        block = Block(names, capacity, device_time)
        self._blocks.append(block)
        self._current = block
        self._charge(block.nbytes)
        owner.settle(self)
        self._reset_expiry()
        if self._current is block:
            block.write(frame)
            if frame.mono > self._expire_after:
                self._expire(frame.mono)

    def _seal(self, block: Block) -> None:
        self._charge(-block.seal())
        if block is self._current:
            self._current = None
        self._reset_expiry()
        packer = self._owner.packer
        if packer is not None and block.used:
            packer(partial(pack_rows, block.data, block.width), partial(self._packed, block))

    def _packed(self, block: Block, packed: Packed) -> None:
        """The packed rows of `block` are ready (on the event loop): hold them instead, if the block is
        still held (evicted meanwhile: nothing to do)."""
        if block in self._blocks:
            self._charge(block.compress(packed))
            self._owner.blocks_packed += 1

    def _charge(self, nbytes: int) -> None:
        self.nbytes += nbytes
        self._owner.nbytes += nbytes

    def _reset_expiry(self) -> None:
        blocks = self._blocks
        oldest = blocks[0] if blocks else None
        if oldest is None or oldest is self._current or oldest.used == 0:
            self._expire_after = _NO_EXPIRY
        else:
            self._expire_after = oldest.mono(oldest.used - 1) + self._owner.seconds

    def _expire(self, newest: float) -> None:
        horizon = newest - self._owner.seconds
        blocks = self._blocks
        while blocks and blocks[0] is not self._current and blocks[0].mono(blocks[0].used - 1) < horizon:
            self.evict_oldest("time")
        self._reset_expiry()

    def evict_oldest(self, reason: CutBy) -> None:
        block = self._blocks.popleft()
        if block is self._current:
            self._current = None
        if block.used:
            last = block.mono(block.used - 1)
            self.evicted_until[reason] = max(self.evicted_until[reason], last)
        self._charge(-block.nbytes)
        self._owner.blocks_evicted[reason] += 1
        self._reset_expiry()

    def has_blocks(self) -> bool:
        return bool(self._blocks)

    def slice(self, start: float, end: float) -> RingSlice:
        """Frames with start <= mono <= end, oldest first; sealed blocks are shared, the open one's
        rows copied. The slice's coverage says whether the ring had already dropped part of the span."""
        segments: list[tuple[Block, int, int]] = []
        for block in self._blocks:
            used = block.used
            if not used or block.mono(used - 1) < start:
                continue
            if block.mono(0) > end:
                break
            lo, hi = block.bounds(start, end)
            if lo < hi:
                if block is self._current:
                    segments.append((block.copy_rows(lo, hi), 0, hi - lo))
                else:
                    segments.append((block, lo, hi))
        cut_by: CutBy | None = None
        if self.evicted_until["memory"] >= start:
            cut_by = "memory"
        elif self.evicted_until["time"] >= start:
            cut_by = "time"
        covered_from = segments[0][0].mono(segments[0][1]) if segments else None
        return RingSlice(self.source, segments, Coverage(self.source, start, covered_from, cut_by))

    @property
    def oldest_mono(self) -> float | None:
        for block in self._blocks:
            if block.used:
                return block.mono(0)
        return None

    @property
    def newest_mono(self) -> float | None:
        for block in reversed(self._blocks):
            if block.used:
                return block.mono(block.used - 1)
        return None

    @property
    def blocks(self) -> int:
        return len(self._blocks)

    def __len__(self) -> int:
        return sum(block.used for block in self._blocks)


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
            "slices_cut": dict(self.slices_cut),
        }
