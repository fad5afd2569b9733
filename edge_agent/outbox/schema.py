"""The outbox database's layout: the `jobs` table (and its dependency, counter and meta tables), the
queries the store and its views share, and the row <-> `Job` codec.

A job is live while it waits or is in flight. Order within a group: a job is ready when no earlier
live job of its group holds the group; a job waiting for a prerequisite (`waiting_since` set) has
stepped aside and no longer holds it (store.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edge_agent.outbox.model import Job, JobState

COLUMNS = (
    "id",
    "kind",
    "grp",
    "payload",
    "deps",
    "files",
    "priority",
    "state",
    "attempts",
    "next_attempt_at",
    "attempt_started",
    "last_error",
    "result",
    "failure",
    "created_at",
    "updated_at",
    "size_bytes",
)
# Columns added since the first layout: an older database gets them (ALTER TABLE) when opened.
ADDED_COLUMNS = {"waiting_since": "REAL"}
ALL_COLUMNS = (*COLUMNS, *ADDED_COLUMNS)
SELECT_JOBS = "SELECT " + ", ".join(f"j.{c}" for c in ALL_COLUMNS) + " FROM jobs AS j"
LIVE = "('pending', 'in_flight')"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    grp TEXT NOT NULL,
    payload TEXT NOT NULL,
    deps TEXT NOT NULL,
    files TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempt_started INTEGER NOT NULL,
    last_error TEXT,
    result TEXT,
    failure TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    size_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, id, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_live_by_group ON jobs(grp, id) WHERE state IN {LIVE};
CREATE TABLE IF NOT EXISTS job_deps (
    job_id INTEGER NOT NULL,
    dep_id INTEGER NOT NULL,
    PRIMARY KEY (job_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_deps_by_dep ON job_deps(dep_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID;
"""

# A live job that holds its group: one waiting for a prerequisite has stepped aside (module doc).
HOLDS_GROUP = f"state IN {LIVE} AND waiting_since IS NULL"
# Ready = waiting, due, no earlier job holds its group, every dependency delivered. Walks the
# (state, id) index in id order so it stops after `limit` hits instead of sorting every waiting job.
READY = f"""
{SELECT_JOBS} INDEXED BY jobs_by_state
WHERE j.state = 'pending' AND j.next_attempt_at <= :now
  AND NOT EXISTS (
    SELECT 1 FROM jobs AS e WHERE e.grp = j.grp AND e.id < j.id AND e.state IN {LIVE}
    AND e.waiting_since IS NULL)
  AND NOT EXISTS (
    SELECT 1 FROM job_deps AS d JOIN jobs AS x ON x.id = d.dep_id
    WHERE d.job_id = j.id AND x.state != 'done')
ORDER BY j.id LIMIT :limit
"""
# The same, leaving out the kinds named in the JSON array :exclude (a drain does not wait for them).
READY_EXCEPT = READY.replace(
    "ORDER BY j.id", "AND j.kind NOT IN (SELECT value FROM json_each(:exclude))\nORDER BY j.id"
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def row_to_job(row: Sequence[Any]) -> Job:
    (
        job_id,
        kind,
        grp,
        payload,
        deps,
        files,
        priority,
        state,
        attempts,
        next_at,
        started,
        last_error,
        result,
        failure,
        created,
        updated,
        size,
        *added,
    ) = row
    return Job(
        id=int(job_id),
        kind=str(kind),
        group=str(grp),
        payload=json.loads(payload),
        deps=tuple(int(d) for d in json.loads(deps)),
        priority=int(priority),
        state=JobState(state),
        attempts=int(attempts),
        next_attempt_at=float(next_at),
        attempt_started=bool(started),
        last_error=last_error,
        result=json.loads(result) if result is not None else None,
        failure=json.loads(failure) if failure is not None else None,
        created_at=float(created),
        updated_at=float(updated),
        size_bytes=int(size),
        files=tuple(str(f) for f in json.loads(files)),
        waiting_since=float(added[0]) if added and added[0] is not None else None,
    )
