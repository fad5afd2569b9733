"""One source's part of the evidence ring (sans-I/O): its blocks, oldest first, written frame by frame
or a read's batch at a time, sealed and packed, expired by time and dropped for memory as its owner,
`EvidenceRings` (edge_agent/evidence/ring.py, where the rules are), decides."""

from __future__ import annotations

import math
from collections import deque
from functools import partial
from struct import pack_into
from typing import TYPE_CHECKING

from edge_agent.evidence.blocks import ABSENT, Block, CutBy
from edge_agent.evidence.packing import Packed, pack_rows
from edge_agent.evidence.slices import Coverage, RingSlice
from edge_agent.frames import Frame, FrameBatch

if TYPE_CHECKING:
    from edge_agent.evidence.ring import EvidenceRings

MAX_BLOCK_ROWS = 4096  # a slow source's block still seals within a bounded number of rows
# Sealed blocks of a source in the packer's hands at once. A block the packer holds stays in memory (and
# charged) until it lets go, whatever the ring drops; one still waiting is held raw, charged raw, and
# can be dropped at once. A packer starved of CPU (or of the GIL, by a flood on the event loop) so holds
# at most two blocks, and the ring keeps to its budget at every look.
MAX_IN_PACKER = 2
_NO_EXPIRY = math.inf


class SourceRing:
    """One source's blocks, oldest first; the last one is open (being written) unless it was evicted."""

    __slots__ = (
        "_blocks", "_current", "_expire_after", "_in_packer", "_owner", "_to_pack", "evicted_until", "nbytes",
        "source",
    )  # fmt: skip

    def __init__(self, source: str, owner: EvidenceRings) -> None:
        self.source = source
        self._owner = owner
        self._blocks: deque[Block] = deque()
        self._current: Block | None = None
        # Sealed blocks handed to the packer and not yet back: their rows stay in memory (the packing
        # work holds them) even if evicted meanwhile, so they stay charged until they come back.
        self._in_packer: set[Block] = set()
        self._to_pack: deque[Block] = deque()  # sealed, waiting for the packer, oldest first
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
        whole = start == 0 and end == len(batch)  # the usual case: no copies of the batch's lists
        flat = [batch.wall] * (rows * width)
        flat[0::width] = batch.monos if whole else batch.monos[start:end]
        if block.device:
            devices = batch.device_times
            if devices is None:
                flat[2::width] = [ABSENT] * rows
            else:
                flat[2::width] = devices if whole else devices[start:end]
        values = batch.values if whole else batch.values[start * names : end * names]
        for index in range(names):
            flat[lead + index :: width] = values[index::names]
        # One struct pass writes the doubles in place: array("d", flat) converts cell by cell through
        # the argument parser, about twice the cost (struct caches the compiled format).
        pack_into(f"<{len(flat)}d", block.data, 8 * block.used * width, *flat)
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
        if self._owner.packer is not None and block.used:
            self._to_pack.append(block)
            self._feed_packer()

    def _feed_packer(self) -> None:
        packer = self._owner.packer
        waiting = self._to_pack
        while packer is not None and waiting and len(self._in_packer) < MAX_IN_PACKER:
            block = waiting.popleft()
            self._in_packer.add(block)
            work = partial(pack_rows, block.data, block.width, block.time_columns)
            packer(work, partial(self._packed, block))

    def _packed(self, block: Block, packed: Packed | None) -> None:
        """The packer is done with `block` (on the event loop; `packed` None: it could not pack it): hold
        the packed rows instead if the block is still held; if it was evicted meanwhile, its rows are
        free only now, and so is their charge."""
        self._in_packer.discard(block)
        if block not in self._blocks:
            self._charge(-block.nbytes)
        elif packed is not None:
            self._charge(block.compress(packed))
            self._owner.blocks_packed += 1
        self._feed_packer()

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
        if block not in self._in_packer:  # else charged until the packer lets go of its rows
            self._charge(-block.nbytes)
        if block in self._to_pack:
            self._to_pack.remove(block)
        self._owner.blocks_evicted[reason] += 1
        self._reset_expiry()

    @property
    def in_packer(self) -> int:
        """Sealed blocks handed to the packer and not back yet (held and charged, evicted or not)."""
        return len(self._in_packer)

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
