"""The Atlas reporter: anomaly events in, durable outbox jobs out (session, evidence, issue, comments).

Per bench run, one Atlas session. Per anomaly:
- at open, at once (the issue must be visible within a second of the fault): a snapshot of the frames
  from `pre` before its start up to now is written durably, then ONE outbox batch: upload the snapshot
  -> create the issue (tagged `edge-agent:<id>`, with the attachments) or, for a repeat of a (rule,
  source, channel) whose issue Atlas still has open at delivery time, a comment on that issue -> the
  opening narrative comment;
- while it lasts, every evidence part (planner) is uploaded and commented;
- at close + `post`, the full evidence and the closing narrative.

Crash safety: the run record (`reporter/run.json`) makes an agent restarted after an unclean exit
continue the same run and Atlas session; it is marked ended only by a clean shutdown. Each open anomaly
has a record (`reporter/open/<id>.json`) from before its jobs are enqueued until its closing comment
is; records left by a crash are closed at the next start as "agent restarted".

Uploads and comments of one (rule, source, channel) share an outbox group (delivered in order per
anomaly key). Issue jobs of a run share one group of their own, so issues reach Atlas in the order the
anomalies opened, also after an outage; a repeat's issue job therefore runs after the previous one and
can ask Atlas whether that issue is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.atlas import jobs as atlas_jobs
from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.jobs import KIND_COMMENT, KIND_ISSUE, KIND_SESSION, KIND_UPLOAD, not_before
from edge_agent.atlas.narrative import (
    anomaly_summary,
    closing_comment,
    comment_marker,
    issue_tags,
    issue_title,
    opening_comment,
    part_comment,
    render_description,
    run_title,
)
from edge_agent.config import EdgeAgentConfig
from edge_agent.detect.anomaly import Anomaly, AnomalyClosed, AnomalyEvent, AnomalyOpened, AnomalyUpdated
from edge_agent.evidence import (
    EvidencePlanner,
    EvidenceRings,
    EvidenceWindow,
    evidence_stem,
    remove_stale_tmp,
    write_evidence_async,
)
from edge_agent.logs import get_logger
from edge_agent.outbox import BatchRef, JobSpec, JobState, Outbox, OutboxError

log = get_logger(__name__)

REPORTER_DIR = "reporter"
SNAPSHOT_DIR = "snapshot"  # the snapshot's files live in <state_dir>/snapshot/evidence/
RUN_FILE = "run.json"
THREADS_FILE = "threads.json"
OPEN_DIR = "open"
RESTART_NOTE = (
    "Closed by the agent at restart: the process ended while this anomaly was open, so its end and"
    " the evidence after the snapshot are unknown."
)
SNAPSHOT_LOST = (
    "lost: the agent stopped after recording this anomaly but before writing its snapshot; the frames"
    " were in that process's memory only, this summary is what was kept"
)
# Evidence jobs outrank step PATCHes when the outbox must shed (they are what the user buys).
EVIDENCE_PRIORITY = 10


def write_json_atomic(path: Path, data: Any) -> None:
    """Whole or nothing: a reader or a restart after power loss never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(data, out, sort_keys=True, allow_nan=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    """The record, or None when absent or unreadable (an unreadable one is logged and set aside)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("reporter_record_unreadable", path=str(path), error=str(exc))
        with contextlib.suppress(OSError):
            path.rename(path.with_name(path.name + ".bad"))
        return None


@dataclass(slots=True)
class RunRecord:
    run_id: str
    bench: str
    started_wall: float
    session_title: str
    session_job: int | None = None
    session_id: str | None = None
    ended_wall: float | None = None
    restarts: int = 0


@dataclass(slots=True)
class _Tracked:
    anomaly: Anomaly
    issue_job: int | None = None
    closed: bool = False
    files: list[str] = field(default_factory=list)


def key_group(anomaly: Anomaly) -> str:
    rule, source, channel = anomaly.key
    return f"anomaly:{rule}|{source}|{channel}"


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
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.client = client
        self.rings = rings
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / REPORTER_DIR
        self.bench = config.agent.bench
        self._mono = mono
        self._wall = wall
        self.planner = EvidencePlanner.from_config(config.evidence)
        self.run: RunRecord | None = None
        self._tracked: dict[str, _Tracked] = {}
        self._threads: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {
            "anomalies_opened": 0,
            "anomalies_closed": 0,
            "issue_jobs": 0,
            "comment_jobs": 0,
            "evidence_files": 0,
            "evidence_errors": 0,
            "enqueue_errors": 0,
            "recovered_after_crash": 0,
            "snapshots_lost_at_crash": 0,
        }

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        atlas_jobs.register_reporter_handlers(self.outbox, self.client)
        (self.dir / OPEN_DIR).mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.state_dir)
        remove_stale_tmp(self.state_dir / SNAPSHOT_DIR)
        threads = read_json(self.dir / THREADS_FILE)
        self._threads = threads if isinstance(threads, dict) else {}
        await self._load_or_begin_run()
        await self._recover_open_anomalies()

    async def _load_or_begin_run(self) -> None:
        raw = read_json(self.dir / RUN_FILE)
        record: RunRecord | None = None
        if isinstance(raw, dict):
            with contextlib.suppress(TypeError):
                record = RunRecord(**raw)
        if record is not None and record.ended_wall is None:
            record.restarts += 1
            log.warning("reporter_run_continued", run_id=record.run_id, restarts=record.restarts)
        else:
            started = self._wall()
            title = run_title(self.config.atlas.session_title, self.bench, started)
            record = RunRecord(uuid.uuid4().hex, self.bench, started, title)
            log.info("reporter_run_started", run_id=record.run_id, session_title=title)
        self.run = record
        self._save_run()  # before the session job: a crash between leaves a record to find it by
        if record.session_job is None and record.session_id is None:
            found = [
                j
                for j in await self.outbox.jobs(None, limit=100_000)
                if j.kind == KIND_SESSION and j.group == self._run_group()
            ]
            if found:
                record.session_job = found[-1].id
            else:
                record.session_job = await self.outbox.enqueue(
                    KIND_SESSION,
                    self._run_group(),
                    {"title": record.session_title, "not_before": not_before(record.started_wall)},
                    priority=EVIDENCE_PRIORITY,
                )
            self._save_run()

    def _run_group(self) -> str:
        assert self.run is not None
        return f"run:{self.run.run_id}"

    def _issues_group(self) -> str:
        assert self.run is not None
        return f"issues:{self.run.run_id}"

    def _save_run(self) -> None:
        assert self.run is not None
        write_json_atomic(self.dir / RUN_FILE, asdict(self.run))

    def _save_threads(self) -> None:
        write_json_atomic(self.dir / THREADS_FILE, self._threads)

    def _open_record(self, anomaly_id: str) -> Path:
        return self.dir / OPEN_DIR / f"{evidence_stem(anomaly_id)}.json"

    async def close(self, clean: bool) -> None:
        """Shutdown: write every evidence now (what the ring holds) and enqueue it; a clean shutdown
        ends the run, so the next start begins a new run and a new Atlas session."""
        for window in self.planner.flush(self._mono()):
            await self._write_window(window)
        if clean and self.run is not None:
            self.run.ended_wall = self._wall()
            self._save_run()
            log.info("reporter_run_ended", run_id=self.run.run_id)

    # -- events -------------------------------------------------------------------------------------

    async def on_events(self, events: Sequence[AnomalyEvent]) -> None:
        for event in events:
            if isinstance(event, AnomalyOpened):
                await self._on_open(event.anomaly)
            elif isinstance(event, AnomalyUpdated):
                tracked = self._tracked.get(event.anomaly.id)
                if tracked is not None:
                    tracked.anomaly = event.anomaly
            elif isinstance(event, AnomalyClosed):
                self._on_close(event.anomaly)

    async def _on_open(self, anomaly: Anomaly) -> None:
        if anomaly.id in self._tracked:
            return
        self.counters["anomalies_opened"] += 1
        tracked = self._tracked[anomaly.id] = _Tracked(anomaly)
        self.planner.open(anomaly.id, anomaly.source, anomaly.started_mono)
        summary = self._summary(anomaly, evidence="snapshot")
        record: dict[str, Any] = {"summary": summary, "group": key_group(anomaly), "issue_job": None}
        write_json_atomic(self._open_record(anomaly.id), record)
        frames = self.rings.slice(anomaly.source, anomaly.started_mono - self.planner.pre, self._mono())
        files: list[str] = []
        names: list[str] = []
        try:
            written = await write_evidence_async(
                self.state_dir / SNAPSHOT_DIR, summary, frames, t0=anomaly.started_mono
            )
            files = [str(p) for p in written.paths]
            names = [f"{anomaly.id}.open.csv", f"{anomaly.id}.open.json"]
            self.counters["evidence_files"] += 2
        except (OSError, ValueError) as exc:
            self.counters["evidence_errors"] += 1
            log.error("evidence_write_failed", anomaly_id=anomaly.id, error=str(exc))
        issue_job = await self._enqueue_open(anomaly, summary, files, names)
        tracked.issue_job = issue_job
        if issue_job is not None:
            record["issue_job"] = issue_job
            write_json_atomic(self._open_record(anomaly.id), record)

    async def _enqueue_open(
        self,
        anomaly: Anomaly,
        summary: dict[str, Any],
        files: list[str],
        names: list[str],
        *,
        lookup_first: bool = False,
        repeat_allowed: bool = True,
    ) -> int | None:
        group = key_group(anomaly)
        session_fields, session_deps = await self._session_ref()
        thread = self._threads.get(group) if repeat_allowed else None
        repeat: dict[str, Any] | None = None
        if thread is not None:
            repeat = {
                "issue_id": thread.get("issue_id"),
                "job": thread.get("issue_job"),
                "anomaly_id": thread.get("root"),
            }
        upload = JobSpec(
            KIND_UPLOAD,
            group,
            {"files": files, "names": names, **session_fields},
            deps=session_deps,
            priority=EVIDENCE_PRIORITY,
        )
        title = issue_title(anomaly, self.bench)
        issue = JobSpec(
            KIND_ISSUE,
            self._issues_group(),
            {
                "anomaly_id": anomaly.id,
                "title": title,
                # [] unless blocks are configured: the grammar is not public (research/atlas-api.md)
                "description": self._description(summary, title),
                "priority": anomaly.priority,
                "tags": issue_tags(anomaly, self.bench),
                "repeat": repeat,
                "marker": comment_marker(anomaly.id, "open"),
                "comment": opening_comment(summary, names, repeat=True),
                "lookup_first": lookup_first,
                **session_fields,
            },
            deps=(*session_deps, BatchRef(0)),
            priority=EVIDENCE_PRIORITY,
        )
        comment = JobSpec(
            KIND_COMMENT,
            group,
            {
                "anomaly_id": anomaly.id,
                "marker": comment_marker(anomaly.id, "open"),
                "content": opening_comment(summary, names),
                "skip_if_commented": True,
            },
            deps=(BatchRef(1),),
            priority=EVIDENCE_PRIORITY,
        )
        try:
            ids = await self._enqueue_linked([upload, issue, comment])
        except (OutboxError, ValueError) as exc:
            self.counters["enqueue_errors"] += 1
            log.error("reporter_enqueue_failed", anomaly_id=anomaly.id, error=str(exc))
            return None
        self.counters["issue_jobs"] += 1
        self.counters["comment_jobs"] += 1
        self._threads[group] = {
            "anomaly_id": anomaly.id,
            "issue_job": ids[1],
            "issue_id": None,
            # Best guess until the job's result says whether it created an issue or commented.
            "root": anomaly.id if repeat is None else (thread or {}).get("root", anomaly.id),
            "pending_root": anomaly.id,
        }
        self._save_threads()
        return ids[1]

    async def _enqueue_linked(self, specs: list[JobSpec]) -> list[int]:
        """One atomic batch; a job finds what it needs in its deps' results (see atlas/jobs.py)."""
        return await self.outbox.enqueue_many(specs)

    def _on_close(self, anomaly: Anomaly) -> None:
        tracked = self._tracked.get(anomaly.id)
        if tracked is None:
            log.warning("reporter_close_of_unknown_anomaly", anomaly_id=anomaly.id)
            return
        self.counters["anomalies_closed"] += 1
        tracked.anomaly = anomaly
        tracked.closed = True
        ended = anomaly.ended_mono if anomaly.ended_mono is not None else anomaly.closed_mono
        self.planner.close(anomaly.id, ended if ended is not None else self._mono())

    # -- time ---------------------------------------------------------------------------------------

    async def tick(self) -> None:
        await self._learn_results()
        for window in self.planner.due(self._mono()):
            await self._write_window(window)

    async def _learn_results(self) -> None:
        """Ids that delivered jobs produced, kept so later jobs carry them instead of depending on
        jobs the outbox may purge once delivered."""
        run = self.run
        if run is not None and run.session_id is None and run.session_job is not None:
            job = await self.outbox.job(run.session_job)
            if job is not None and job.state is JobState.DONE and job.result:
                run.session_id = str(job.result["session_id"])
                self._save_run()
            elif job is not None and job.state in (JobState.FAILED, JobState.SHED):
                log.error("reporter_session_job_lost", job_id=job.id, state=job.state.value)
                run.session_job = await self.outbox.enqueue(
                    KIND_SESSION,
                    self._run_group(),
                    {"title": run.session_title, "not_before": not_before(run.started_wall)},
                    priority=EVIDENCE_PRIORITY,
                )
                self._save_run()
        changed = False
        for thread in self._threads.values():
            if thread.get("issue_id") or not isinstance(thread.get("issue_job"), int):
                continue
            job = await self.outbox.job(int(thread["issue_job"]))
            if job is None or job.state in (JobState.FAILED, JobState.SHED):
                thread["issue_job"] = None  # nothing to learn any more; the tag is the fallback
                changed = True
            elif job.state is JobState.DONE and job.result:
                thread["issue_id"] = job.result.get("issue_id")
                if job.result.get("via") == "create":
                    thread["root"] = thread.get("pending_root", thread.get("root"))
                changed = True
        if changed:
            self._save_threads()

    async def _session_ref(self) -> tuple[dict[str, Any], tuple[int, ...]]:
        run = self.run
        assert run is not None, "Reporter.start() first"
        if run.session_id is None and run.session_job is not None:
            job = await self.outbox.job(run.session_job)
            if job is not None and job.state is JobState.DONE and job.result:
                run.session_id = str(job.result["session_id"])
                self._save_run()
            elif job is not None:
                return {"session_job": run.session_job}, (run.session_job,)
        return {"session_id": run.session_id}, ()

    async def _issue_ref(
        self, anomaly_id: str, issue_job: int | None
    ) -> tuple[dict[str, Any], tuple[int, ...]]:
        if issue_job is not None:
            job = await self.outbox.job(issue_job)
            if job is not None and job.state is JobState.DONE and job.result:
                return {"issue_id": job.result["issue_id"]}, ()
            if job is not None:
                return {}, (issue_job,)
        return {"issue_anomaly_id": anomaly_id}, ()

    async def _write_window(self, window: EvidenceWindow) -> None:
        tracked = self._tracked.get(window.anomaly_id)
        if tracked is None:
            return
        anomaly = tracked.anomaly
        summary = self._summary(anomaly, evidence="final" if window.final else f"part{window.part}")
        if window.final and not tracked.closed:
            summary["close_reason"] = "shutdown"
            summary["closed_wall"] = self._wall()
        frames = self.rings.slice(window.source, window.start, window.end)
        files: list[str] = []
        names: list[str] = []
        try:
            written = await write_evidence_async(
                self.state_dir, summary, frames, window=window, t0=anomaly.started_mono
            )
            files = [str(p) for p in written.paths]
            names = [p.name for p in written.paths]
            self.counters["evidence_files"] += 2
        except (OSError, ValueError) as exc:
            self.counters["evidence_errors"] += 1
            log.error("evidence_write_failed", anomaly_id=anomaly.id, part=window.part, error=str(exc))
        if window.final:
            part = "close"
            content = closing_comment(summary, names)
        else:
            part = f"part{window.part}"
            content = part_comment(summary, window.part, names)
        await self._enqueue_comment(anomaly, tracked.issue_job, part, content, files, names)
        if window.final:
            self._tracked.pop(anomaly.id, None)
            with contextlib.suppress(FileNotFoundError):
                self._open_record(anomaly.id).unlink()

    async def _enqueue_comment(
        self,
        anomaly: Anomaly | None,
        issue_job: int | None,
        part: str,
        content: str,
        files: list[str],
        names: list[str],
        *,
        anomaly_id: str = "",
        group: str = "",
    ) -> bool:
        anomaly_id = anomaly.id if anomaly is not None else anomaly_id
        group = key_group(anomaly) if anomaly is not None else group
        issue_fields, issue_deps = await self._issue_ref(anomaly_id, issue_job)
        specs: list[JobSpec] = []
        comment_deps: tuple[int | BatchRef, ...] = issue_deps
        if files:
            session_fields, session_deps = await self._session_ref()
            specs.append(
                JobSpec(
                    KIND_UPLOAD,
                    group,
                    {"files": files, "names": names, **session_fields},
                    deps=session_deps,
                    priority=EVIDENCE_PRIORITY,
                )
            )
            comment_deps = (*issue_deps, BatchRef(0))
        specs.append(
            JobSpec(
                KIND_COMMENT,
                group,
                {
                    "anomaly_id": anomaly_id,
                    "marker": comment_marker(anomaly_id, part),
                    "content": content,
                    **issue_fields,
                },
                deps=comment_deps,
                priority=EVIDENCE_PRIORITY,
            )
        )
        try:
            await self._enqueue_linked(specs)
        except (OutboxError, ValueError) as exc:
            self.counters["enqueue_errors"] += 1
            log.error("reporter_enqueue_failed", anomaly_id=anomaly_id, part=part, error=str(exc))
            return False
        self.counters["comment_jobs"] += 1
        return True

    # -- crash recovery -----------------------------------------------------------------------------

    async def _recover_open_anomalies(self) -> None:
        for path in sorted((self.dir / OPEN_DIR).glob("*.json")):
            record = read_json(path)
            if not isinstance(record, dict) or not isinstance(record.get("summary"), dict):
                continue
            summary: dict[str, Any] = record["summary"]
            anomaly_id = str(summary.get("id", ""))
            group = str(record.get("group", ""))
            issue_job = record.get("issue_job")
            if not anomaly_id or not group:
                continue
            if await self._has_comment_job(comment_marker(anomaly_id, "close"), group):
                # Killed between enqueuing the closing comment and removing the record: it is queued.
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if not isinstance(issue_job, int):
                issue_job = await self._find_issue_job(anomaly_id)
            if issue_job is None:
                # Killed before the open batch was enqueued: enqueue it now, looking before creating.
                issue_job = await self._enqueue_recovered_open(summary, group)
            summary = {**summary, "close_reason": "agent restarted", "closed_wall": self._wall()}
            content = closing_comment(summary, [], note=RESTART_NOTE)
            ok = await self._enqueue_comment(
                None, issue_job, "close", content, [], [], anomaly_id=anomaly_id, group=group
            )
            if ok:
                self.counters["recovered_after_crash"] += 1
                log.warning("reporter_anomaly_closed_at_restart", anomaly_id=anomaly_id)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    async def _write_lost_snapshot(self, summary: dict[str, Any]) -> None:
        """The summary survived the crash in the open record; the frames did not. Upload the summary
        anyway (with a header-only CSV), so the issue still says what was detected, when and where,
        and says plainly that the frames are gone, rather than arriving with no evidence at all."""
        lost = {**summary, "evidence": SNAPSHOT_LOST}
        started = summary.get("started_mono")
        try:
            await write_evidence_async(
                self.state_dir / SNAPSHOT_DIR,
                lost,
                [],
                t0=float(started) if isinstance(started, int | float) else None,
            )
        except (OSError, ValueError) as exc:
            self.counters["evidence_errors"] += 1
            log.error("evidence_write_failed", anomaly_id=summary.get("id"), error=str(exc))
            return
        self.counters["snapshots_lost_at_crash"] += 1
        log.warning("reporter_snapshot_lost_at_crash", anomaly_id=summary.get("id"))

    async def _has_comment_job(self, marker: str, group: str) -> bool:
        return any(
            job.kind == KIND_COMMENT and job.group == group and job.payload.get("marker") == marker
            for job in await self.outbox.jobs(None, limit=100_000)
        )

    async def _find_issue_job(self, anomaly_id: str) -> int | None:
        for job in await self.outbox.jobs(None, limit=100_000):
            if job.kind == KIND_ISSUE and job.payload.get("anomaly_id") == anomaly_id:
                return job.id
        return None

    async def _enqueue_recovered_open(self, summary: dict[str, Any], group: str) -> int | None:
        anomaly_id = str(summary["id"])
        snapshot = self.state_dir / SNAPSHOT_DIR / "evidence"
        files = [str(snapshot / f"{anomaly_id}.csv"), str(snapshot / f"{anomaly_id}.json")]
        names = [f"{anomaly_id}.open.csv", f"{anomaly_id}.open.json"]
        if not await asyncio.to_thread(os.path.exists, files[1]):
            await self._write_lost_snapshot(summary)
        session_fields, session_deps = await self._session_ref()
        title = f"[{self.bench}] {summary.get('description')} ({summary.get('source')})"
        specs = [
            JobSpec(KIND_UPLOAD, group, {"files": files, "names": names, **session_fields}, session_deps),
            JobSpec(
                KIND_ISSUE,
                self._issues_group(),
                {
                    "anomaly_id": anomaly_id,
                    "title": title,
                    "description": self._description(summary, title),
                    "priority": summary.get("priority"),
                    "tags": [
                        t for t in (self.bench, summary.get("channel") or "lens", summary.get("rule_id")) if t
                    ]
                    + [f"edge-agent:{anomaly_id}"],
                    "repeat": None,
                    "marker": comment_marker(anomaly_id, "open"),
                    "comment": "",
                    "lookup_first": True,
                    **session_fields,
                },
                (*session_deps, BatchRef(0)),
            ),
        ]
        try:
            ids = await self._enqueue_linked(specs)
        except (OutboxError, ValueError) as exc:
            log.error("reporter_enqueue_failed", anomaly_id=anomaly_id, error=str(exc))
            return None
        return ids[1]

    # -- reading ------------------------------------------------------------------------------------

    def _description(self, summary: dict[str, Any], title: str) -> list[Any]:
        return render_description(self.config.atlas.description_blocks, {**summary, "title": title})

    def _summary(self, anomaly: Anomaly, **extra: Any) -> dict[str, Any]:
        run_id = self.run.run_id if self.run is not None else None
        return anomaly_summary(anomaly, self.bench, run_id=run_id, **extra)

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
            "open_anomalies": [
                {"id": t.anomaly.id, "key": list(t.anomaly.key), "severity": t.anomaly.severity}
                for t in self._tracked.values()
                if not t.closed
            ],
            "pending_evidence": len(self.planner),
            **self.counters,
        }
