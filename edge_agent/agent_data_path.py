"""The agent's data path, as a part of `Agent` (a base class, not a component of its own: the fan-out
is a plain method call on the serial reader's callback that touches the agent's components directly,
which is what keeps it cheap; agent.py builds them). See agent.py's module doc for the picture.

- The hot path: every serial event (a read's `FrameBatch`, a `Frame`, a step marker, a link event)
  and every lens inference, synchronously, to the recorder, the evidence rings, the live page's tap,
  the detector and the lens; anomaly events grouped into incidents where they happen.
- Behind bounded queues, the slow consumers: the anomaly pump hands anomaly and incident events to
  the steps, the reporter and the run analysis (each behind an `IsolatedConsumer`), the marker pump
  step markers to the steps; a hand-over begun is finished even if its pump is cancelled.
- The tick: time-based rules, incidents' clear-after, the reporter's evidence windows, state writes
  retried after a full disk; and the watchdog's question whether all this still moves.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from edge_agent.consumers import IsolatedConsumer
from edge_agent.detect.anomaly import AnomalyEvent, AnomalyOpened
from edge_agent.frames import Frame, FrameBatch, LinkEvent, LinkState, PackedEvent, StepMarker
from edge_agent.grid import sleep_to_next
from edge_agent.incidents import IncidentEvent
from edge_agent.lens.protocol import LensInference
from edge_agent.logs import get_logger

if TYPE_CHECKING:
    from edge_agent.analysis import RunAnalysis
    from edge_agent.atlas.reporter import Reporter
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.detect.detector import Detector
    from edge_agent.evidence import EvidenceRings
    from edge_agent.incidents import IncidentGrouper
    from edge_agent.lens.service import LensService
    from edge_agent.live import LivePage
    from edge_agent.metrics import Metrics
    from edge_agent.recorder import Recorder
    from edge_agent.serial.clock import SourceClocks
    from edge_agent.steps.tracker import StepTracker

log = get_logger(__name__)

TICK_SECONDS = 0.25
# The tick comes round every TICK_SECONDS; one that has not for this long is stuck (e.g. on a wedged
# disk under the outbox or the evidence writer), not merely slow.
TICK_STALL_SECONDS = 5.0
# A state write that failed (disk full) is tried again at most this often from the tick.
STATE_RETRY_SECONDS = 1.0


class AgentDataPath:
    # What the data path uses of the agent (agent.py builds and sets each one).
    config: EdgeAgentConfig
    _mono: Callable[[], float]
    _wall: Callable[[], float]
    clocks: SourceClocks
    detector: Detector
    incidents: IncidentGrouper
    rings: EvidenceRings
    recorder: Recorder | None
    lens: LensService | None
    live: LivePage | None
    _tap: Callable[[Frame], None] | None
    _tap_batch: Callable[[FrameBatch], None] | None
    metrics: Metrics
    steps: StepTracker
    analysis: RunAnalysis
    reporter: Reporter | None
    steps_feed: IsolatedConsumer[AnomalyEvent | IncidentEvent]
    reporter_feed: IsolatedConsumer[IncidentEvent] | None
    _anomalies: asyncio.Queue[tuple[Sequence[AnomalyEvent], Sequence[IncidentEvent]]]
    _markers: asyncio.Queue[StepMarker]
    counts: Counter[str]
    inference_labels: Counter[str]
    anomalies_opened: Counter[tuple[str, str]]
    link_reasons: dict[str, str]
    _taken: list[int]
    _taken_at_last_watchdog: tuple[int, int]
    _handing_over: set[asyncio.Task[None]]
    _last_tick_mono: float
    _next_state_retry: float
    _stopping: bool

    # -- the hot path ---------------------------------------------------------------------------------

    def _on_serial(self, event: PackedEvent) -> None:
        """Every serial event, synchronously from the reader: must stay cheap and never block. The
        frames of a read usually come as one FrameBatch, which every consumer takes whole (the same
        result as its frames one by one: each consumer's `*_batch` says how)."""
        if type(event) is FrameBatch:
            if self.recorder is not None:
                self.recorder.add_batch(event)
            self.rings.add_batch(event)
            if self._tap_batch is not None:
                self._tap_batch(event)
            self.detector.on_batch(event, self._emit)
            if self.lens is not None:
                self.lens.feed_batch(event)
            return
        if type(event) is Frame:
            if self.recorder is not None:
                self.recorder.add(event)
            self.rings.add(event)
            if self._tap is not None:
                self._tap(event)
            events = self.detector.on_frame(event)
            if events:
                self._emit(events)
            if self.lens is not None:
                self.lens.feed(event)
            return
        if isinstance(event, StepMarker):
            if self._put(self._markers, event, "markers_dropped") and self.recorder is not None:
                self.recorder.cut_at_marker(event)
        elif isinstance(event, LinkEvent):
            events = self.detector.on_link(event)
            if events:
                self._emit(events)
            if self.lens is not None:
                self.lens.feed(event)
            self.counts["link_" + event.state.value] += 1
            if event.state is LinkState.DOWN:
                self.link_reasons[event.source] = event.reason
            else:
                self.link_reasons.pop(event.source, None)

    def _on_inference(self, inference: LensInference) -> None:
        self.inference_labels[inference.label] += 1
        self.metrics.inc("lens_inferences_total", label=inference.label)
        if self.live is not None:
            anomalous = inference.label in self.config.lens.anomaly_labels
            score = inference.scores.get(inference.label)
            self.live.board.on_inference(inference.label, score, inference.received_at, anomalous)
        events = self.detector.on_inference(inference, self._mono(), self._wall())
        if events:
            self._emit(events)

    def source_now(self, source: str, host_mono: float) -> float:
        """`source`'s "now" on its own timeline, for what compares frame times with the present."""
        return self.clocks.now(source, host_mono)

    def _now_of(self, source: str) -> float:
        return self.clocks.now(source, self._mono())

    def _emit(self, events: Sequence[AnomalyEvent]) -> None:
        """Anomaly events, synchronously where they happen: grouped into incidents at once (a pure,
        cheap call) so that the queue carries both in the order they happened."""
        for event in events:
            if isinstance(event, AnomalyOpened):
                self.anomalies_opened[(event.anomaly.kind, event.anomaly.severity)] += 1
                self.metrics.inc(
                    "anomalies_opened_total", kind=event.anomaly.kind, severity=event.anomaly.severity
                )
        incident_events = self.incidents.on_events(events)
        self._count_incidents(incident_events)
        if self.live is not None:
            self.live.board.on_anomaly_events(events)
        self._put(self._anomalies, (events, incident_events), "anomaly_events_dropped")

    def _emit_incidents(self, incident_events: Sequence[IncidentEvent]) -> None:
        self._count_incidents(incident_events)
        self._put(self._anomalies, ((), incident_events), "anomaly_events_dropped")

    def _count_incidents(self, incident_events: Sequence[IncidentEvent]) -> None:
        if self.live is not None and incident_events:
            self.live.board.on_incident_events(incident_events)
        for event in incident_events:
            what = type(event).__name__.removeprefix("Incident").lower()  # as INCIDENT_EVENTS names it
            self.counts["incident_events_" + what] += 1
            self.metrics.inc("incident_events_total", event=what)

    def _put(self, queue: asyncio.Queue[Any], item: Any, counter: str) -> bool:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            # Never expected (the consumers are local and fast); if it happens it is counted and said.
            if self.counts[counter] == 0:
                log.error("queue_full", queue=counter.removesuffix("_dropped"))
            self.counts[counter] += 1
            return False
        return True

    # -- components -----------------------------------------------------------------------------------

    async def _pump_anomalies(self) -> None:
        while True:
            due = [d for c in self.feeds() if (d := c.retry_in()) is not None]
            item: tuple[Sequence[AnomalyEvent], Sequence[IncidentEvent]] | None = None
            try:
                async with asyncio.timeout(min(due) if due else None):
                    item = await self._anomalies.get()
            except TimeoutError:
                pass
            for feed in self.feeds():
                await feed.retry_due()
            if item is not None:
                self._taken[0] += 1
                await self._to_the_end(self._hand_over(*item))

    async def _to_the_end(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a pump's hand-over (or the tick's reporting) to its end even if its component is
        cancelled meanwhile (`stop`): events taken off a queue and half handed over would be lost (CI
        saw an incident's close lost so, its issue never closed). `stop` awaits what is still running
        before it drains the queues."""
        task = asyncio.ensure_future(work)
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)
        await asyncio.shield(task)

    def feeds(self) -> list[IsolatedConsumer[Any]]:
        return [self.steps_feed] + ([self.reporter_feed] if self.reporter_feed is not None else [])

    async def _hand_over(
        self, events: Sequence[AnomalyEvent], incident_events: Sequence[IncidentEvent]
    ) -> None:
        """Every consumer gets its events; one that fails keeps them for a retry (consumers.py)."""
        await self.steps_feed.offer([*events, *incident_events])
        if self.reporter_feed is not None and incident_events:
            await self.reporter_feed.offer(incident_events)
        if incident_events:
            await self.analysis.on_incident_events(incident_events)  # never raises: keeps, retries

    async def _pump_markers(self) -> None:
        while True:
            marker = await self._markers.get()
            self._taken[1] += 1
            await self._to_the_end(self._on_marker(marker))

    async def _on_marker(self, marker: StepMarker) -> None:
        await self.steps.on_marker(marker)
        if self.recorder is not None:
            self.recorder.resolve_marker(marker, self.recorder.steps_current())

    async def _tick(self) -> None:
        while True:
            await sleep_to_next(TICK_SECONDS)  # with the recorder's hand-off and the loop-lag check
            events = self.detector.tick(self._mono(), self._wall())
            if events:
                self._emit(events)
            incident_events = self.incidents.tick(self._now_of, self._wall())
            if incident_events:
                self._emit_incidents(incident_events)
            self.metrics.set("anomalies_open", len(self.detector.open_anomalies()))
            if self.reporter is not None:
                # Shielded like the pumps' hand-overs: the planner forgets a window as it hands it
                # out, so a tick cut between writing its files and enqueueing their jobs lost them.
                await self._to_the_end(self.reporter.tick())
            now = self._mono()
            if (self.steps.unsaved or self.analysis.pending) and now >= self._next_state_retry:
                self._next_state_retry = now + STATE_RETRY_SECONDS
                await self.steps.flush()
                await self.analysis.flush()
            self._last_tick_mono = self._mono()

    async def _drain_queues(self) -> None:
        while not self._markers.empty():
            await self._on_marker(self._markers.get_nowait())
        while not self._anomalies.empty():
            await self._hand_over(*self._anomalies.get_nowait())

    def _progressing(self) -> bool:
        """For the watchdog, which itself withholds the ping while the event loop lags.

        Progress means that the pipeline's own stages are not stuck, not that the bench talks: a quiet
        bench (no lines between two test sequences) or an unplugged port is a reported condition
        (dropout rules, frame rates and link state on /status), and a restart by systemd would not
        make the device talk, only churn the lens session. Stuck is: the tick (the clock of the
        time-based rules, the evidence windows and the reporter) has not come round for
        TICK_STALL_SECONDS, or a queue holds events of which its consumer took none since the
        previous check. While stopping, TimeoutStopSec bounds the shutdown, not the watchdog."""
        if self._stopping:
            return True
        if self._mono() - self._last_tick_mono > TICK_STALL_SECONDS:
            return False
        taken = (self._taken[0], self._taken[1])
        waiting = (self._anomalies.qsize(), self._markers.qsize())
        last = self._taken_at_last_watchdog
        self._taken_at_last_watchdog = taken
        return not any(waiting[i] > 0 and taken[i] == last[i] for i in range(2))
