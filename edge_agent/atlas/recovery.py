"""Crash recovery of the reporter: incidents that were open when the process ended (SIGKILL, power).

Each open incident has a record (`reporter/open/<id>.json`, records.py) from before its jobs are
enqueued until its closing comment is. At the next start every record left is closed as "agent
restarted": its issue is made sure of (the issue job the record names, else one found in the outbox,
else the open batch enqueued now, looking for the incident's tag before filing), and a closing comment
says that the end and the evidence after the snapshot are unknown; the JSON summary of the members the
record knew is attached to it (with a header-only CSV: the frames died with the process). A record whose
closing comment is already queued (killed between enqueuing it and removing the record) is only removed.

If the snapshot was never written (killed between the record and the snapshot), the summary that
survived in the record is uploaded instead, with a header-only CSV, so the issue still says what was
detected, when and where, and says plainly that the frames are gone.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from edge_agent.atlas.batches import evidence_batch, open_batch
from edge_agent.atlas.incident_text import closing_comment, issue_tags, opening_comment, repeat_comment
from edge_agent.atlas.jobs import KIND_COMMENT, KIND_ISSUE
from edge_agent.atlas.tracked import issue_ref
from edge_agent.evidence.writer import write_evidence_async
from edge_agent.logs import get_logger
from edge_agent.outbox import Job, OutboxError

if TYPE_CHECKING:
    from edge_agent.atlas.reporter import Reporter

log = get_logger(__name__)

RESTART_NOTE = (
    "Closed by the agent at restart: the process ended while this incident was open, so its end and"
    " the evidence after the snapshot are unknown."
)
FRAMES_LOST_AT_RESTART = (
    "lost: the agent process ended while this incident was open; its members are the ones recorded by"
    " then, the frames after the snapshot were in that process's memory only"
)
SNAPSHOT_LOST = (
    "lost: the agent stopped after recording this incident but before writing its snapshot; the frames"
    " were in that process's memory only, this summary is what was kept"
)


async def recover_open_incidents(reporter: Reporter) -> None:
    records = await reporter.records.open_records()
    if not records:
        return
    jobs = await reporter.outbox.jobs(None, limit=100_000)
    for record in records:
        summary: dict[str, Any] = record["summary"]
        incident_id = str(summary.get("id", ""))
        if not incident_id or not isinstance(summary.get("members"), list) or not summary["members"]:
            continue
        if _has_job(jobs, KIND_COMMENT, incident_id, "close"):
            await reporter.records.remove_open(incident_id)
            continue
        issue_job = record.get("issue_job")
        if not isinstance(issue_job, int):
            found = [
                j.id for j in jobs if j.kind == KIND_ISSUE and j.payload.get("incident_id") == incident_id
            ]
            issue_job = found[-1] if found else await _enqueue_open(reporter, summary, record)
        closing = {**summary, "close_reason": "agent restarted", "closed_wall": reporter.wall_now()}
        # The members known at the crash (the record is rewritten as they join) are the final summary;
        # the frames after the snapshot died with the process, which the file says.
        files, names = await _write_summary(reporter, closing, str(record.get("name") or incident_id))
        try:
            await reporter.outbox.enqueue_many(
                evidence_batch(
                    incident_id=incident_id,
                    issue=await issue_ref(reporter.outbox, incident_id, issue_job),
                    session=await reporter.session.session_ref(),
                    files=files,
                    names=names,
                    part="close",
                    content=closing_comment(closing, names, note=RESTART_NOTE),
                )
            )
        except (OutboxError, ValueError) as exc:
            log.error("reporter_enqueue_failed", incident_id=incident_id, error=str(exc))
            continue
        reporter.counters["recovered_after_crash"] += 1
        log.warning("reporter_incident_closed_at_restart", incident_id=incident_id)
        await reporter.records.remove_open(incident_id)


def _has_job(jobs: list[Job], kind: str, incident_id: str, part: str) -> bool:
    return any(
        job.kind == kind and job.payload.get("incident_id") == incident_id and job.payload.get("part") == part
        for job in jobs
    )


async def _enqueue_open(reporter: Reporter, summary: dict[str, Any], record: dict[str, Any]) -> int | None:
    """Killed before the open batch was enqueued: enqueue it now, looking for the tag before filing."""
    incident_id = str(summary["id"])
    name = str(record.get("name") or incident_id)
    directory = reporter.evidence_dir
    files = [str(directory / f"{incident_id}.open.csv"), str(directory / f"{incident_id}.open.json")]
    names = [f"{name}_open.csv", f"{name}_open.json"]
    if not await asyncio.to_thread(os.path.exists, files[1]):
        await _write_lost_snapshot(reporter, summary, incident_id)
    title = str(summary.get("title") or f"[{reporter.bench}] incident {incident_id}")
    lead = summary["members"][0]
    specs = open_batch(
        incident_id=incident_id,
        issues_group=reporter.session.issues_group(),
        session=await reporter.session.session_ref(),
        files=files,
        names=names,
        issue={
            "title": title,
            "description": [],
            "priority": summary.get("priority") or lead.get("priority"),
            "tags": issue_tags(reporter.bench, summary["members"], incident_id),
        },
        repeat=record.get("repeat") if isinstance(record.get("repeat"), dict) else None,
        opening=opening_comment(summary, names, context=record.get("context") or []),
        repeat_text=repeat_comment(summary, names, context=record.get("context") or []),
        lookup_first=True,
    )
    try:
        ids = await reporter.outbox.enqueue_many(specs)
    except (OutboxError, ValueError) as exc:
        log.error("reporter_enqueue_failed", incident_id=incident_id, error=str(exc))
        return None
    return ids[1]


async def _write_summary(
    reporter: Reporter, summary: dict[str, Any], name: str
) -> tuple[list[str], list[str]]:
    incident_id = str(summary["id"])
    started = summary.get("started_mono")
    try:
        written = await write_evidence_async(
            reporter.evidence_dir,
            incident_id,
            {**summary, "evidence": FRAMES_LOST_AT_RESTART},
            [],
            t0=float(started) if isinstance(started, int | float) else 0.0,
            health=reporter.health,
        )
    except (OSError, ValueError) as exc:
        reporter.counters["evidence_errors"] += 1
        log.error("evidence_write_failed", incident_id=incident_id, error=str(exc))
        return [], []
    return [str(p) for p in written.paths], [f"{name}.csv", f"{name}.json"]


async def _write_lost_snapshot(reporter: Reporter, summary: dict[str, Any], incident_id: str) -> None:
    started = summary.get("started_mono")
    try:
        await write_evidence_async(
            reporter.evidence_dir,
            f"{incident_id}.open",
            {**summary, "evidence": SNAPSHOT_LOST},
            [],
            t0=float(started) if isinstance(started, int | float) else 0.0,
        )
    except (OSError, ValueError) as exc:
        reporter.counters["evidence_errors"] += 1
        log.error("evidence_write_failed", incident_id=incident_id, error=str(exc))
        return
    reporter.counters["snapshots_lost_at_crash"] += 1
    log.warning("reporter_snapshot_lost_at_crash", incident_id=incident_id)
