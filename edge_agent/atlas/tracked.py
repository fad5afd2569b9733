"""The incidents the reporter follows while they are open: each one's readable name (the stem of its
files in Atlas, chosen once, so a retry reuses it) and what its issue is known as so far: the job that
files it, then the issue's id once that job is delivered, kept so later jobs carry the id instead of
depending on a job the outbox may purge (`issue_ref`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from edge_agent.atlas.batches import Ref
from edge_agent.atlas.narrative import subject
from edge_agent.atlas.records import RunRecord
from edge_agent.incidents import Incident
from edge_agent.outbox import JobState, Outbox

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(slots=True)
class TrackedIncident:
    incident: Incident
    name: str  # the readable stem of its files in Atlas
    issue_job: int | None
    issue_id: str | None = None
    via: str | None = None  # "create" | "repeat", once the issue job's result is known
    batches: int = 0  # grew comments enqueued


def readable_name(incident: Incident, bench: str) -> str:
    """`bench-03_supply_v_2026-12-01T21-31-05Z_limits`: bench, lead channel, UTC start, lead rule kind."""
    lead = incident.lead
    started = datetime.fromtimestamp(incident.started_wall, UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    kind = lead.kind.removeprefix("rule:")
    raw = f"{bench}_{subject(lead).replace(' ', '-')}_{started}_{kind}"
    return _UNSAFE_NAME.sub("-", raw).strip("-.")[:160] or "incident"


async def issue_ref(
    outbox: Outbox,
    incident_id: str,
    issue_job: int | None,
    issue_id: str | None = None,
    via: str | None = None,
) -> Ref:
    """How a job names an incident's issue: its id when known, else the job that files it (a
    dependency), else its tag (the issue job is gone: the handler finds the issue by the tag)."""
    if issue_id is not None:
        return Ref({"issue_id": issue_id, "via": via})
    if issue_job is not None:
        job = await outbox.job(issue_job)
        if job is not None and job.state is JobState.DONE and job.result:
            return Ref({"issue_id": job.result["issue_id"], "via": job.result.get("via")})
        if job is not None:
            return Ref({}, (issue_job,))
    return Ref({"issue_incident_id": incident_id})


class TrackedIncidents:
    def __init__(self, outbox: Outbox, bench: str) -> None:
        self._outbox = outbox
        self._bench = bench
        self._tracked: dict[str, TrackedIncident] = {}
        self._names: dict[str, str] = {}  # incident id -> readable name, chosen once (retries reuse it)

    def __contains__(self, incident_id: str) -> bool:
        return incident_id in self._tracked

    def get(self, incident_id: str) -> TrackedIncident | None:
        return self._tracked.get(incident_id)

    def all(self) -> list[TrackedIncident]:
        return list(self._tracked.values())

    def name(self, incident: Incident, run: RunRecord) -> str:
        name = self._names.get(incident.id)
        if name is None:
            name = self._names[incident.id] = run.unique_name(readable_name(incident, self._bench))
        return name

    def add(self, incident: Incident, name: str, issue_job: int) -> None:
        self._tracked[incident.id] = TrackedIncident(incident, name, issue_job)

    def forget(self, incident_id: str) -> None:
        """Its closing comment is enqueued: nothing more is sent for it."""
        self._tracked.pop(incident_id, None)
        self._names.pop(incident_id, None)

    async def learn_issue_ids(self) -> None:
        for tracked in self.all():
            if tracked.issue_id is None and tracked.issue_job is not None:
                job = await self._outbox.job(tracked.issue_job)
                if job is not None and job.state is JobState.DONE and job.result:
                    tracked.issue_id = str(job.result.get("issue_id"))
                    tracked.via = str(job.result.get("via"))

    async def issue_ref(self, tracked: TrackedIncident) -> Ref:
        return await issue_ref(
            self._outbox, tracked.incident.id, tracked.issue_job, tracked.issue_id, tracked.via
        )
