"""The detector's batch path (sans-I/O): the frames of one read, packed (`FrameBatch`), through the same
checks, dropout watches and tracker slots that `Detector.on_frame` would take them through one by one,
with the same result: the same anomaly events in the same order, handed on row by row (`emit` after each
row that has any, as the agent hands on `on_frame`'s events after each frame, so the incident grouper
sees the tracker as it would).

Why it is exact: a check's state depends only on its own channel's samples, a dropout watch's only on
its own frames, and a slot's only on what it is fed (each check and each watch has a slot of its own).
So each check runs down its own column until its first active sample (`first_active`: C-level passes
where the check has them, e.g. a limits check's min and max) and each watch notes the frames before the
first that ends a gap (`quiet_prefix`). From there on (from the first row for a slot that is live), each
verdict is kept as a touch of the slot, with what the check left on itself for it; then the touches of
every check and watch are applied in the order `on_frame` would apply them (row, then place in the
source plan), each gated by `slot.live` at that moment as `on_frame` gates it. A quiet batch, the usual
case, makes no touch at all: per row and channel it costs no Python.

Only batches whose watched channels are all finite take this path (NaN is a missing sample and ±inf an
off-scale one for `on_frame`); others, and a source's first batch, go frame by frame.
tests/detect/test_batch.py compares both paths on random streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

from edge_agent.detect.anomaly import AnomalyEvent
from edge_agent.detect.dropout import DropoutWatch
from edge_agent.frames import FrameBatch

if TYPE_CHECKING:
    from edge_agent.detect.checks import ValueCheck
    from edge_agent.detect.detector import SourcePlan
    from edge_agent.detect.tracker import Slot

Emit = Callable[[Sequence[AnomalyEvent]], None]
# What `on_frame` would do at a row and place in the plan: (row, place, watch, None, ...) calls the
# watch's `seen`; (row, place, None, slot, verdict, value, excursion, threshold, onset_mono, onset_wall)
# observes a check's verdict.
Touch = tuple[
    int, int, DropoutWatch | None, "Slot | None", bool, float, float, str, float | None, float | None
]
_ORDER = itemgetter(0, 1)


def run_batch(plan: SourcePlan, batch: FrameBatch, emit: Emit) -> bool:
    """The batch through `plan` (its source's); False, having changed nothing, when it must go frame by
    frame instead."""
    monos = batch.monos
    if not monos:
        return True
    values, width = batch.values, batch.width
    where = {name: index for index, name in enumerate(batch.names)}
    columns: list[list[float] | None] = []
    for channel, _checks, _watches in plan.channels:
        index = where.get(channel)
        if index is None:
            columns.append(None)  # not in these frames: on_frame skips the channel
            continue
        samples = values[index::width]
        total = sum(samples)
        if total - total != 0.0:
            return False  # NaN or ±inf (or a sum that overflows): on_frame's meanings, frame by frame
        columns.append(samples)
    walls = plan.walls.walls_of(monos, batch.wall)
    touches: list[Touch] = []
    place = 0
    for watch in plan.any_frame:
        _watch(watch, place, monos, walls, touches)
        place += 1
    for (_channel, checks, watches), column in zip(plan.channels, columns, strict=True):
        if column is None:
            place += len(watches) + len(checks)
            continue
        for watch in watches:
            _watch(watch, place, monos, walls, touches)
            place += 1
        for check, slot in checks:
            _check(check, slot, place, column, monos, walls, touches)
            place += 1
    if touches:
        _apply(touches, monos, walls, emit)
    return True


def _watch(
    watch: DropoutWatch, place: int, monos: list[float], walls: list[float], touches: list[Touch]
) -> None:
    quiet = watch.quiet_prefix(monos)
    if quiet:
        watch.note_frame(monos[quiet - 1], walls[quiet - 1])
    touches.extend(
        (row, place, watch, None, False, 0.0, 0.0, "", None, None) for row in range(quiet, len(monos))
    )


def _check(
    check: ValueCheck,
    slot: Slot,
    place: int,
    column: list[float],
    monos: list[float],
    walls: list[float],
    touches: list[Touch],
) -> None:
    row = 0
    if not slot.live:
        row = check.first_active(column, monos, walls)
        if row == len(column):
            return
        touches.append(
            (row, place, None, slot, True, check.value, check.excursion, check.threshold,
             check.onset_mono, check.onset_wall)
        )  # fmt: skip
        row += 1
    observe = check.observe
    for at in range(row, len(column)):
        verdict = observe(column[at], monos[at], walls[at])
        if verdict is not None:
            touches.append(
                (at, place, None, slot, verdict, check.value, check.excursion, check.threshold,
                 check.onset_mono, check.onset_wall)
            )  # fmt: skip


def _apply(touches: list[Touch], monos: list[float], walls: list[float], emit: Emit) -> None:
    touches.sort(key=_ORDER)
    events: list[AnomalyEvent] = []
    current = touches[0][0]
    for touch in touches:
        row = touch[0]
        if row != current:
            if events:
                emit(events)
                events = []
            current = row
        _, _, watch, slot, verdict, value, excursion, threshold, onset_mono, onset_wall = touch
        if watch is not None:
            events.extend(watch.seen(monos[row], walls[row]))
            continue
        assert slot is not None
        if not (verdict or slot.live):
            continue  # as on_frame: a clear sample changes nothing for a slot that is not live
        event = slot.observe(
            verdict, value, excursion, threshold, monos[row], walls[row],
            onset_mono=onset_mono, onset_wall=onset_wall,
        )  # fmt: skip
        if event is not None:
            events.append(event)
    if events:
        emit(events)
