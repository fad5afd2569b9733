"""Dropout (sans-I/O): no frame carrying a channel for `dropout_after` seconds, or the serial link down.

Time-driven: a gap is only visible when time passes without frames, so the detector calls `check(now)`
on its tick, `seen(...)` on every frame that carries the channel (any frame of the source for channel
"*"), and `link_down/link_up` on serial link events. An unplug opens at once, past the debounce: it is a
fact reported by the port, not a noisy measurement. After the link comes back the gap clock restarts,
so the port gets `dropout_after` seconds to deliver its first frame.

Times are the source's timeline (`edge_agent.serial.clock`): with a device clock, frames can arrive
faster than that timeline runs on the host (a recording replayed at 200x, a device that buffered), so
no tick sees the gap. `seen` then finds it in the frames' own times, and gives the same anomaly a tick
at 1x would have: from the last frame before the gap to the first after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import repeat
from operator import add, lt

from edge_agent.config.detection import ANY_CHANNEL
from edge_agent.detect.anomaly import AnomalyEvent
from edge_agent.detect.tracker import Slot

__all__ = ["ANY_CHANNEL", "DropoutWatch"]
_NONE: tuple[AnomalyEvent, ...] = ()


class DropoutWatch:
    __slots__ = ("_due", "_gap_text", "after", "last_mono", "last_wall", "link_down", "link_text", "slot")

    measure = "seconds without frames"

    def __init__(self, after: float, slot: Slot) -> None:
        if not (math.isfinite(after) and after > 0):
            raise ValueError("dropout_after must be > 0 seconds")
        self.after = after
        self.slot = slot
        self.last_mono: float | None = None  # None: the gap clock starts at the first check
        self._due = math.inf  # last_mono + after: a frame from then on ends a gap no tick may have seen
        self.last_wall = 0.0
        self.link_down = False
        self.link_text = ""
        self._gap_text = f"no frame for >= {after:.6g}s"

    def seen(self, mono: float, wall: float) -> Sequence[AnomalyEvent]:
        """A frame carrying the channel arrived: the gap (if any) is over."""
        if mono < self._due and not self.slot.live:  # the per-frame case: nothing to decide
            self.last_mono = mono
            self.last_wall = wall
            self._due = mono + self.after
            self.link_down = False
            return _NONE
        return self._seen_after_gap(mono, wall)

    def note_frame(self, mono: float, wall: float) -> None:
        """The last frame carrying the channel was at `mono`, and it ended no gap: what `seen` does on its
        per-frame path. For a batch runner (`edge-agent backtest`) that calls `seen` only on the frames
        that can change anything (after a gap, or while the slot is live) and notes the others here."""
        self._set_last(mono, wall)
        self.link_down = False

    def quiet_prefix(self, monos: Sequence[float]) -> int:
        """How many of these frames (in order, at least one) `seen` would only note: those before the
        first that ends a gap (or all, or none while the slot is live). Changes nothing."""
        if self.slot.live or not monos[0] < self._due:
            return 0
        after = self.after
        if all(map(lt, monos[1:], map(add, monos, repeat(after)))):
            return len(monos)
        for index in range(1, len(monos)):
            if not monos[index] < monos[index - 1] + after:
                return index
        return len(monos)  # not reached: the pass above found one

    def _seen_after_gap(self, mono: float, wall: float) -> Sequence[AnomalyEvent]:
        last = self.last_mono
        slot = self.slot
        events: list[AnomalyEvent] | None = None
        if last is not None and mono >= self._due and not self.link_down and not slot.is_open:
            events = self._gap_between_frames(last, mono, wall)
        self._set_last(mono, wall)
        self.link_down = False
        if slot.live:
            event = slot.observe(False, 0.0, 0.0, self._gap_text, mono, wall)
            if event is not None:
                events = events or []
                events.append(event)
        return events or _NONE

    def _set_last(self, mono: float, wall: float) -> None:
        self.last_mono = mono
        self.last_wall = wall
        self._due = mono + self.after

    def _gap_between_frames(self, last: float, mono: float, wall: float) -> list[AnomalyEvent]:
        """The condition held from `dropout_after` past the last frame until this one."""
        text, slot = self._gap_text, self.slot
        out: list[AnomalyEvent] = []
        began = last + self.after
        began_wall = self.last_wall + self.after
        for at, at_wall in ((began, began_wall), (mono, wall)):
            event = slot.observe(
                True, at - last, at - began, text, at, at_wall, onset_mono=last, onset_wall=self.last_wall,
            )  # fmt: skip
            if event is not None:
                out.append(event)
        return out

    def check(self, now_mono: float, now_wall: float) -> AnomalyEvent | None:
        last = self.last_mono
        if last is None:
            self._set_last(now_mono, now_wall)
            return None
        gap = max(0.0, now_mono - last)
        if self.link_down:
            return self.slot.observe(
                True, gap, gap, self.link_text, now_mono, now_wall,
                force=True, onset_mono=last, onset_wall=self.last_wall,
            )  # fmt: skip
        if gap >= self.after:
            return self.slot.observe(
                True, gap, gap - self.after, self._gap_text, now_mono, now_wall,
                onset_mono=last, onset_wall=self.last_wall,
            )  # fmt: skip
        if self.slot.live:
            return self.slot.observe(False, gap, 0.0, self._gap_text, now_mono, now_wall)
        return None

    def pending_since(self) -> float | None:
        """When the silence began that this watch would report (its last frame, or when its gap clock
        started), while it has not: None once its anomaly is open or before its clock started."""
        slot = self.slot
        if slot.is_open:
            return None
        return slot.pending_since if slot.live else self.last_mono

    def on_link_down(self, mono: float, wall: float, reason: str) -> AnomalyEvent | None:
        self.link_down = True
        self.link_text = f"serial link down: {reason}" if reason else "serial link down"
        if self.last_mono is None:
            self._set_last(mono, wall)
        return self.check(mono, wall)

    def on_link_up(self, mono: float, wall: float) -> AnomalyEvent | None:
        self.link_down = False
        self._set_last(mono, wall)
        if self.slot.live:
            return self.slot.observe(False, 0.0, 0.0, self._gap_text, mono, wall)
        return None
