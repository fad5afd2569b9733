"""The bench run and its one Atlas session. The run record (records.py) makes an agent restarted after
an unclean exit continue the same run and session; a clean shutdown ends the run, so the next start
begins a new one. The session is created by an outbox job; its id, once delivered, is kept in the
record, so later jobs carry it instead of depending on a job the outbox may purge."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from edge_agent.atlas.batches import EVIDENCE_PRIORITY, Ref
from edge_agent.atlas.jobs import KIND_SESSION, not_before
from edge_agent.atlas.narrative import run_title
from edge_agent.atlas.records import ReporterRecords, RunRecord
from edge_agent.config import EdgeAgentConfig
from edge_agent.logs import get_logger
from edge_agent.outbox import JobState, Outbox

log = get_logger(__name__)


class RunSession:
    def __init__(
        self,
        *,
        config: EdgeAgentConfig,
        outbox: Outbox,
        records: ReporterRecords,
        wall: Callable[[], float],
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.records = records
        self.bench = config.agent.bench
        self._wall = wall
        self.run: RunRecord | None = None

    async def load_or_begin(self) -> None:
        record = await self.records.load_run()
        if record is not None and record.ended_wall is None:
            record.restarts += 1
            log.warning("reporter_run_continued", run_id=record.run_id, restarts=record.restarts)
        else:
            started = self._wall()
            title = run_title(self.config.atlas.session_title, self.bench, started)
            record = RunRecord(uuid.uuid4().hex, self.bench, started, title)
            log.info("reporter_run_started", run_id=record.run_id, session_title=title)
        self.run = record
        await self.records.save_run(record)  # before the session job: a crash between leaves a record
        if record.session_job is None and record.session_id is None:
            found = [
                j
                for j in await self.outbox.jobs(None, limit=100_000)
                if j.kind == KIND_SESSION and j.group == self._run_group()
            ]
            record.session_job = found[-1].id if found else await self._enqueue_session()
            await self.records.save_run(record)

    async def end(self) -> None:
        """A clean shutdown: the next start begins a new run and a new Atlas session."""
        if self.run is not None:
            self.run.ended_wall = self._wall()
            await self.records.save_run(self.run)
            log.info("reporter_run_ended", run_id=self.run.run_id)

    async def _enqueue_session(self) -> int:
        assert self.run is not None
        return await self.outbox.enqueue(
            KIND_SESSION,
            self._run_group(),
            {"title": self.run.session_title, "not_before": not_before(self.run.started_wall)},
            priority=EVIDENCE_PRIORITY,
        )

    def _run_group(self) -> str:
        assert self.run is not None
        return f"run:{self.run.run_id}"

    def issues_group(self) -> str:
        assert self.run is not None
        return f"issues:{self.run.run_id}"

    async def learn_session_id(self) -> None:
        """The session's id once its job is delivered; a session job lost for good is made again."""
        run = self.run
        if run is not None and run.session_id is None and run.session_job is not None:
            job = await self.outbox.job(run.session_job)
            if job is not None and job.state is JobState.DONE and job.result:
                run.session_id = str(job.result["session_id"])
                await self.records.save_run(run)
            elif job is not None and job.state in (JobState.FAILED, JobState.SHED):
                log.error("reporter_session_job_lost", job_id=job.id, state=job.state.value)
                run.session_job = await self._enqueue_session()
                await self.records.save_run(run)

    async def session_ref(self) -> Ref:
        run = self.run
        assert run is not None, "Reporter.start() first"
        if run.session_id is None and run.session_job is not None:
            job = await self.outbox.job(run.session_job)
            if job is not None and job.state is JobState.DONE and job.result:
                run.session_id = str(job.result["session_id"])
                await self.records.save_run(run)
            elif job is not None:
                return Ref({"session_job": run.session_job}, (run.session_job,))
        return Ref({"session_id": run.session_id})
