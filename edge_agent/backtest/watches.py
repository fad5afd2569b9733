"""The dropout watches in a backtest: told of every frame, seen only where a frame can change anything.

A `DropoutWatch` decides on two things: the time of its channel's last frame (ticks judge the gap to it),
and the frames that end a gap (`seen` finds the gap in their times when no tick did). The engine feeds
`seen` the frames that end a gap of `dropout_after` (by either judgement: `now - last >= after` for a
tick, `frame >= last + after` for `seen`, which can differ by a float rounding) and, while the watch's
slot is live, the frames after (skipping, while its open anomaly clears, those that cannot close it);
every other frame is one `seen` would only have noted, and `note_frame` notes the latest before each
tick or feed. The row book follows every observation the watch makes of its slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_agent.backtest.recording import Block
from edge_agent.backtest.rows import RowBook
from edge_agent.backtest.verdicts import Floats, Ints
from edge_agent.detect.anomaly import AnomalyEvent, AnomalyOpened
from edge_agent.detect.dropout import ANY_CHANNEL, DropoutWatch

# (block frame index, order within the row, watch index, position among the watch's frames)
Push = Callable[[int, int, int, int], None]
Emit = Callable[[AnomalyEvent, int | None], None]


@dataclass(slots=True)
class WatchEntry:
    index: int
    sub: int
    watch: DropoutWatch
    channel: str
    times: Floats = field(default_factory=lambda: np.empty(0))
    at: Ints = field(default_factory=lambda: np.empty(0, np.int64))
    gap_starts: Floats = field(default_factory=lambda: np.empty(0))
    gap_ends: Ints = field(default_factory=lambda: np.empty(0, np.int64))  # samples that end a gap
    clear_t: float | None = None
    carried: tuple[float, int | None] | None = None  # last frame before this block (time, row)
    queued: bool = False  # a sample of it is in the heap to be seen
    fed: int = -1  # the last sample (position in this block) seen or noted
    last_row: int | None = None


class Watches:
    def __init__(self, rows: RowBook, push: Push, emit: Emit) -> None:
        self.rows = rows
        self._push = push
        self._emit = emit
        self.entries: list[WatchEntry] = []
        self._block: Block | None = None

    def add(self, sub: int, watch: DropoutWatch, channel: str, t0: float) -> None:
        # Not yet told of a frame: its gap clock is set by the first tick, at the first row's time.
        self.entries.append(WatchEntry(len(self.entries), sub, watch, channel, carried=(t0, None)))

    def setup(self, block: Block, channel_at: dict[str, Ints]) -> None:
        """A new block; `channel_at[channel]`: the block frames that carry a value of it (NaN: none)."""
        self._block = block
        for entry in self.entries:
            at = np.arange(len(block)) if entry.channel == ANY_CHANNEL else channel_at[entry.channel]
            entry.at = at
            entry.times = block.t[at]
            entry.queued = False
            entry.fed = -1
            self._gaps(entry)

    def carry(self, block: Block) -> None:
        for entry in self.entries:
            if entry.times.size:
                entry.carried = (float(entry.times[-1]), int(block.rows[entry.at[-1]]))

    def push_live(self) -> None:
        for entry in self.entries:
            if entry.watch.slot.live and not entry.queued and entry.at.size:
                self._push_watch(entry, 0)

    def push_after_tick(self, now: float) -> None:
        """A tick made a watch live: the first frame after it is the one that may clear it."""
        for entry in self.entries:
            if entry.watch.slot.live and not entry.queued:
                k = int(np.searchsorted(entry.times, now, side="right"))
                if k < entry.times.size:
                    self._push_watch(entry, k)

    def _push_watch(self, entry: WatchEntry, pos: int) -> None:
        entry.queued = True
        self._push(int(entry.at[pos]), entry.sub, entry.index, pos)

    def _gaps(self, entry: WatchEntry) -> None:
        """Where this channel goes `dropout_after` without a frame: the tick loop must run before the
        frame that ends such a gap (a trigger), and may skip to the gap's start + dropout_after."""
        after = entry.watch.after
        times = entry.times
        carried = [entry.carried[0]] if entry.carried is not None else []
        starts = np.concatenate((carried, times))
        ends = np.concatenate((starts[1:], [math.inf]))
        # A tick judges a gap as `now - last >= after`, `seen` as `frame >= last + after`: in floats the
        # two can differ by a rounding, so a frame that ends a gap by either is seen.
        gaps = np.flatnonzero((ends - starts >= after) | (ends >= starts + after))
        entry.gap_starts = starts[gaps]
        ending = gaps + 1 - len(carried)  # the frame (in this block) that ends each gap
        entry.gap_ends = ending[(ending >= 0) & (ending < times.size)]
        for j in entry.gap_ends.tolist():  # seen by the watch, which may find the gap in the frame times
            self._push(int(entry.at[j]), entry.sub, entry.index, j)

    def feed(self, index: int, pos: int) -> None:
        entry = self.entries[index]
        block = self._block
        assert block is not None
        if pos <= entry.fed:  # queued twice (as the end of a gap and as the next while live)
            return
        self._note_frames(entry, pos)
        at = int(entry.at[pos])
        t = float(block.t[at])
        row = int(block.rows[at])
        watch = entry.watch
        slot = watch.slot
        was_live, was_open = slot.live, slot.is_open
        last = watch.last_mono
        onset = (last, entry.last_row) if last is not None else None
        events = list(watch.seen(t, t))
        entry.fed = pos
        entry.last_row = row
        if onset is not None and t >= onset[0] + watch.after and not was_open:
            # `seen` found the gap in the frame times: active from `dropout_after` past the last frame
            # (between the rows: this row) and at this frame, from the last frame on; an anomaly that
            # opened at the first of the two is reported as it was then.
            began = onset[0] + watch.after
            self.rows.observe(slot.key, was_live, True, 0.0, began, row, onset)
            while events and isinstance(events[0], AnomalyOpened) and events[0].anomaly.opened_mono < t:
                self._emit(events.pop(0), row)
            self.rows.observe(slot.key, True, True, t - began, t, row, onset)
            was_live = True
        if was_live:
            self.rows.observe(slot.key, was_live, False, 0.0, t, row)
        for event in events:
            self._emit(event, row)
        entry.queued = False
        if not slot.is_open:
            entry.clear_t = None
        elif entry.clear_t is None:
            entry.clear_t = t
        if not slot.live:
            return
        # As for a check: skip the frames that cannot close it, but not past the end of the next gap
        # (a tick in that gap may make it active again, and the frame after it must be seen).
        following = pos + 1
        if entry.clear_t is not None:
            closes = entry.clear_t + slot.spec.debounce.clear_after
            candidate = int(np.searchsorted(entry.times, closes, side="left")) - 1
            g = int(np.searchsorted(entry.gap_ends, pos, side="right"))
            gap_end = int(entry.gap_ends[g]) if g < entry.gap_ends.size else entry.at.size
            following = max(following, min(candidate, gap_end))
        if following < entry.at.size:
            self._push_watch(entry, following)

    def sync(self, now: float) -> None:
        """Each watch told of its last frame as of `now` (every frame up to it that ends a gap has been
        seen already: they are queued; the others `seen` would only have noted)."""
        for entry in self.entries:
            self._note_frames(entry, int(np.searchsorted(entry.times, now, side="right")))

    def _note_frames(self, entry: WatchEntry, upto: int) -> None:
        """The watch's last frame: the one before position `upto` of this block (or the last before the
        block), unless it already knows a later one."""
        watch = entry.watch
        known = -math.inf if watch.last_mono is None else watch.last_mono
        if upto - 1 > entry.fed and self._block is not None:
            k = upto - 1
            t = float(entry.times[k])
            if t >= known:
                watch.note_frame(t, t)
                entry.last_row = int(self._block.rows[entry.at[k]])
            entry.fed = k
        elif upto == 0 and entry.fed < 0:
            self._note_carried(entry, known)

    def note_last_frames(self) -> None:
        """The recording ended: each watch told of its channel's last frame, as `on_frame` left it (the
        incident grouper reads what silence is in progress, `Detector.pending_reports`)."""
        for entry in self.entries:
            last = entry.watch.last_mono
            self._note_carried(entry, -math.inf if last is None else last)

    @staticmethod
    def _note_carried(entry: WatchEntry, known: float) -> None:
        carried = entry.carried  # the last frame of an earlier block (row None: no frame yet)
        if carried is not None and carried[1] is not None and carried[0] > known:
            entry.watch.note_frame(carried[0], carried[0])
            entry.last_row = carried[1]

    def tick_needed(self, now: float) -> bool:
        """Would a tick at `now` change a watch (the first tick sets a watch's clock; a live watch is
        judged at every tick; a due one opens)?"""
        for entry in self.entries:
            watch = entry.watch
            last = watch.last_mono
            if watch.slot.live or last is None or max(0.0, now - last) >= watch.after:
                return True
        return False

    def next_due(self) -> float:
        """The earliest time a watch can be due (its next gap's start + dropout_after)."""
        due = math.inf
        for entry in self.entries:
            last = entry.watch.last_mono
            assert last is not None
            k = int(np.searchsorted(entry.gap_starts, last, side="left"))
            start = float(entry.gap_starts[k]) if k < entry.gap_starts.size else math.inf
            if entry.last_row is None:  # its last time was set by a tick, not by a frame
                start = min(start, last)
            due = min(due, start + entry.watch.after)
        return due

    def before_tick(self, now: float) -> list[tuple[WatchEntry, bool, float | None, float | None]]:
        out = []
        for entry in self.entries:
            last = entry.watch.last_mono
            gap = None if last is None else max(0.0, now - last)
            out.append((entry, entry.watch.slot.live, gap, last))
        return out

    def after_tick(
        self, now: float, row: int | None, before: list[tuple[WatchEntry, bool, float | None, float | None]]
    ) -> None:
        """What each watch's `check` observed at the tick, for the row book (the same judgement)."""
        for entry, was_live, gap, last in before:
            watch = entry.watch
            if gap is None:
                continue
            if gap >= watch.after:
                onset = (last, entry.last_row) if last is not None else None
                self.rows.observe(watch.slot.key, was_live, True, gap - watch.after, now, row, onset)
                entry.clear_t = None
            elif was_live:
                self.rows.observe(watch.slot.key, was_live, False, 0.0, now, row)
