"""Read-only views of the outbox for /status: the job holding each group and why, the jobs waiting for
a prerequisite, the failed jobs with the server's answers. Pure queries on the store's connection,
called on the thread that owns it (`JobDatabase.db`)."""

from __future__ import annotations

import json
import sqlite3

from edge_agent.outbox.model import JobState, Json
from edge_agent.outbox.schema import HOLDS_GROUP, LIVE


def group_heads(db: sqlite3.Connection, now: float, limit: int = 1000) -> list[Json]:
    """The job holding each group that has jobs behind it, with why it is not being delivered now
    (`why` None: it is due and ready). For /status (the worker adds queue-wide pauses)."""
    rows = db.execute(
        f"SELECT j.id, j.kind, j.grp, j.state, j.attempts, j.next_attempt_at, j.last_error, j.created_at,"
        f" (SELECT COUNT(*) FROM jobs AS b WHERE b.grp = j.grp AND b.id > j.id AND b.state IN {LIVE})"
        f" FROM jobs AS j WHERE j.{HOLDS_GROUP} AND NOT EXISTS ("
        f"  SELECT 1 FROM jobs AS e WHERE e.grp = j.grp AND e.id < j.id AND e.{HOLDS_GROUP})"
        f" ORDER BY j.id LIMIT ?",
        (limit,),
    ).fetchall()
    heads: list[Json] = []
    for job_id, kind, grp, state, attempts, next_at, last_error, created, behind in rows:
        if not behind:
            continue
        blockers = db.execute(
            "SELECT x.id, x.state FROM job_deps AS d JOIN jobs AS x ON x.id = d.dep_id"
            " WHERE d.job_id = ? AND x.state != 'done' ORDER BY x.id LIMIT 5",
            (job_id,),
        ).fetchall()
        why: str | None = None
        if state == JobState.IN_FLIGHT:
            why = f"being delivered (attempt {attempts})"
        elif blockers:
            why = "waiting for " + ", ".join(f"job {b} ({st})" for b, st in blockers)
        elif next_at > now:
            why = f"retry in {next_at - now:.1f} s after: {last_error or 'a failed attempt'}"
        heads.append(
            {
                "group": grp,
                "behind": int(behind),
                "head": {
                    "id": job_id,
                    "kind": kind,
                    "state": state,
                    "attempts": attempts,
                    "last_error": last_error,
                    "age_s": round(max(0.0, now - created), 3),
                },
                "why": why,
            }
        )
    return heads


def waiting_for_prerequisites(db: sqlite3.Connection, now: float, wait: float, limit: int = 20) -> list[Json]:
    rows = db.execute(
        f"SELECT id, kind, grp, waiting_since, last_error FROM jobs"
        f" WHERE state IN {LIVE} AND waiting_since IS NOT NULL ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "id": job_id,
            "kind": kind,
            "group": grp,
            "waiting_s": round(max(0.0, now - since), 3),
            "gives_up_in_s": round(max(0.0, since + wait - now), 3),
            "last_error": last_error,
        }
        for job_id, kind, grp, since, last_error in rows
    ]


def failures(db: sqlite3.Connection, now: float, limit: int = 20) -> list[Json]:
    """The latest failed jobs, with how long ago each failed (`failed_ago_s`, outbox clock: an age, not a
    date, clock.py) and the failure as recorded (reason, the server's status and answer)."""
    rows = db.execute(
        "SELECT id, kind, grp, attempts, failure, updated_at FROM jobs WHERE state = 'failed'"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "id": r[0],
            "kind": r[1],
            "group": r[2],
            "attempts": r[3],
            "failed_ago_s": round(max(0.0, now - r[5]), 3),
            **json.loads(r[4] or "{}"),
        }
        for r in rows
    ]
