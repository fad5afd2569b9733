"""The value checks in a backtest: verdicts in numpy batches, a slot fed only where it can change.

Each check of the source plan gets its batch's verdicts for a block (`verdicts.py`); its slot is fed
its active samples and, while it is live (a streak running or an anomaly open), the samples after
them, skipping those that cannot close an anomaly that is clearing. The engine's heap orders the
feeding (rows in order, the source plan's order within a row, as `on_frame` feeds them). The row
book follows every observation made of a slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_agent.backtest.recording import Block
from edge_agent.backtest.rows import RowBook
from edge_agent.backtest.verdicts import Batch, Floats, Ints, Samples, Verdicts
from edge_agent.backtest.watches import Emit, Push
from edge_agent.detect.checks import ValueCheck
from edge_agent.detect.tracker import Slot


@dataclass(slots=True)
class CheckEntry:
    index: int
    sub: int  # its place within a row, as on_frame feeds them
    batch: Batch
    slot: Slot
    channel: str
    verdicts: Verdicts | None = None
    active_pos: Ints = field(default_factory=lambda: np.empty(0, np.int64))
    clear_t: float | None = None  # its open anomaly has been clear since (None: not clearing)
    values: Floats = field(default_factory=lambda: np.empty(0))  # the channel's column in the block


class Checks:
    def __init__(self, rows: RowBook, push: Push, emit: Emit) -> None:
        self.rows = rows
        self._push = push
        self._emit = emit
        self.entries: list[CheckEntry] = []
        self._block: Block | None = None
        self._batch_of: dict[int, Batch] = {}  # id(check) -> its batch

    def add(self, sub: int, batch: Batch, slot: Slot, channel: str) -> None:
        self.entries.append(CheckEntry(len(self.entries), sub, batch, slot, channel))
        self._batch_of[id(batch.check)] = batch

    def pending_since_at(self, now: float) -> Callable[[ValueCheck], float | None]:
        """Each check's `pending_since` as the live check would answer it after the samples up to
        `now`: the batches, not the checks, hold that state (`Detector.pending_reports`)."""
        batch_of = self._batch_of

        def pending_since(check: ValueCheck) -> float | None:
            batch = batch_of.get(id(check))
            return check.pending_since() if batch is None else batch.pending_since(now)

        return pending_since

    def setup(self, block: Block, samples: dict[str, Samples], columns: dict[str, Floats]) -> None:
        """A new block: `samples[channel]` its samples of the channel (NaN left out), `columns[channel]`
        the channel's column (off-scale values clipped, as `on_frame` sees them)."""
        self._block = block
        for entry in self.entries:
            verdicts = entry.batch.evaluate(samples[entry.channel])
            entry.verdicts = verdicts
            entry.active_pos = np.flatnonzero(verdicts.active)
            entry.values = columns[entry.channel]

    def push_live(self) -> None:
        """Each check's first sample to feed in this block: its first verdict while its slot is live
        across the block boundary, else its first active one."""
        for index, entry in enumerate(self.entries):
            assert entry.verdicts is not None
            if entry.slot.live and entry.verdicts.at.size:
                self._push_check(index, 0)
            elif entry.active_pos.size:
                self._push_check(index, int(entry.active_pos[0]))

    def _push_check(self, index: int, pos: int) -> None:
        entry = self.entries[index]
        assert entry.verdicts is not None
        self._push(int(entry.verdicts.at[pos]), entry.sub, index, pos)

    def feed(self, index: int, pos: int) -> None:
        entry = self.entries[index]
        verdicts = entry.verdicts
        block = self._block
        assert verdicts is not None and block is not None
        at = int(verdicts.at[pos])
        t = float(block.t[at])
        row = int(block.rows[at])
        slot = entry.slot
        active = bool(verdicts.active[pos])
        was_live = slot.live
        if active:
            batch = entry.batch
            onset: float | None = None
            onset_row: int | None = None
            if batch.asks_check:
                check = batch.check
                verdict = check.observe(float(entry.values[at]), t, t)
                assert verdict is True, "a batch and its check disagree"
                value, excursion, threshold = check.value, check.excursion, check.threshold
                onset = check.onset_mono
            else:
                assert verdicts.value is not None and verdicts.excursion is not None
                value = float(verdicts.value[pos])
                excursion = float(verdicts.excursion[pos])
                threshold = batch.check.threshold if verdicts.thresholds is None else verdicts.thresholds[pos]
                if verdicts.onset_t is not None and not math.isnan(verdicts.onset_t[pos]):
                    onset = float(verdicts.onset_t[pos])
                    onset_row = None if verdicts.onset_row is None else int(verdicts.onset_row[pos])
            event = slot.observe(True, value, excursion, threshold, t, t, onset_mono=onset, onset_wall=onset)
            self.rows.observe(slot.key, was_live, True, excursion, t, row, _moment(onset, onset_row))
        elif was_live:
            event = slot.observe(False, 0.0, 0.0, "", t, t)
            self.rows.observe(slot.key, was_live, False, 0.0, t, row)
        else:  # a tick closed it since this sample was queued: on_frame would not feed it
            event = None
        if event is not None:
            self._emit(event, row)
        if active or not slot.is_open:
            entry.clear_t = None
        elif entry.clear_t is None:
            entry.clear_t = t
        self._next_check(entry, pos)

    def _next_check(self, entry: CheckEntry, pos: int) -> None:
        """The next sample this slot must see: while it is live, the next verdict - but while its open
        anomaly clears, the clear samples before the one that can close it change nothing (the slot
        only notes their time), so it skips to that one, or to the next active sample if sooner."""
        verdicts = entry.verdicts
        block = self._block
        assert verdicts is not None and block is not None
        index = entry.index
        k = int(np.searchsorted(entry.active_pos, pos, side="right"))
        next_active = int(entry.active_pos[k]) if k < entry.active_pos.size else verdicts.at.size
        if not entry.slot.live:
            if next_active < verdicts.at.size:
                self._push_check(index, next_active)
            return
        following = pos + 1
        if entry.clear_t is not None:
            closes = entry.clear_t + entry.slot.spec.debounce.clear_after
            row = int(np.searchsorted(block.t, closes, side="left")) - 1  # one early: float rounding
            candidate = int(np.searchsorted(verdicts.at, row, side="left"))
            following = max(following, min(candidate, next_active))
        if following < verdicts.at.size:
            self._push_check(index, following)


def _moment(t: float | None, row: int | None) -> tuple[float, int | None] | None:
    return None if t is None else (t, row)
