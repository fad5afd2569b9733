"""The agent: wires the data path of DESIGN.md and runs it under one supervisor.

    serial readers ─Frame─▶ fan-out ─┬─▶ detector (rules) ──────────────┐
                                     ├─▶ lens (windower ▶ websocket) ─▶ inferences ─▶ detector
                                     ├─▶ evidence rings                 ▼
                                     └─▶ step markers ─▶ steps     anomaly events ─▶ reporter + steps
                                                                          │
                                                        outbox (SQLite) ◀─┘ ─▶ Atlas

The fan-out is a plain function call on the serial reader's callback (no queue, no task switch), per
read rather than per frame: the CSV decoder hands a read's plain data lines over as one packed
`FrameBatch`, which every consumer takes whole with the result its frames one by one would give
(issue 12 item 4: at 3 Mbaud per-frame Python was most of the agent's CPU). Everything that may wait
on I/O (the reporter, the steps, the lens socket) sits behind a bounded queue or its own task, so the
serial side never waits on the cloud.

Each consumer of anomaly events (the steps, the reporter) sits behind an `IsolatedConsumer`: one whose
write fails (a full disk) keeps its events and gets them again until it takes them, while the other
goes on (consumers.py). Disk full is tracked by the agent's `StateFileHealth` (state_files.py): logged
once, on /readyz, /status and `edge_agent_disk_full`, cleared when the failed writes succeed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prometheus_client import ProcessCollector

from edge_agent.analysis import RunAnalysis
from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.errors import AtlasAuthError
from edge_agent.atlas.evidence_files import limits_from_checks
from edge_agent.atlas.incident_text import incident_title
from edge_agent.atlas.narrative import anomaly_summary
from edge_agent.atlas.reporter import Reporter
from edge_agent.config import EdgeAgentConfig
from edge_agent.consumers import IsolatedConsumer
from edge_agent.control import ControlServer, StepStateError, create_control_app
from edge_agent.detect.anomaly import Anomaly, AnomalyEvent, AnomalyOpened
from edge_agent.detect.detector import Detector
from edge_agent.evidence import EvidenceRings
from edge_agent.evidence.packer import ThreadPacker
from edge_agent.frames import Frame, FrameBatch, LinkEvent, LinkState, PackedEvent, StepMarker
from edge_agent.incidents import IncidentClosed, IncidentEvent, IncidentGrew, IncidentGrouper, IncidentOpened
from edge_agent.lens.errors import LensAuthError
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.service import LensService
from edge_agent.live import PUBLIC_PATHS, LiveBoard, LivePage, state_parts
from edge_agent.logs import get_logger
from edge_agent.memory_budget import DataPathBudget, live_page_bytes
from edge_agent.metrics import Metrics
from edge_agent.outbox import Outbox
from edge_agent.recorder import Recorder
from edge_agent.s3 import S3Client
from edge_agent.serial.clock import SourceClocks
from edge_agent.serial.reader import SerialReader
from edge_agent.service.looplag import LoopLagMonitor
from edge_agent.service.metric_sources import (
    FilesystemSource,
    consumers_source,
    data_path_source,
    evidence_source,
    info_source,
    lens_source,
    outbox_source,
    process_source,
    recorder_source,
    serial_source,
    state_source,
    steps_source,
    supervisor_source,
)
from edge_agent.service.notify import SystemdNotifier
from edge_agent.service.watchdog import Watchdog
from edge_agent.state_files import StateFileHealth, ensure_private_dir_async
from edge_agent.steps.tracker import StepTracker
from edge_agent.supervisor import Supervisor

log = get_logger(__name__)

TICK_SECONDS = 0.25
# The tick comes round every TICK_SECONDS; one that has not for this long is stuck (e.g. on a wedged
# disk under the outbox or the evidence writer), not merely slow.
TICK_STALL_SECONDS = 5.0
ANOMALY_QUEUE_LIMIT = 10_000
MARKER_QUEUE_LIMIT = 10_000
# Events a consumer could not take yet (disk full) are kept up to this many bytes per consumer.
CONSUMER_BACKLOG_BYTES = 8 * 1024 * 1024
# A state write that failed (disk full) is tried again at most this often from the tick.
STATE_RETRY_SECONDS = 1.0


class Agent:
    """Build with a validated config; `await start()`, then `await stop(deadline)` (SIGTERM path)."""

    def __init__(
        self,
        config: EdgeAgentConfig,
        *,
        notifier: SystemdNotifier | None = None,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        add_secret: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.state_dir = Path(config.agent.state_dir)
        self.notifier = notifier or SystemdNotifier()
        self._mono = mono
        self._wall = wall
        self.started_wall = wall()
        self.state_health = StateFileHealth(wall=wall)
        self.supervisor = Supervisor()
        # Each port's timeline (the device's clock, or receive time spread over each read): frames, markers
        # and link events carry it; `clocks.now(source, host_mono)` is what time-driven decisions use.
        self.clocks = SourceClocks.for_ports(config.serial)
        self.detector = Detector(
            config.rules, config.lens if config.lens.enabled else None, source_now=self.clocks.now
        )
        self.incidents = IncidentGrouper.from_section(
            config.incidents, clearing_since=self.detector.clearing_since
        )
        # One memory budget for every buffer of the data path; the ring holds what the others leave.
        self.memory = DataPathBudget.from_config(config)
        # Sealed blocks of the ring are compressed in a thread of their own (not on the event loop).
        self.packer = ThreadPacker()
        self.rings = EvidenceRings.from_config(config.evidence, self.memory, self.packer)
        self.readers = {
            port.name: SerialReader(
                port, packed_sink=self._on_serial, clock=self.clocks[port.name], mono=mono, wall=wall
            )
            for port in config.serial
        }
        self.lens: LensService | None = None
        if config.lens.enabled and config.lens.channels:
            source = config.lens.source or (config.serial[0].name if config.serial else "")
            self.lens = LensService(
                config.lens, self.state_dir, self._on_inference, source=source, health=self.state_health
            )
        self.outbox = Outbox(self.state_dir, config.outbox, health=self.state_health)
        self.atlas: AtlasClient | None = None
        self.reporter: Reporter | None = None
        if config.atlas.enabled and config.atlas.url and config.atlas.token is not None:
            self.atlas = AtlasClient(
                config.atlas.api_base,
                config.atlas.token.get_secret_value(),
                connect_timeout=config.atlas.connect_timeout,
                read_timeout=config.atlas.read_timeout,
                upload_timeout=config.atlas.upload_timeout,
            )
            self.reporter = Reporter(
                config=config,
                outbox=self.outbox,
                client=self.atlas,
                rings=self.rings,
                state_dir=self.state_dir,
                source_now=self.source_now,
                health=self.state_health,
                step_context=self._step_context,
                limits_of=lambda sources: limits_from_checks(self.detector.value_checks(), sources),
                steps=lambda: self.steps.recent_steps(),
            )
        self.steps = StepTracker(
            config=config,
            outbox=self.outbox,
            client=self.atlas,
            state_dir=self.state_dir,
            mono=mono,
            wall=wall,
            timelines=self.clocks.all_now,
            health=self.state_health,
            incident_of=self.incidents.incident_of,
        )
        # What each test run was (its steps, its incidents) and Atlas's report of it when it ends.
        self.analysis = RunAnalysis(
            config=config,
            outbox=self.outbox,
            client=self.atlas,
            steps=self.steps,
            state_dir=self.state_dir,
            health=self.state_health,
            wall=wall,
        )
        # The steps take anomaly events (and the incident events that say which issue each is in), the
        # reporter incident events; each behind its own isolation.
        self.steps_feed: IsolatedConsumer[AnomalyEvent | IncidentEvent] = IsolatedConsumer(
            "steps", self.steps.on_anomaly_events, event_bytes, budget_bytes=CONSUMER_BACKLOG_BYTES
        )
        self.reporter_feed: IsolatedConsumer[IncidentEvent] | None = None
        if self.reporter is not None:
            self.reporter_feed = IsolatedConsumer(
                "reporter",
                self.reporter.on_events,
                incident_event_bytes,
                budget_bytes=CONSUMER_BACKLOG_BYTES,
                fatal=(AtlasAuthError,),
            )
        self._next_state_retry = 0.0
        # Every frame into segment files; finished segments to S3 and onto the Atlas test run.
        self.s3: S3Client | None = None
        if config.recorder.enabled and config.s3.enabled:
            self.s3 = S3Client(config.s3, add_secret=add_secret)
        self.recorder: Recorder | None = None
        if config.recorder.enabled:
            self.recorder = Recorder(
                config, self.state_dir, outbox=self.outbox, steps=self.steps, s3=self.s3, atlas=self.atlas,
                mono=mono, wall=wall, health=self.state_health,
            )  # fmt: skip
        self.loop_lag = LoopLagMonitor()
        self.watchdog = Watchdog.from_environment(self.notifier, self.loop_lag, self._progressing)
        self.metrics = Metrics()
        for name, reader in self.readers.items():
            self.metrics.add_source(f"serial:{name}", serial_source(reader))
        if self.lens is not None:
            self.metrics.add_source("lens", lens_source(self.lens))
        self.metrics.add_async_source("outbox", outbox_source(self.outbox))
        self.metrics.add_source("evidence", evidence_source(self.rings))
        self.metrics.add_source("data_path_memory", data_path_source(self.memory, self.rings))
        self.metrics.add_source("process", process_source(self.loop_lag, self.watchdog))
        self.metrics.add_source("components", supervisor_source(self.supervisor))
        self.metrics.add_source("steps", steps_source(self.steps))
        if self.recorder is not None:
            self.metrics.add_source("recorder", recorder_source(self.recorder))
        self.metrics.add_source("info", info_source(config.agent.bench))
        self.metrics.add_async_source("state_dir", FilesystemSource(self.state_dir))
        # The client library's process_* metrics (RSS, CPU seconds, start time, open fds): a few small
        # reads of /proc at scrape time, no disk I/O.
        ProcessCollector(registry=self.metrics.registry)
        self.metrics.add_source("state", state_source(self.state_health))
        self.metrics.add_source("consumers", consumers_source(self._feeds()))
        self.control: ControlServer | None = None
        # The live page (on the control API): its decimating tap is fed every frame from the fan-out.
        self.live: LivePage | None = None
        self._tap: Callable[[Frame], None] | None = None
        self._tap_batch: Callable[[FrameBatch], None] | None = None
        if config.control.enabled and config.control.live_page:
            bench = config.agent.bench
            board = LiveBoard(offset=wall() - mono(), title=lambda incident: incident_title(incident, bench))
            self.live = LivePage(board, lambda: state_parts(self, board), config.agent.bench, mono=mono)
            self._tap = board.decimator.on_frame
            self._tap_batch = board.decimator.on_batch
        self._attach_memory(len(config.serial))
        if config.control.enabled:
            token = config.control.token.get_secret_value() if config.control.token else None
            app = create_control_app(
                self,
                self.metrics,
                token,
                listen=config.control.listen,
                allowed_hosts=config.control.allowed_hosts,
                add_routes=self.live.add_routes if self.live is not None else None,
                open_paths=PUBLIC_PATHS if self.live is not None else (),
            )
            self.control = ControlServer(app, config.control.listen)
        # Anomaly events (for the steps) with the incident events they made (for the reporter), in order.
        self._anomalies: asyncio.Queue[tuple[Sequence[AnomalyEvent], Sequence[IncidentEvent]]] = (
            asyncio.Queue(ANOMALY_QUEUE_LIMIT)
        )
        self._markers: asyncio.Queue[StepMarker] = asyncio.Queue(MARKER_QUEUE_LIMIT)
        self.counts: Counter[str] = Counter()
        self.inference_labels: Counter[str] = Counter()
        self.anomalies_opened: Counter[tuple[str, str]] = Counter()
        self._last_tick_mono = mono()
        self._taken = [0, 0]  # events the anomaly and marker pumps took off their queues
        self._handing_over: set[asyncio.Task[None]] = set()  # see _to_the_end
        self._taken_at_last_watchdog = (-1, -1)
        self._stopping = False
        self.link_reasons: dict[str, str] = {}  # why each port that is down is down
        self._started_mono = mono()
        self._rate_marks: dict[str, tuple[float, int]] = {}
        self.ready = False

    def _attach_memory(self, sources: int) -> None:
        """What each consumer of the data path's budget holds, as each counts it (upper bounds)."""
        recorder, lens, live = self.recorder, self.lens, self.live
        if recorder is not None:
            self.memory.attach("recorder", lambda: recorder.waiting_bytes)
        if lens is not None:
            self.memory.attach("lens", lambda: lens.pacer.queued_bytes)
        if live is not None:
            decimator = live.board.decimator
            self.memory.attach("live", lambda: live_page_bytes(decimator.channel_count, sources))

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
            self.counts["incident_events_" + type(event).__name__.removeprefix("Incident").lower()] += 1

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
            due = [d for c in self._feeds() if (d := c.retry_in()) is not None]
            item: tuple[Sequence[AnomalyEvent], Sequence[IncidentEvent]] | None = None
            try:
                async with asyncio.timeout(min(due) if due else None):
                    item = await self._anomalies.get()
            except TimeoutError:
                pass
            for feed in self._feeds():
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

    async def _step_context(self) -> list[str]:
        return await self.steps.context_lines()

    def _feeds(self) -> list[IsolatedConsumer[Any]]:
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
            await asyncio.sleep(TICK_SECONDS)
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

    async def start(self) -> None:
        """Open the durable state, start every component; READY=1 once the pipeline runs.

        The control API's port is taken first: a busy one is a `FieldError` (exit 78) before anything
        was opened, started or sent."""
        if self.control is not None:
            self.control.bind()
        await ensure_private_dir_async(self.state_dir)
        self.notifier.status("starting")
        await self.outbox.start()
        if self.reporter is not None:
            await self.reporter.start()
            assert self.reporter.run is not None
            await self.steps.start(self.reporter.run.run_id, self.reporter.run.started_wall)
        else:
            await self.steps.start(f"local-{int(self.started_wall)}", self.started_wall)
        if self.recorder is not None:
            await self.recorder.start(str(self.steps.state["run_key"]))
        await self.analysis.start()
        if self.control is not None:
            await self.control.start()
        for name, reader in self.readers.items():
            self.supervisor.spawn(f"serial:{name}", reader.run, fatal=(ValueError,))
        if self.lens is not None:
            self.supervisor.spawn("lens", self.lens.run, fatal=(LensAuthError,))
        self.supervisor.spawn("anomalies", self._pump_anomalies, fatal=(AtlasAuthError,))
        self.supervisor.spawn("markers", self._pump_markers)
        if self.recorder is not None:
            self.supervisor.spawn("recorder", self.recorder.run)
        self._last_tick_mono = self._mono()
        self.supervisor.spawn("tick", self._tick)
        self.supervisor.spawn("loop_lag", self.loop_lag.run)
        if self.watchdog is not None:
            self.supervisor.spawn("watchdog", self.watchdog.run)
        self.ready = True
        self.notifier.ready(self.short_status())
        log.info(
            "agent_started",
            bench=self.config.agent.bench,
            ports=list(self.readers),
            lens=self.lens is not None,
            atlas=self.reporter is not None,
            control=self.control.url if self.control is not None else None,
        )

    async def stop(self, deadline: float, *, final: bool = True) -> bool:
        """Graceful shutdown: stop reading, close open anomalies and running steps, send what is
        pending, destroy the lens session, drain the outbox until `deadline` (monotonic). Returns
        whether everything pending was delivered. `final=False` (a config reload) keeps the bench
        run, its Atlas session and the running step going for the agent that replaces this one."""
        if final:
            self.notifier.stopping("stopping: draining the outbox")
        self.ready = False
        self._stopping = True
        log.info("agent_stopping")
        await self.supervisor.stop(*[f"serial:{name}" for name in self.readers])
        await self.supervisor.stop("tick", "markers", "anomalies")
        # A hand-over the pumps had begun ends first (in order), then what is still queued.
        for unfinished in list(self._handing_over):
            await asyncio.gather(unfinished, return_exceptions=True)  # a failure was the pump's to report
        await self._drain_queues()
        now_mono, now_wall = self._mono(), self._wall()
        closing: list[AnomalyEvent] = list(self.detector.close_all(now_mono, now_wall))
        incident_events = self.incidents.on_events(closing)
        incident_events += self.incidents.close_all(now_mono, now_wall)
        await self._hand_over(closing, incident_events)
        for consumer in self._feeds():
            await consumer.retry_due(force=True)
            if consumer.waiting:
                # Kept in memory only: said loudly; the reporter closes what it recorded at the next start.
                log.error("anomaly_events_not_taken_at_stop", consumer=consumer.name, events=consumer.waiting)
        await self.steps.close(clean=final)
        await self.steps.flush()
        if self.recorder is not None:
            # Every frame read is in a closed segment, and its upload queued, before the outbox drains.
            await self.supervisor.stop("recorder")
            self.recorder.step_changed(self.recorder.steps_current())
            await self.recorder.close()
        if final:
            # The run ends with a clean shutdown: its report is requested in the drain below (after the
            # last recording's jobs were enqueued), and polled (a background job) until done, by this
            # process or the next.
            await self.analysis.run_ended()
        await self.analysis.flush()
        if self.reporter is not None:
            await self.reporter.close(clean=final)
        lens_stop = asyncio.create_task(self.supervisor.stop("lens"))
        drained = await self.outbox.drain(max(0.0, deadline - time.monotonic()))
        await lens_stop
        await self.supervisor.stop()
        if self.control is not None:
            await self.control.stop()
        await self.outbox.close()
        if self.atlas is not None:
            await self.atlas.close()
        if self.s3 is not None:
            self.s3.close()
        self.packer.close()
        log.info("agent_stopped", outbox_drained=drained)
        return drained

    async def _drain_queues(self) -> None:
        while not self._markers.empty():
            await self._on_marker(self._markers.get_nowait())
        while not self._anomalies.empty():
            await self._hand_over(*self._anomalies.get_nowait())

    # -- health ---------------------------------------------------------------------------------------

    def frames_total(self) -> int:
        return sum(reader.decoder.stats.frames for reader in self.readers.values())

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

    def short_status(self) -> str:
        up = sum(1 for r in self.readers.values() if r.is_up)
        lens = "lens running" if self.lens is not None and self.lens.running.is_set() else "lens down"
        return (
            f"{up}/{len(self.readers)} ports up, {lens}, {len(self.detector.open_anomalies())} anomalies open"
        )

    def readiness(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        for name, reader in self.readers.items():
            checks[f"serial:{name}"] = "ok" if reader.is_up else "port not open"
        if self.lens is not None:
            problem = self.lens.routing.problem()
            checks["lens"] = "no running session" if not self.lens.running.is_set() else problem or "ok"
            switched = self.lens.routing.summary()
            if switched is not None:
                checks["lens_output"] = switched  # "ok: ...": says what happened, counts as ok
        if self.reporter is not None:
            checks["outbox"] = (
                "ok" if self.outbox.healthy() else "not delivering (Atlas unreachable or refusing)"
            )
        health = self.state_health.status()
        checks["disk"] = (
            "ok"
            if not health["disk_full"]
            else f"full: {len(health['writes_waiting_for_space'])} state write(s) waiting for space"
        )
        for consumer in self._feeds():
            if consumer.waiting:
                checks[f"events:{consumer.name}"] = (
                    f"{consumer.waiting} anomaly event(s) kept for a retry: {consumer.last_error}"
                )
        ok = self.ready and all(v == "ok" or v.startswith("ok:") for v in checks.values())
        return ok, checks

    def frame_rates(self) -> dict[str, float]:
        """Frames per second of each port since the previous call (at most once a second is useful)."""
        now = self._mono()
        rates: dict[str, float] = {}
        for name, reader in self.readers.items():
            frames = reader.decoder.stats.frames
            last_t, last_frames = self._rate_marks.get(name, (self._started_mono, 0))
            elapsed = now - last_t
            rates[name] = (frames - last_frames) / elapsed if elapsed > 0 else 0.0
            if elapsed >= 1.0:
                self._rate_marks[name] = (now, frames)
        return rates

    async def status(self) -> dict[str, Any]:
        rates = self.frame_rates()
        ports = {}
        for name, reader in self.readers.items():
            ports[name] = {
                "url": reader.port.url,
                "up": reader.is_up,
                "frames": reader.decoder.stats.frames,
                "frame_rate": round(rates[name], 1),
                "decode": reader.decoder.stats.as_dict(),
                "link": asdict(reader.stats),
                "down_reason": self.link_reasons.get(name),
                "clock": reader.clock.status(),
            }
        lens: dict[str, Any] | None = None
        if self.lens is not None:
            session = self.lens.session
            lens = {
                "session_id": session.session_id if session is not None else None,
                "running": self.lens.running.is_set(),
                "reader": self.lens.routing.status(time.monotonic()),
                "inferences": dict(self.inference_labels),
                "counters": self.lens.counters(),
            }
        return {
            "bench": self.config.agent.bench,
            "ready": self.readiness()[0],
            "components": self.supervisor.status(),
            "ports": ports,
            "lens": lens,
            "open_anomalies": [
                anomaly_summary(a, self.config.agent.bench) for a in self.detector.open_anomalies()
            ],
            "open_incidents": [
                {
                    "id": i.id,
                    "group": i.group,
                    "lead": f"{i.lead.kind} on {i.lead.channel or 'lens'} ({i.lead.source})",
                    "severity": i.severity,
                    "members": len(i.members),
                    "channels": list(i.channels),
                }
                for i in self.incidents.open_incidents()
            ],
            "outbox": await self.outbox.status(),
            "reporter": self.reporter.status() if self.reporter is not None else None,
            "evidence": self.rings.status(),
            "memory": self.memory.status(self.rings.nbytes),
            "steps": self.steps.status(),
            "analysis": await self.analysis.status(),
            "state_files": self.state_health.status(),
            "consumers": {c.name: c.status() for c in self._feeds()},
            "live": self.live.status() if self.live is not None else None,
            "recorder": self.recorder.status() if self.recorder is not None else None,
            "counts": dict(self.counts),
            # For leak checks (bench/soak): a task count that grows while the agent runs is a leak.
            "asyncio_tasks": len(asyncio.all_tasks()),
        }

    # -- control API backend ---------------------------------------------------------------------------

    async def start_step(self, name: str, card: str | None) -> dict[str, Any]:
        answer = await self.steps.start_step(name, card)
        self._step_changed()
        return _or_conflict(answer)

    async def end_step(self, name: str, verdict: str | None, note: str | None = None) -> dict[str, Any]:
        answer = await self.steps.end_step(name, verdict, note)
        self._step_changed()
        return _or_conflict(answer)

    async def end_run(self, note: str | None = None) -> dict[str, Any]:
        answer = await self.analysis.end_run(note or "run ended by POST /runs/end")
        if self.recorder is not None and answer.get("next_run"):
            self.recorder.run_changed(str(answer["next_run"]))  # the running step (if any) ended too
        else:
            self._step_changed()
        return _or_conflict(answer)

    def _step_changed(self) -> None:
        if self.recorder is not None:
            self.recorder.step_changed(self.recorder.steps_current())


def anomaly_bytes(a: Anomaly) -> int:
    """A generous estimate of an anomaly's memory (the object, its strings and scores), for the
    consumers' byte budget."""
    strings = (a.id, a.kind, a.description, a.measure, a.threshold, a.label or "", *a.key)
    return 1024 + sum(len(text) for text in strings) * 2 + 160 * len(a.scores)


def anomaly_event_bytes(event: AnomalyEvent) -> int:
    return anomaly_bytes(event.anomaly)


def event_bytes(event: AnomalyEvent | IncidentEvent) -> int:
    if isinstance(event, IncidentOpened | IncidentGrew | IncidentClosed):
        return incident_event_bytes(event)
    return anomaly_event_bytes(event)


def incident_event_bytes(event: IncidentEvent) -> int:
    joined = event.joined if not isinstance(event, IncidentOpened) else ()
    return 512 + sum(anomaly_bytes(a) for a in (*event.incident.members, *joined))


def _or_conflict(answer: dict[str, Any]) -> dict[str, Any]:
    """The tracker answers a step-state conflict (ending a step that is not running) with an
    `error` entry; the control API turns StepStateError into 409."""
    if "error" in answer:
        raise StepStateError(str(answer["error"]))
    return answer
