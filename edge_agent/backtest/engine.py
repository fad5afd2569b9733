"""The backtest engine: a recording's blocks through the live rules, tracker and incident grouper.

It gives what the live path gives for the same frames, fed one by one to `Detector.on_frame`, with
`Detector.tick` at every tick of the agent (`TICK_SECONDS` apart on the source's timeline, from the
first row) and the incident grouper after both, as `edge-agent run` replaying the recording at 1x
would. The objects are the live ones (the `Detector`'s checks, slots and dropout watches, the
`IncidentGrouper`); only the work that cannot change anything is skipped:

- the checks' verdicts come in numpy batches (`verdicts.py`); a slot is fed only its active samples and,
  while it is live (a streak running or an anomaly open), the samples after them, in the order
  `on_frame` would feed them (rows in order, the source plan's order within a row) - a quiet channel
  costs no Python per sample (`checks.py`);
- a dropout watch is told of its channel's frames lazily (its last frame is set before each tick) and
  fed `seen` only while its slot is live (`watches.py`);
- a stuck check's state (the incident grouper reads the unchanged run in progress at its ticks,
  `Detector.pending_reports`) is its batch's, answered for the tick's time (`Batch.pending_since`);
- a tick runs only when it can do something: an incident is live, a dropout watch is live or due.
  Every other tick is a no-op in the live code, so skipping it changes nothing.

End of the recording: the ticks go on (without dropout checks: the end of a file is not a silent
device) until what was clearing has closed and every incident's quiet period has passed, then what is
still open is closed there (reason "shutdown", reported as the end of the recording).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_agent.atlas.headline import BenchPorts
from edge_agent.backtest.checks import Checks
from edge_agent.backtest.recording import Block, PlacedMarker
from edge_agent.backtest.rows import AnomalyRows, RowBook
from edge_agent.backtest.steps import StepReplay
from edge_agent.backtest.verdicts import Floats, Samples, batch_for
from edge_agent.backtest.watches import Watches
from edge_agent.config import EdgeAgentConfig
from edge_agent.detect.anomaly import AnomalyEvent, AnomalyOpened, PendingReport
from edge_agent.detect.checks import MAX_FLOAT
from edge_agent.detect.detector import Detector
from edge_agent.detect.dropout import ANY_CHANNEL
from edge_agent.incidents import (
    Incident,
    IncidentClosed,
    IncidentEvent,
    IncidentGrew,
    IncidentGrouper,
    IncidentOpened,
)

TICK_SECONDS = 0.25  # edge_agent.agent.TICK_SECONDS (a test holds them equal)

_MARKER, _CHECK, _WATCH = 1, 2, 3


def tick_time(t0: float, k: int) -> float:
    """The k-th tick after the first row (the live reference in the tests uses this same function)."""
    return t0 + k * TICK_SECONDS


def end_horizon(config: EdgeAgentConfig) -> float:
    """How long after the last row the ticks go on: everything clearing closes, every batch of joins is
    reported and every quiet period passes within it."""
    clear = max((rule.clear_after for rule in config.rules), default=0.0)
    incidents = IncidentGrouper.from_config(config)
    return clear + incidents.close_margin() + incidents.update_after + 2 * TICK_SECONDS


@dataclass(slots=True)
class IncidentRecord:
    closed: IncidentClosed
    opened: Incident  # as it was when its issue would have been filed
    opened_row: int | None
    updates: int  # IncidentGrew events: the comments the agent would add
    rows: dict[str, AnomalyRows]  # member anomaly id -> its rows


class BacktestEngine:
    def __init__(self, config: EdgeAgentConfig, source: str, *, keep_events: bool = False) -> None:
        anomaly_ids = itertools.count(1)
        incident_ids = itertools.count(1)
        self.detector = Detector(config.rules, None, new_id=lambda: f"a{next(anomaly_ids)}", sources={source})
        self.grouper = IncidentGrouper.from_config(
            config,
            new_id=lambda: f"i{next(incident_ids)}",
            clearing_since=self.detector.clearing_since,  # as the agent wires them
            lateness=self.detector.report_lateness,  # no lens offline: nothing measured
            pending_reports=self._pending_reports,
        )
        self.steps = StepReplay(BenchPorts.of(config.serial), config.steps.source)
        self.rows = RowBook()
        self.source = source
        self.channels = sorted(
            {r.channel for r in config.rules if r.source in ("", source) and r.channel != ANY_CHANNEL}
        )
        self.horizon = end_horizon(config)
        self.keep_events = keep_events
        self.anomaly_events: list[AnomalyEvent] = []
        self.incident_events: list[IncidentEvent] = []
        self.incidents: list[IncidentRecord] = []
        self.anomalies_opened = 0
        self.frames = 0
        self._opened: dict[str, tuple[Incident, int | None, int]] = {}  # id -> (at open, its row, updates)
        self.checks = Checks(self.rows, self._push_check_at, self._emit)
        self.watches = Watches(self.rows, self._push_watch_at, self._emit)
        self._t0: float | None = None
        self._k = 0  # the next tick
        self._last_t = 0.0  # time of the last frame so far
        self._last_row: int | None = None
        self._block: Block | None = None
        self._heap: list[tuple[int, int, int, int, int, int]] = []
        self._pending: list[AnomalyEvent] = []  # events of the row (or tick) being processed
        self._pending_row: int | None = None
        self._seq = itertools.count()
        self._finished = False
        self._now = 0.0  # the tick the grouper runs at

    # -- blocks -------------------------------------------------------------------------------------

    def feed(self, block: Block) -> None:
        """The next block of the recording (in file order)."""
        n = len(block)
        if n and self._t0 is None:
            self._start(block)
        self._block = block
        if n:
            self._setup(block)
            self._run_ticks(float(block.t[0]))
            self.checks.push_live()
            self.watches.push_live()
        for index, placed in enumerate(block.markers):
            self._push(placed.before, -1, _MARKER, index, 0)
        heap = self._heap
        row_at = -1
        while heap:
            at, _, _, kind, index, pos = heapq.heappop(heap)
            if kind == _MARKER:
                self._flush()
                self._marker(block.markers[index])
                continue
            if at != row_at:  # a row's events reach the grouper together, after the whole row
                self._flush()
                row_at = at
            self._run_ticks(float(block.t[at]))
            if kind == _CHECK:
                self.checks.feed(index, pos)
            elif kind == _WATCH:
                self.watches.feed(index, pos)
        self._flush()
        if n:
            self._run_ticks(float(block.t[-1]))
            self._last_t = float(block.t[-1])
            self._last_row = int(block.rows[-1])
            self.frames += n
            self.watches.carry(block)

    def finish(self) -> None:
        """The recording ended: tail ticks without dropout checks, then close what is still open."""
        if self._finished:
            return
        self._finished = True
        if self._t0 is None:
            return
        self._flush()
        self._block = None
        self.watches.note_last_frames()
        end = self._last_t + self.horizon
        tracker = self.detector.tracker
        while len(self.grouper):
            now = tick_time(self._t0, self._k)
            if now > end:
                break
            for event in tracker.tick(now, now):
                self._emit(event, None)
            self._flush()
            self._grouper_tick(now, None)
            self._k += 1
        for closed in self.detector.close_all(end, end):
            self._emit(closed, None)
        self._flush()
        self._on_incidents(self.grouper.close_all(end, end), None)
        self.steps.finish(self._last_t, self._last_row)

    # -- set-up -------------------------------------------------------------------------------------

    def _start(self, block: Block) -> None:
        t0 = float(block.t[0])
        self._t0 = t0
        plan, events = self.detector.source_plan(self.source, t0, t0)
        sub = itertools.count()
        for watch in plan.any_frame:
            self.watches.add(next(sub), watch, ANY_CHANNEL, t0)
        for channel, checks, watches in plan.channels:
            for watch in watches:
                self.watches.add(next(sub), watch, channel, t0)
            for check, slot in checks:
                self.checks.add(next(sub), batch_for(check), slot, channel)
        for event in events:
            self._emit(event, int(block.rows[0]))
        self._flush()

    def _setup(self, block: Block) -> None:
        samples: dict[str, Samples] = {}
        columns: dict[str, Floats] = {}
        for channel in self.channels:
            # As Detector.on_frame: NaN is a missing sample; +-inf is an off-scale one, +-MAX_FLOAT.
            values = block.values[channel]
            if not np.isfinite(values).all():
                values = np.clip(values, -MAX_FLOAT, MAX_FLOAT)
            columns[channel] = values
            present = ~np.isnan(values)
            if present.all():  # views, no copies
                samples[channel] = Samples(np.arange(len(block)), block.t, values, block.rows)
            else:
                at = np.flatnonzero(present)
                samples[channel] = Samples(at, block.t[at], values[at], block.rows[at])
        self.checks.setup(block, samples, columns)
        self.watches.setup(block, {channel: sample.at for channel, sample in samples.items()})

    def _push(self, at: int, sub: int, kind: int, index: int, pos: int) -> None:
        heapq.heappush(self._heap, (at, sub, next(self._seq), kind, index, pos))

    def _push_watch_at(self, at: int, sub: int, index: int, pos: int) -> None:
        self._push(at, sub, _WATCH, index, pos)

    def _push_check_at(self, at: int, sub: int, index: int, pos: int) -> None:
        self._push(at, sub, _CHECK, index, pos)

    # -- markers ------------------------------------------------------------------------------------

    def _marker(self, placed: PlacedMarker) -> None:
        block = self._block
        assert block is not None
        before = placed.before
        if before > 0:
            t = float(block.t[before - 1])
        elif self._t0 is not None and self._last_row is not None:
            t = self._last_t
        else:
            t = float(block.t[0]) if len(block) else 0.0
        self._run_ticks(t)
        after = int(block.rows[before]) if before < len(block) else None
        last = int(block.rows[before - 1]) if before > 0 else self._last_row
        self.steps.on_marker(placed.marker, t, after, last, placed.line)

    # -- ticks --------------------------------------------------------------------------------------

    def _run_ticks(self, until: float) -> None:
        """Every tick before `until` that can change anything, in order; the others are skipped."""
        t0 = self._t0
        if t0 is None:
            return
        while True:
            now = tick_time(t0, self._k)
            if not now < until:
                return
            self.watches.sync(now)
            if self._tick_needed(now):
                self._tick(now)
                self._k += 1
                continue
            due = min(self.watches.next_due(), until)
            skip = math.floor((due - t0) / TICK_SECONDS) - 1  # one early: a no-op tick is harmless
            self._k = max(self._k + 1, skip)

    def _tick_needed(self, now: float) -> bool:
        return bool(len(self.grouper)) or self.watches.tick_needed(now)

    def _tick(self, now: float) -> None:
        block = self._block
        row: int | None = None
        if block is not None:
            k = int(np.searchsorted(block.t, now, side="right"))
            row = int(block.rows[k]) if k < len(block) else None
        before = self.watches.before_tick(now)
        events = self.detector.tick(now, now)
        self.watches.after_tick(now, row, before)
        for event in events:
            self._emit(event, row)
        self._flush()
        self._grouper_tick(now, row)
        if block is not None:
            self.watches.push_after_tick(now)

    def _grouper_tick(self, now: float, row: int | None) -> None:
        self._now = now
        self._on_incidents(self.grouper.tick(_at(now), now), row)

    def _pending_reports(self) -> list[PendingReport]:
        """The rules' conditions in progress at the grouper's tick, as the live detector has them after
        the frames up to it (the stuck checks' state is their batches')."""
        return self.detector.pending_reports(self.checks.pending_since_at(self._now))

    # -- events -------------------------------------------------------------------------------------

    def _emit(self, event: AnomalyEvent, row: int | None) -> None:
        """An anomaly event, in order; the grouper and the steps get a row's (or a tick's) events
        together, as the agent hands them over after `on_frame` (or `tick`) returns (`_flush`): the
        grouper asks the tracker whether members are clearing, which the rest of the row may change."""
        if isinstance(event, AnomalyOpened):
            self.anomalies_opened += 1
        self.rows.on_event(event, row)
        if self.keep_events:
            self.anomaly_events.append(event)
        self._pending.append(event)
        self._pending_row = row

    def _flush(self) -> None:
        if not self._pending:
            return
        events, self._pending = self._pending, []
        for event in events:
            self.steps.on_anomaly_event(event)
        self._on_incidents(self.grouper.on_events(events), self._pending_row)

    def _on_incidents(self, events: list[IncidentEvent], row: int | None) -> None:
        for event in events:
            if self.keep_events:
                self.incident_events.append(event)
            incident = event.incident
            if isinstance(event, IncidentOpened):
                self._opened[incident.id] = (incident, row, 0)
            elif isinstance(event, IncidentGrew):
                opened, opened_row, updates = self._opened.get(incident.id, (incident, None, 0))
                self._opened[incident.id] = (opened, opened_row, updates + 1)
            elif isinstance(event, IncidentClosed):
                opened, opened_row, updates = self._opened.pop(incident.id, (incident, None, 0))
                rows = {}
                for member in incident.members:
                    rows[member.id] = self.rows.by_anomaly.get(member.id, AnomalyRows(None, None, None))
                    self.rows.forget(member.id)
                self.incidents.append(IncidentRecord(event, opened, opened_row, updates, rows))


def _at(now: float) -> Callable[[str], float]:
    """The grouper's `now_of`: one source, so every source's now is the tick's."""
    return lambda _source: now
