"""The outbox's jobs: adding them under the quota, the worker's transitions (claim, done, retry,
failed), and reading them. On the database file of database.py (opening, recovery, transactions);
the read-only views /status uses are in views.py.

Quota (`max_jobs` rows, `max_disk_bytes` of payloads plus evidence files) is enforced when jobs are
added: oldest delivered jobs are purged first (not needed by a waiting job), then shed tombstones, then
failed jobs, then waiting jobs of the lowest priority, oldest first. Every shed job is logged and
counted by reason; its dependants are shed with it.

Order within a group: a job is ready when no earlier live job of its group holds the group. A job
waiting for a prerequisite (`waiting_since` set: the handler said what it needs is not there) steps
aside: it no longer holds its group, is delivered when its prerequisite appears, and fails after the
policy's `prerequisite_wait`. A job that fails for good is skipped; the rest keep their order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from edge_agent.logs import get_logger
from edge_agent.outbox.clock import OutboxClock
from edge_agent.outbox.database import JobDatabase
from edge_agent.outbox.model import BatchRef, Job, JobSpec, JobState, Json
from edge_agent.outbox.schema import LIVE, READY, READY_EXCEPT, SELECT_JOBS, dumps, row_to_job
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)


def _files_of(payload: Json) -> list[str]:
    files = payload.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ValueError('payload["files"] must be a list of paths')
    return files


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class JobStore(JobDatabase):
    """Not thread-safe: one thread owns it (the worker's executor)."""

    def __init__(
        self,
        path: Path,
        *,
        max_jobs: int,
        max_disk_bytes: int,
        files_root: Path | None = None,
        synchronous: str = "FULL",
        clock: OutboxClock | None = None,
        health: StateFileHealth | None = None,
    ) -> None:
        super().__init__(path, files_root=files_root, synchronous=synchronous, clock=clock, health=health)
        self.max_jobs = max_jobs
        self.max_disk_bytes = max_disk_bytes

    # --- adding -----------------------------------------------------------------------------------

    def add(self, specs: Sequence[JobSpec]) -> list[int]:
        """Persist jobs in one transaction (all or none) and enforce the quota. Raises ValueError for a
        malformed spec (unknown dependency, bad payload); nothing is written then."""
        now = self.clock.now()
        ids: list[int] = []
        unlink: list[str] = []
        with self._tx() as db:
            for spec in specs:
                if not spec.kind or not spec.group:
                    raise ValueError("a job needs a kind and a group")
                deps = self._resolve_deps(spec.deps, ids)
                payload = dumps(spec.payload)
                files = _files_of(spec.payload)
                size = len(payload.encode()) + sum(_file_size(f) for f in files)
                cursor = db.execute(
                    "INSERT INTO jobs (kind, grp, payload, deps, files, priority, state, attempts,"
                    " next_attempt_at, attempt_started, created_at, updated_at, size_bytes)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?, ?, ?)",
                    (
                        spec.kind,
                        spec.group,
                        payload,
                        dumps(deps),
                        dumps(files),
                        spec.priority,
                        now,
                        now,
                        now,
                        size,
                    ),
                )
                job_id = int(cursor.lastrowid or 0)
                ids.append(job_id)
                if self._entry is not None:
                    self._entry.added.append(
                        [job_id, spec.kind, spec.group, payload, dumps(deps), dumps(files), spec.priority,
                         now, size]
                    )  # fmt: skip
                db.executemany(
                    "INSERT INTO job_deps (job_id, dep_id) VALUES (?, ?)", [(job_id, d) for d in deps]
                )
                self.rows += 1
                self.bytes += size
                unlink += self._settle_on_dead_deps(job_id, deps, now)
            self._bump("enqueued", len(ids))
            unlink += self._enforce_quota(now)
        self._unlink(unlink)
        return ids

    def _resolve_deps(self, deps: Sequence[int | BatchRef], batch: list[int]) -> list[int]:
        resolved: list[int] = []
        for dep in deps:
            if isinstance(dep, BatchRef):
                if not 0 <= dep.index < len(batch):
                    raise ValueError(f"BatchRef({dep.index}) does not name an earlier job of the batch")
                resolved.append(batch[dep.index])
                continue
            if self.db.execute("SELECT 1 FROM jobs WHERE id = ?", (dep,)).fetchone() is None:
                raise ValueError(f"dependency {dep} is not a known job")
            resolved.append(int(dep))
        return resolved

    def _settle_on_dead_deps(self, job_id: int, deps: list[int], now: float) -> list[str]:
        """A job added after its dependency failed or was shed follows it at once."""
        for dep in deps:
            state = self.db.execute("SELECT state FROM jobs WHERE id = ?", (dep,)).fetchone()[0]
            if state == JobState.FAILED:
                self._fail_one(job_id, {"reason": f"dependency failed (job {dep})"}, now)
                self._bump("failed")
                log.error("outbox_job_failed", job_id=job_id, reason=f"dependency failed (job {dep})")
                return []
            if state == JobState.SHED:
                return self._shed(job_id, "dependency_shed", now)
        return []

    # --- quota ------------------------------------------------------------------------------------

    def _over_quota(self) -> str | None:
        if self.rows > self.max_jobs:
            return "quota_jobs"
        if self.bytes > self.max_disk_bytes:
            return "quota_disk"
        return None

    def _enforce_quota(self, now: float) -> list[str]:
        unlink: list[str] = []
        while (reason := self._over_quota()) is not None:
            db = self.db
            victim = db.execute(
                f"SELECT id, size_bytes FROM jobs WHERE state = 'done' AND id NOT IN ("
                f" SELECT d.dep_id FROM job_deps AS d JOIN jobs AS l ON l.id = d.job_id"
                f" WHERE l.state IN {LIVE}) ORDER BY id LIMIT 1"
            ).fetchone()
            if victim is not None:  # delivered: deleting it loses nothing
                self._delete(int(victim[0]), int(victim[1]))
                self._bump("purged")
                continue
            if reason == "quota_jobs":
                victim = db.execute(
                    "SELECT id, size_bytes FROM jobs WHERE state = 'shed' ORDER BY id LIMIT 1"
                ).fetchone()
                if victim is not None:  # already counted and logged when it was shed
                    self._delete(int(victim[0]), int(victim[1]))
                    continue
            victim = db.execute(
                "SELECT id, size_bytes, files FROM jobs WHERE state = 'failed' ORDER BY id LIMIT 1"
            ).fetchone()
            if victim is not None:
                log.warning("outbox_failed_job_shed", job_id=int(victim[0]), reason=reason)
                self._bump(f"shed.{reason}")
                unlink += json.loads(victim[2])
                self._delete(int(victim[0]), int(victim[1]))
                continue
            victim = db.execute(
                "SELECT id FROM jobs WHERE state = 'pending' ORDER BY priority ASC, id ASC LIMIT 1"
            ).fetchone()
            if victim is None:
                log.warning("outbox_over_quota", reason=reason, rows=self.rows, bytes=self.bytes)
                break  # only jobs in flight are left; they finish or fail on their own
            unlink += self._shed(int(victim[0]), reason, now)
        return unlink

    def _delete(self, job_id: int, size: int) -> None:
        self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        self.db.execute("DELETE FROM job_deps WHERE job_id = ?", (job_id,))
        self.rows -= 1
        self.bytes -= size

    def _shed(self, job_id: int, reason: str, now: float) -> list[str]:
        """Shed a waiting job (a tombstone stays, without payload) and, with it, its dependants."""
        unlink: list[str] = []
        pending = [(job_id, reason)]
        while pending:
            current, why = pending.pop()
            row = self.db.execute(
                "SELECT kind, grp, files, size_bytes FROM jobs WHERE id = ? AND state = 'pending'", (current,)
            ).fetchone()
            if row is None:
                continue
            kind, grp, files, size = row
            self.db.execute(
                "UPDATE jobs SET state = 'shed', payload = '{}', files = '[]', size_bytes = 0,"
                " attempt_started = 0, waiting_since = NULL, last_error = ?, updated_at = ? WHERE id = ?",
                (why, now, current),
            )
            self._touch(current)
            self.bytes -= int(size)
            unlink += json.loads(files)
            self._bump(f"shed.{why}")
            log.warning("outbox_job_shed", job_id=current, kind=kind, group=grp, reason=why)
            pending += [(d, "dependency_shed") for d in self._live_dependants(current)]
        return unlink

    def _live_dependants(self, job_id: int) -> list[int]:
        rows = self.db.execute(
            f"SELECT d.job_id FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id"
            f" WHERE d.dep_id = ? AND j.state IN {LIVE}",
            (job_id,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    # --- the worker's transitions -----------------------------------------------------------------

    def claim(self, limit: int, now: float) -> list[tuple[Job, dict[int, Json]]]:
        """Take up to `limit` ready jobs in id order, durably marked in flight with `attempt_started`
        set before anything is sent. The returned jobs carry the flag as it was *before* the claim:
        set means an earlier attempt may have reached the server."""
        claimed: list[tuple[Job, dict[int, Json]]] = []
        with self._tx() as db:
            rows = db.execute(READY, {"now": now, "limit": limit}).fetchall()
            for row in rows:
                job = row_to_job(row)
                db.execute(
                    "UPDATE jobs SET state = 'in_flight', attempt_started = 1, attempts = attempts + 1,"
                    " updated_at = ? WHERE id = ?",
                    (now, job.id),
                )
                self._touch(job.id)
                results: dict[int, Json] = {}
                for dep in job.deps:
                    found = db.execute("SELECT result FROM jobs WHERE id = ?", (dep,)).fetchone()
                    if found is not None and found[0] is not None:
                        results[dep] = json.loads(found[0])
                claimed.append((replace(job, state=JobState.IN_FLIGHT, attempts=job.attempts + 1), results))
        return claimed

    def next_due(self, after: float, exclude: Sequence[str] = ()) -> float | None:
        """When the earliest waiting job that was not yet due at `after` (the last claim's time) comes
        due. Jobs due earlier but blocked (group, dependencies) are left out: a completion wakes the
        worker for them, and counting them would make it spin. `exclude`: kinds left out."""
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending' AND next_attempt_at > ?"
            " AND kind NOT IN (SELECT value FROM json_each(?))",
            (after, dumps(list(exclude))),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def has_ready(self, exclude: Sequence[str] = ()) -> bool:
        """Whether a job is ready now; `exclude`: kinds left out."""
        params = {"now": self.clock.now(), "limit": 1}
        if not exclude:
            return bool(self.db.execute(READY, params).fetchall())
        return bool(self.db.execute(READY_EXCEPT, {**params, "exclude": dumps(list(exclude))}).fetchall())

    def mark_done(self, job_id: int, result: Json, *, adopted: bool = False) -> None:
        now = self.clock.now()
        with self._tx() as db:
            row = db.execute("SELECT files, payload FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            files, payload = row
            encoded = dumps(result)
            size = len(payload.encode()) + len(encoded.encode())
            old = db.execute("SELECT size_bytes FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            # `files` stays listed until deleted after the commit; a crash in between is swept at open.
            db.execute(
                "UPDATE jobs SET state = 'done', result = ?, attempt_started = 0, last_error = NULL,"
                " waiting_since = NULL, size_bytes = ?, updated_at = ? WHERE id = ?",
                (encoded, size, now, job_id),
            )
            self._touch(job_id)
            self.bytes += size - int(old)
            self._bump("adopted" if adopted else "delivered")
        self._unlink(json.loads(files))

    def mark_retry(
        self,
        job_id: int,
        next_at: float,
        error: str,
        *,
        outcome_unknown: bool,
        waiting_since: float | None = None,
    ) -> None:
        """Back to waiting until `next_at`. `waiting_since`: the job waits for a prerequisite since
        then, and steps aside in its group (module doc); once set it stays until the job ends."""
        now = self.clock.now()
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', next_attempt_at = ?, last_error = ?, attempt_started = ?,"
                " waiting_since = COALESCE(waiting_since, ?), updated_at = ? WHERE id = ?",
                (next_at, error[:1000], int(outcome_unknown), waiting_since, now, job_id),
            )
            self._touch(job_id)
            self._bump("retries")

    def mark_failed(self, job_id: int, failure: Json) -> list[int]:
        """Fail a job and every live job depending on it, transitively; returns the dependants failed."""
        now = self.clock.now()
        cascaded: list[int] = []
        with self._tx():
            self._fail_one(job_id, failure, now)
            frontier = [job_id]
            while frontier:
                parent = frontier.pop()
                for child in self._live_dependants(parent):
                    self._fail_one(child, {"reason": f"dependency failed (job {parent})"}, now)
                    cascaded.append(child)
                    frontier.append(child)
            self._bump("failed", 1 + len(cascaded))
        return cascaded

    def _fail_one(self, job_id: int, failure: Json, now: float) -> None:
        self.db.execute(
            "UPDATE jobs SET state = 'failed', failure = ?, attempt_started = 0, last_error = ?,"
            " waiting_since = NULL, updated_at = ? WHERE id = ?",
            (dumps(failure), str(failure.get("reason", ""))[:1000], now, job_id),
        )
        self._touch(job_id)

    def release_in_flight(self) -> int:
        """Shutdown: jobs cut off mid-attempt wait again, their outcome unknown (attempt_started kept)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET state = 'pending' WHERE state = 'in_flight'").rowcount

    # --- reading ----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        row = self.db.execute(SELECT_JOBS + " WHERE j.id = ?", (job_id,)).fetchone()
        return row_to_job(row) if row is not None else None

    def jobs(self, state: JobState | None = None, limit: int = 1000) -> list[Job]:
        if state is None:
            rows = self.db.execute(SELECT_JOBS + " ORDER BY j.id LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.db.execute(
                SELECT_JOBS + " WHERE j.state = ? ORDER BY j.id LIMIT ?", (state, limit)
            ).fetchall()
        return [row_to_job(r) for r in rows]

    def latest(self, kind: str, state: JobState, limit: int) -> list[Job]:
        """The newest `limit` jobs of one kind in one state, newest first (the live page's "issues
        filed": delivered issue jobs with their results)."""
        rows = self.db.execute(
            SELECT_JOBS + " WHERE j.kind = ? AND j.state = ? ORDER BY j.id DESC LIMIT ?", (kind, state, limit)
        ).fetchall()
        return [row_to_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        found = {
            str(s): int(n) for s, n in self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        }
        return {state.value: found.get(state.value, 0) for state in JobState}

    def oldest_live_created_at(self) -> float | None:
        row = self.db.execute(f"SELECT MIN(created_at) FROM jobs WHERE state IN {LIVE}").fetchone()
        return float(row[0]) if row and row[0] is not None else None
