"""Which issue a new incident joins: per fault signature, the issue it was last filed as (a `Thread`,
records.py). An incident like one whose issue saw activity within `incidents.repeat_window` becomes a
comment on that issue (a repeat); a later one files a new issue that names the earlier one. The
threads are saved on every change, so a restarted agent still knows them."""

from __future__ import annotations

import uuid
from typing import Any

from edge_agent.atlas.narrative import iso
from edge_agent.atlas.records import ReporterRecords, Thread
from edge_agent.incidents import Incident
from edge_agent.outbox import JobState, Outbox


class IssueThreads:
    def __init__(self, records: ReporterRecords, repeat_window: float) -> None:
        self.records = records
        self.repeat_window = repeat_window
        # Monotonic times are only comparable within one process: a thread says which measured them.
        self.process_id = uuid.uuid4().hex
        self._threads: dict[str, Thread] = {}

    async def load(self) -> None:
        self._threads = await self.records.load_threads()

    def earlier(
        self, incident: Incident
    ) -> tuple[Thread | None, dict[str, Any] | None, dict[str, Any] | None]:
        """The thread of `incident`'s signature, and either the issue it repeats (within the window) or
        the earlier issue its new one names (beyond it); None, None, None for a first of its kind."""
        thread = self._threads.get(incident.signature)
        repeat: dict[str, Any] | None = None
        previous: dict[str, Any] | None = None
        if thread is not None:
            facts = {"issue_id": thread.issue_id, "job": thread.issue_job, "incident_id": thread.incident_id}
            if thread.within(
                self.repeat_window, incident.started_mono, incident.started_wall, self.process_id
            ):
                repeat = facts
            else:
                previous = {**facts, "last_activity_at": iso(thread.last_activity_wall)}
        return thread, repeat, previous

    async def filed(
        self, incident: Incident, issue_job: int, earlier: Thread | None, repeat: bool, title: str
    ) -> None:
        """`incident` is filed by `issue_job`: as a repeat of `earlier`'s issue, or as a new issue."""
        self._threads[incident.signature] = Thread(
            incident_id=incident.id,
            issue_job=issue_job,
            issue_id=earlier.issue_id if repeat and earlier is not None else None,
            title=title,
            last_activity_wall=incident.opened_wall,
            last_activity_mono=incident.opened_mono,
            process=self.process_id,
        )
        await self.records.save_threads(self._threads)

    async def touch(self, incident: Incident, wall: float | None, mono: float | None) -> None:
        thread = self._threads.get(incident.signature)
        if thread is None or thread.incident_id != incident.id or wall is None or mono is None:
            return
        thread.last_activity_wall = max(thread.last_activity_wall, wall)
        thread.last_activity_mono = max(thread.last_activity_mono, mono)
        await self.records.save_threads(self._threads)

    async def learn_issue_ids(self, outbox: Outbox) -> None:
        """Each thread's issue id once its issue job is delivered (the tag is the fallback otherwise)."""
        changed = False
        for thread in list(self._threads.values()):
            if thread.issue_id or thread.issue_job is None:
                continue
            job = await outbox.job(thread.issue_job)
            if job is None or job.state in (JobState.FAILED, JobState.SHED):
                thread.issue_job = None  # nothing to learn any more; the tag is the fallback
                changed = True
            elif job.state is JobState.DONE and job.result:
                thread.issue_id = str(job.result.get("issue_id"))
                changed = True
        if changed:
            await self.records.save_threads(self._threads)
