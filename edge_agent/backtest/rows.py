"""Which data row each anomaly time belongs to.

The tracker knows times, the recording knows rows. The engine tells `RowBook` every observation it
hands a slot (time, row, active or clear, excursion, onset) and every event, and `RowBook` follows the
slot's own rules for its start, peak, clear and open moments, so that each anomaly gets the rows of its
start (the first sample of the condition, or its onset: the last change of a stuck value, the last
frame before a dropout), its opening, its peak and its end (the first clear sample). Moments decided
on the clock between rows (a dropout seen by a tick, a close after `clear_after`) take the next row.

Every event is checked against the tracker's own times: a disagreement raises at once rather than
print a wrong row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_agent.detect.anomaly import Anomaly, AnomalyClosed, AnomalyEvent, AnomalyKey, AnomalyOpened

Moment = tuple[float, int | None]  # (timeline time, data row; None: after the last row)


class RowBookError(RuntimeError):
    """The row bookkeeping disagrees with the tracker: a bug, never a property of the recording."""


@dataclass(frozen=True, slots=True)
class AnomalyRows:
    start: int | None
    opened: int | None
    peak: int | None
    end: int | None = None
    closed: int | None = None


@dataclass(slots=True)
class _SlotMoments:
    start: Moment = (0.0, None)
    peak_excursion: float = -math.inf
    peak: Moment = (0.0, None)
    clear: Moment | None = None
    opened: Moment = (0.0, None)


class RowBook:
    def __init__(self) -> None:
        self._slots: dict[AnomalyKey, _SlotMoments] = {}
        self.by_anomaly: dict[str, AnomalyRows] = {}

    def observe(
        self,
        key: AnomalyKey,
        was_live: bool,
        active: bool,
        excursion: float,
        t: float,
        row: int | None,
        onset: Moment | None = None,
    ) -> None:
        """One `Slot.observe` as the engine made it; `was_live`: the slot's `live` just before it."""
        moments = self._slots.get(key)
        if moments is None:
            moments = self._slots[key] = _SlotMoments()
        if not active:
            if was_live and moments.clear is None:
                moments.clear = (t, row)
            return
        if not was_live:  # a new streak: the slot restarts its start and its peak here
            moments.start = onset if onset is not None and onset[0] <= t else (t, row)
            moments.peak_excursion = -math.inf
        moments.clear = None
        if excursion > moments.peak_excursion:
            moments.peak_excursion = excursion
            moments.peak = (t, row)

    def on_event(self, event: AnomalyEvent, row: int | None) -> AnomalyRows:
        anomaly = event.anomaly
        moments = self._slots.setdefault(anomaly.key, _SlotMoments())
        if isinstance(event, AnomalyOpened):
            moments.opened = (anomaly.opened_mono, row)
        self._check(anomaly, moments)
        end: int | None = None
        closed: int | None = None
        if isinstance(event, AnomalyClosed):
            closed = row
            end = moments.clear[1] if moments.clear is not None else row
            moments.clear = None
        rows = AnomalyRows(moments.start[1], moments.opened[1], moments.peak[1], end, closed)
        self.by_anomaly[anomaly.id] = rows
        return rows

    def forget(self, anomaly_id: str) -> None:
        self.by_anomaly.pop(anomaly_id, None)

    @staticmethod
    def _check(anomaly: Anomaly, moments: _SlotMoments) -> None:
        pairs = [
            ("start", anomaly.started_mono, moments.start[0]),
            ("open", anomaly.opened_mono, moments.opened[0]),
            ("peak", anomaly.peak_mono, moments.peak[0]),
        ]
        if (
            anomaly.closed_mono is not None
            and anomaly.close_reason == "cleared"
            and moments.clear is not None
        ):
            pairs.append(("end", anomaly.ended_mono or 0.0, moments.clear[0]))
        for name, theirs, ours in pairs:
            if theirs != ours:
                raise RowBookError(
                    f"{anomaly.key}: the tracker's {name} time {theirs!r} is not the row book's {ours!r}"
                )
