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
goes on (consumers.py). Disk full is tracked by the agent's `StateFileHealth` (state_health.py): logged
once, on /readyz, /status and `edge_agent_disk_full`, cleared when the failed writes succeed.

This module builds the components and runs their life (start, the shutdown's order, the control API's
step calls); the data path's methods are agent_data_path.py, what the agent tells of itself
(/status, /readyz) agent_status.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.agent_data_path import TICK_SECONDS as TICK_SECONDS  # the backtest's tick is held to it
from edge_agent.agent_data_path import AgentDataPath
from edge_agent.agent_status import AgentStatus
from edge_agent.analysis import RunAnalysis
from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.errors import AtlasAuthError
from edge_agent.atlas.evidence_files import limits_from_checks
from edge_agent.atlas.headline import BenchPorts
from edge_agent.atlas.incident_text import incident_title
from edge_agent.atlas.reporter import Reporter
from edge_agent.config import EdgeAgentConfig
from edge_agent.consumers import IsolatedConsumer
from edge_agent.control import ControlServer, StepStateError, create_control_app
from edge_agent.detect.anomaly import AnomalyEvent
from edge_agent.detect.detector import Detector
from edge_agent.event_bytes import event_bytes, incident_event_bytes
from edge_agent.evidence import EvidenceRings
from edge_agent.evidence.packer import ThreadPacker
from edge_agent.frames import Frame, FrameBatch, StepMarker
from edge_agent.incidents import IncidentEvent, IncidentGrouper
from edge_agent.lens.errors import LensAuthError
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
from edge_agent.service.metric_sources import add_agent_sources
from edge_agent.service.notify import SystemdNotifier
from edge_agent.service.watchdog import Watchdog
from edge_agent.state_files import ensure_private_dir_async
from edge_agent.state_health import StateFileHealth
from edge_agent.steps.tracker import StepTracker
from edge_agent.supervisor import Supervisor

log = get_logger(__name__)

ANOMALY_QUEUE_LIMIT = 10_000
MARKER_QUEUE_LIMIT = 10_000
# Events a consumer could not take yet (disk full) are kept up to this many bytes per consumer.
CONSUMER_BACKLOG_BYTES = 8 * 1024 * 1024


class Agent(AgentDataPath):
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
        # A lens verdict arrives a window and a round trip after its anomaly started, a rule's report its
        # hold after it: incidents wait for them (for a rule's, while it has a condition in progress).
        self.incidents = IncidentGrouper.from_config(
            config,
            clearing_since=self.detector.clearing_since,
            lateness=self.detector.report_lateness,
            pending_reports=self.detector.pending_reports,
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
                close_margin=self.incidents.close_margin,
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
        add_agent_sources(self.metrics, self)
        self.control: ControlServer | None = None
        # The live page (on the control API): its decimating tap is fed every frame from the fan-out.
        self.live: LivePage | None = None
        self._tap: Callable[[Frame], None] | None = None
        self._tap_batch: Callable[[FrameBatch], None] | None = None
        if config.control.enabled and config.control.live_page:
            bench, ports = config.agent.bench, BenchPorts.of(config.serial)
            board = LiveBoard(
                offset=wall() - mono(), title=lambda incident: incident_title(incident, bench, ports)
            )
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
        self.report = AgentStatus(self, mono)
        self.ready = False

    def _attach_memory(self, sources: int) -> None:
        """What each consumer of the data path's budget holds, as each counts it (upper bounds)."""
        recorder, lens, live = self.recorder, self.lens, self.live
        if recorder is not None:
            self.memory.attach("recorder", lambda: recorder.data_path_bytes)
        if lens is not None:
            self.memory.attach("lens", lambda: lens.pacer.queued_bytes)
        if live is not None:
            decimator = live.board.decimator
            self.memory.attach("live", lambda: live_page_bytes(decimator.channel_count, sources))

    async def _step_context(self) -> list[str]:
        return await self.steps.context_lines()

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
        for consumer in self.feeds():
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
            await self.reporter.close(clean=final, deadline=deadline)
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

    # -- health ---------------------------------------------------------------------------------------

    def frames_total(self) -> int:
        return sum(reader.decoder.stats.frames for reader in self.readers.values())

    def short_status(self) -> str:
        return self.report.short_status()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return self.report.readiness()

    def frame_rates(self) -> dict[str, float]:
        return self.report.frame_rates()

    async def status(self) -> dict[str, Any]:
        return await self.report.status()

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


def _or_conflict(answer: dict[str, Any]) -> dict[str, Any]:
    """The tracker answers a step-state conflict (ending a step that is not running) with an
    `error` entry; the control API turns StepStateError into 409."""
    if "error" in answer:
        raise StepStateError(str(answer["error"]))
    return answer
