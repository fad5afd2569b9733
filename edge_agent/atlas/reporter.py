"""The Atlas reporter: incident events in, durable outbox jobs out (session, evidence, issue, comments).

Per bench run, one Atlas session. Per incident (edge_agent/incidents: the anomalies of one physical
event), one Atlas issue:
- at its first anomaly, at once (the issue must be visible within a second of the fault): a snapshot of
  the lead source's frames from `pre` before the start up to now is written, then ONE outbox batch
  (atlas/batches.py): upload the snapshot -> file the issue, or join the still-open issue of the same
  fault if that issue saw activity within `incidents.repeat_window` -> the opening comment;
- as members join: one batch per report (update the issue's tags, priority and title -> a comment);
- while it lasts, every evidence part (planner) is uploaded and commented;
- when it is over: one CSV of every channel of every source involved across the incident plus pre/post,
  the JSON summary of all members, and the closing narrative with the timeline.

Crash safety (records.py): the run record makes an agent restarted after an unclean exit continue the
same run and Atlas session (run_session.py); each open incident has a record from before its jobs are
enqueued until its closing comment is; records left by a crash are closed at the next start (recovery.py).
Which earlier issue a new incident joins or names: issue_threads.py.

Events are handled one at a time under a lock (the agent's event pump and its tick both call in), in
order; an event whose handling fails for lack of disk or a full outbox stays at the head of a backlog
that every tick retries, so what the agent took on is delivered when space returns (backlog.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.atlas import jobs as atlas_jobs
from edge_agent.atlas.backlog import Backlogged, EventBacklog
from edge_agent.atlas.batches import evidence_batch, issue_update_spec, open_batch, update_batch
from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.evidence_files import EvidenceFiles, Limits, StepSpans
from edge_agent.atlas.evidence_retry import EvidenceRetry
from edge_agent.atlas.headline import BenchPorts
from edge_agent.atlas.incident_text import (
    closing_comment,
    grew_comment,
    incident_summary,
    incident_tags,
    incident_title,
    opening_comment,
    part_comment,
    repeat_comment,
)
from edge_agent.atlas.issue_threads import IssueThreads
from edge_agent.atlas.narrative import anomaly_summary, render_description
from edge_agent.atlas.records import ReporterRecords, RunRecord
from edge_agent.atlas.recovery import recover_open_incidents
from edge_agent.atlas.run_session import RunSession
from edge_agent.atlas.tracked import TrackedIncidents
from edge_agent.atlas.waiting import WAITING_DIR, WaitingEvidence
from edge_agent.config import EdgeAgentConfig
from edge_agent.evidence import EvidencePlanner, EvidenceRings, EvidenceWindow, evidence_dir
from edge_agent.evidence.planner import CloseMargin
from edge_agent.evidence.writer import merge_by_time, remove_stale_tmp
from edge_agent.incidents import (
    Incident,
    IncidentClosed,
    IncidentEvent,
    IncidentGrew,
    IncidentGrouper,
    IncidentOpened,
)
from edge_agent.logs import get_logger
from edge_agent.outbox import JobSpec, Outbox
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)


class Reporter:
    def __init__(
        self,
        *,
        config: EdgeAgentConfig,
        outbox: Outbox,
        client: AtlasClient,
        rings: EvidenceRings,
        state_dir: Path,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        source_now: Callable[[str, float], float] | None = None,
        health: StateFileHealth | None = None,
        step_context: Callable[[], Awaitable[list[str]]] | None = None,
        limits_of: Callable[[Sequence[str]], Limits] | None = None,
        steps: Callable[[], StepSpans] | None = None,
        close_margin: CloseMargin | None = None,
    ) -> None:
        """`close_margin`: the incident grouper's (`IncidentGrouper.close_margin`, which the evidence
        parts are sized by); None: that of a grouper of `config`, without a lens's measured lateness."""
        self.config = config
        self.outbox = outbox
        self.client = client
        self.rings = rings
        self.state_dir = Path(state_dir)
        self.evidence_dir = evidence_dir(self.state_dir)
        self.health = health
        self.records = ReporterRecords(self.state_dir, health)
        self.waiting = WaitingEvidence(self.records.dir / WAITING_DIR, health)
        self.bench = config.agent.bench
        self.ports = BenchPorts.of(config.serial)  # which channel names in titles say their port
        self.session = RunSession(config=config, outbox=outbox, records=self.records, wall=wall)
        self.threads = IssueThreads(self.records, config.incidents.repeat_window)
        self._mono = mono
        self._wall = wall
        self._source_now = source_now or (lambda source, host_mono: host_mono)
        self._step_context = step_context
        if close_margin is None:
            close_margin = IncidentGrouper.from_config(config).close_margin
        self.planner = EvidencePlanner.from_config(config.evidence, close_margin)
        self._tracked = TrackedIncidents(outbox, self.bench)
        self._lock = asyncio.Lock()
        # close() began: the drain's end (monotonic), which a plot drawn now must leave time before
        # (PlotHandler).
        self.stop_deadline: float | None = None
        self.counters: dict[str, int] = {
            "incidents_opened": 0,
            "incidents_closed": 0,
            "repeats": 0,
            "issue_jobs": 0,
            "comment_jobs": 0,
            "evidence_files": 0,
            "evidence_errors": 0,
            "backlog_retries": 0,
            "backlog_dropped": 0,
            "recovered_after_crash": 0,
            "snapshots_lost_at_crash": 0,
        }
        self.files = EvidenceFiles(
            self.evidence_dir,
            health=health,
            limits_of=limits_of,
            steps=steps,
            plots=config.evidence.plots,
            counters=self.counters,
        )
        self._backlog = EventBacklog(self._handle, self.counters)

    @property
    def run(self) -> RunRecord | None:
        return self.session.run

    def wall_now(self) -> float:
        return self._wall()

    def now_of(self, source: str) -> float:
        """`source`'s "now" on its own timeline (the device's clock where it sends one)."""
        return self._source_now(source, self._mono())

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.records.prepare()
        await self.waiting.load()  # before the handlers: a resumed retry finds its record
        atlas_jobs.register_reporter_handlers(
            self.outbox,
            self.client,
            waiting=self.waiting,
            upload_attempts=self.config.atlas.upload_attempts,
            evidence_retry=EvidenceRetry.from_section(self.config.atlas),
            stop_deadline=lambda: self.stop_deadline,
        )
        await asyncio.to_thread(remove_stale_tmp, self.evidence_dir)
        await self.threads.load()
        await self.session.load_or_begin()
        await recover_open_incidents(self)

    async def close(self, clean: bool, deadline: float | None = None) -> None:
        """Shutdown: write every evidence now (what the rings hold) and enqueue it; a clean shutdown
        ends the run, so the next start begins a new run and a new Atlas session. `deadline`: when the
        drain that follows ends (monotonic; None: now, no plot is drawn any more)."""
        self.stop_deadline = time.monotonic() if deadline is None else deadline
        async with self._lock:
            await self._backlog.work()
            for window in self.planner.flush(self.now_of):
                await self._backlog.run_or_keep(window)
            if clean:
                await self.session.end()

    # -- events -------------------------------------------------------------------------------------

    async def on_events(self, events: Sequence[IncidentEvent]) -> None:
        async with self._lock:
            for event in events:
                await self._backlog.run_or_keep(event)

    async def tick(self) -> None:
        async with self._lock:
            await self._backlog.work()
            if self._backlog:
                return  # what is stuck keeps its order: nothing new overtakes it
            await self._learn_results()
            for window in self.planner.due(self.now_of):
                await self._backlog.run_or_keep(window)

    async def _handle(self, item: Backlogged) -> None:
        if isinstance(item, EvidenceWindow):
            await self._write_window(item)
        elif isinstance(item, IncidentOpened):
            await self._on_open(item.incident)
        elif isinstance(item, IncidentGrew):
            await self._on_grew(item)
        elif isinstance(item, IncidentClosed):
            await self._on_close(item)

    async def _on_open(self, incident: Incident) -> None:
        if incident.id in self._tracked:
            return
        assert self.run is not None
        name = self._tracked.name(incident, self.run)
        self.planner.open(incident.id, incident.sources, incident.started_mono)
        summary = self.summary(incident)
        thread, repeat, previous = self.threads.earlier(incident)
        record: dict[str, Any] = {"summary": summary, "name": name, "issue_job": None, "repeat": repeat}
        await self.records.save_open(incident.id, record)
        lead = incident.lead
        frames = self.rings.slice(
            lead.source, incident.started_mono - self.planner.pre, self.now_of(lead.source)
        )
        files, names, _ = await self.files.write(
            f"{incident.id}.open", f"{name}_open", self.files.decorate(summary, incident), frames, incident
        )
        title = incident_title(incident, self.bench, self.ports)
        # The test step running when it opened, so the issue and the step point at each other.
        context = await self._step_context() if self._step_context is not None else []
        record["context"] = context
        specs = open_batch(
            incident_id=incident.id,
            issues_group=self.session.issues_group(),
            session=await self.session.session_ref(),
            files=files,
            names=names,
            issue={
                "title": title,
                # [] unless blocks are configured: the grammar is not public (research/atlas-api.md)
                "description": self._description(incident, title),
                "priority": incident.priority,
                "tags": incident_tags(incident, self.bench),
            },
            repeat=repeat,
            opening=opening_comment(summary, names, previous=previous, context=context),
            repeat_text=repeat_comment(summary, names, context=context),
        )
        ids = await self.outbox.enqueue_many(specs)
        self.counters["incidents_opened"] += 1
        self.counters["issue_jobs"] += 1
        self.counters["comment_jobs"] += 1
        self.counters["repeats"] += repeat is not None
        self._tracked.add(incident, name, ids[1])
        await self.threads.filed(incident, ids[1], thread, repeat is not None, title)
        record["issue_job"] = ids[1]
        await self.records.save_open(incident.id, record)

    async def _on_grew(self, event: IncidentGrew) -> None:
        tracked = self._tracked.get(event.incident.id)
        if tracked is None:
            return
        tracked.incident = incident = event.incident
        self.planner.add_sources(incident.id, incident.sources)
        summary = self.summary(incident)
        joined = [anomaly_summary(m, self.bench) for m in event.joined]
        await self._enqueue(
            update_batch(
                incident_id=incident.id,
                issue=await self._tracked.issue_ref(tracked),
                tags=incident_tags(incident, self.bench),
                priority=incident.priority,
                title=incident_title(incident, self.bench, self.ports),
                part=f"grew{tracked.batches + 1}",
                content=grew_comment(
                    summary, joined, tracked.batches + 1, severity_raised=event.severity_raised
                ),
            )
        )
        tracked.batches += 1
        await self.threads.touch(incident, incident.opened_wall, incident.opened_mono)
        await self.records.save_open(
            incident.id, {"summary": summary, "name": tracked.name, "issue_job": tracked.issue_job}
        )

    async def _on_close(self, event: IncidentClosed) -> None:
        tracked = self._tracked.get(event.incident.id)
        if tracked is None:
            return
        tracked.incident = incident = event.incident
        self.planner.add_sources(incident.id, incident.sources)
        if event.joined:  # their tags, title and priority; the closing narrative tells the rest
            update = issue_update_spec(
                incident_id=incident.id,
                issue=await self._tracked.issue_ref(tracked),
                tags=incident_tags(incident, self.bench),
                priority=incident.priority,
                title=incident_title(incident, self.bench, self.ports),
            )
            await self._enqueue([update])
        ended_mono = incident.ended_mono if incident.ended_mono is not None else incident.closed_mono
        ended_wall = incident.ended_wall if incident.ended_wall is not None else incident.closed_wall
        self.planner.close(
            incident.id, ended_mono if ended_mono is not None else self.now_of(incident.lead.source)
        )
        await self.threads.touch(incident, ended_wall, ended_mono)
        self.counters["incidents_closed"] += 1

    async def _write_window(self, window: EvidenceWindow) -> None:
        tracked = self._tracked.get(window.incident_id)
        if tracked is None:
            return
        incident = tracked.incident
        summary = self.summary(incident, evidence="final" if window.final else f"part{window.part}")
        if window.final and incident.is_open:
            summary["close_reason"] = "shutdown"
            summary["closed_wall"] = self._wall()
        frames = merge_by_time(self.rings.slice(s, window.start, window.end) for s in window.sources)
        disk, shown, part = (
            (incident.id, tracked.name, "close")
            if window.final
            else (
                f"{incident.id}.part{window.part}",
                f"{tracked.name}_part{window.part}",
                f"part{window.part}",
            )
        )
        summary = self.files.decorate(summary, incident)
        files, names, plot = await self.files.write(disk, shown, summary, frames, incident, window, plot=True)
        content = (
            closing_comment(summary, names) if window.final else part_comment(summary, window.part, names)
        )
        ended = incident.ended_mono if incident.ended_mono is not None else incident.closed_mono
        span_end = ended - incident.started_mono if window.final and ended is not None else None
        await self._enqueue(
            evidence_batch(
                incident_id=incident.id,
                issue=await self._tracked.issue_ref(tracked),
                session=await self.session.session_ref(),
                files=files,
                names=names,
                part=part,
                content=content,
                span_end_s=span_end,
                plot=plot,
            )
        )
        if window.final:
            self._tracked.forget(incident.id)
            await self.records.remove_open(incident.id)

    async def _enqueue(self, specs: list[JobSpec]) -> list[int]:
        ids = await self.outbox.enqueue_many(specs)
        self.counters["comment_jobs"] += sum(1 for s in specs if s.kind == atlas_jobs.KIND_COMMENT)
        return ids

    # -- what later jobs need -----------------------------------------------------------------------

    async def _learn_results(self) -> None:
        """Ids that delivered jobs produced, kept so later jobs carry them instead of depending on
        jobs the outbox may purge once delivered."""
        await self.session.learn_session_id()
        await self._tracked.learn_issue_ids()
        await self.threads.learn_issue_ids(self.outbox)

    # -- reading ------------------------------------------------------------------------------------

    def _description(self, incident: Incident, title: str) -> list[Any]:
        fields = {**anomaly_summary(incident.lead, self.bench), "id": incident.id, "title": title}
        fields["run_id"] = self.run.run_id if self.run is not None else None
        return render_description(self.config.atlas.description_blocks, fields)

    def summary(self, incident: Incident, **extra: Any) -> dict[str, Any]:
        run_id = self.run.run_id if self.run is not None else None
        return incident_summary(incident, self.bench, self.ports, run_id=run_id, **extra)

    def status(self) -> dict[str, Any]:
        run = self.run
        return {
            "run": None
            if run is None
            else {
                "run_id": run.run_id,
                "session_title": run.session_title,
                "session_id": run.session_id,
                "started_wall": run.started_wall,
                "restarts": run.restarts,
            },
            "open_incidents": [
                {
                    "id": t.incident.id,
                    "title": incident_title(t.incident, self.bench, self.ports),
                    "severity": t.incident.severity,
                    "members": len(t.incident.members),
                    "issue_id": t.issue_id,
                }
                for t in self._tracked.all()
            ],
            "pending_evidence": len(self.planner),
            # Evidence Atlas refused: retried in a form that fits, or kept on disk when retries ran out.
            "evidence_waiting": self.waiting.status(),
            "backlog": self._backlog.status(),
            **self.counters,
        }
