"""The outbox's durable state: one SQLite database (WAL) in the state directory. Blocking; the worker
calls it from one dedicated thread so the event loop never waits on the disk.

Durability: `synchronous=FULL` by default. WAL with NORMAL already survives a killed process (the
guarantee the tests check with SIGKILL), but a power cut could lose the last commits, and the last
commits are exactly the "attempt started" markers that prevent duplicates. FULL costs one fsync per
transaction; the agent writes a few jobs per anomaly, so that is cheap (see bench/bench_outbox.py).

Every state change is one transaction. Quota (`max_jobs` rows, `max_disk_bytes` of payloads plus
evidence files) is enforced when jobs are added: oldest delivered jobs are purged first (not needed by
a waiting job), then shed tombstones, then failed jobs, then waiting jobs of the lowest priority,
oldest first. Every shed job is logged and counted by reason; its dependants are shed with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger
from edge_agent.outbox.model import (
    BatchRef,
    Job,
    JobSpec,
    JobState,
    Json,
)
from edge_agent.outbox.recovery import RecoveryReport, find_problem, quarantine, salvage_rows

log = get_logger(__name__)

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
_SELECT = "SELECT " + ", ".join(f"j.{c}" for c in COLUMNS) + " FROM jobs AS j"
_LIVE = "('pending', 'in_flight')"

_SCHEMA = f"""
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
CREATE INDEX IF NOT EXISTS jobs_live_by_group ON jobs(grp, id) WHERE state IN {_LIVE};
CREATE TABLE IF NOT EXISTS job_deps (
    job_id INTEGER NOT NULL,
    dep_id INTEGER NOT NULL,
    PRIMARY KEY (job_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_deps_by_dep ON job_deps(dep_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

# Ready = waiting, due, first live job of its group, every dependency delivered. Walks the (state, id)
# index in id order so it stops after `limit` hits instead of sorting every waiting job.
_READY = f"""
{_SELECT} INDEXED BY jobs_by_state
WHERE j.state = 'pending' AND j.next_attempt_at <= :now
  AND NOT EXISTS (
    SELECT 1 FROM jobs AS e WHERE e.grp = j.grp AND e.id < j.id AND e.state IN {_LIVE})
  AND NOT EXISTS (
    SELECT 1 FROM job_deps AS d JOIN jobs AS x ON x.id = d.dep_id
    WHERE d.job_id = j.id AND x.state != 'done')
ORDER BY j.id LIMIT :limit
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _row_to_job(row: Sequence[Any]) -> Job:
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
    )


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


class JobStore:
    """Not thread-safe: one thread owns it (the worker's executor)."""

    def __init__(
        self,
        path: Path,
        *,
        max_jobs: int,
        max_disk_bytes: int,
        files_root: Path | None = None,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_jobs = max_jobs
        self.max_disk_bytes = max_disk_bytes
        # Evidence is deleted only below this directory: a payload must not be able to delete /etc.
        self.files_root = (files_root or self.path.parent).resolve()
        self._synchronous = synchronous
        self._clock = clock
        self._con: sqlite3.Connection | None = None
        self.rows = 0
        self.bytes = 0
        self.counters: dict[str, int] = {}
        self.recovery: RecoveryReport | None = None

    # --- opening ----------------------------------------------------------------------------------

    def open(self) -> RecoveryReport | None:
        """Open (creating, or recovering a damaged file). Never raises for a damaged database; raises
        sqlite3.OperationalError for an environment problem (locked by another agent, permissions)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        problem = find_problem(self.path, COLUMNS)
        if problem is None:
            try:
                self._connect([])
                return None
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as exc:  # damage quick_check did not see
                self.close()
                problem = f"{type(exc).__name__}: {exc}"
        moved = quarantine(self.path, self.path.parent / "quarantine", self._clock())
        salvaged, unreadable = salvage_rows(moved, COLUMNS)
        self.recovery = RecoveryReport(problem=problem, quarantined=str(moved), unreadable=unreadable)
        self._connect(salvaged)
        log.error("outbox_database_recovered", path=str(self.path), **self.recovery.as_dict())
        return self.recovery

    def _connect(self, salvaged: list[tuple[Any, ...]]) -> None:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._con = con
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self._synchronous}")
        con.execute("PRAGMA busy_timeout=5000")
        con.executescript(_SCHEMA)
        self.counters = {str(k): int(v) for k, v in con.execute("SELECT name, value FROM counters")}
        with self._tx():
            if self.recovery is not None:
                self.recovery.salvaged = self._insert_salvaged(salvaged)
                self._bump("corrupt_recovered")
            # A job in flight when the last process died may or may not have reached the server:
            # it goes back to waiting with attempt_started still set, so find_existing runs first.
            con.execute("UPDATE jobs SET state = 'pending' WHERE state = 'in_flight'")
        self._sweep_files()
        row = con.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM jobs").fetchone()
        self.rows, self.bytes = int(row[0]), int(row[1])

    def _insert_salvaged(self, rows: list[tuple[Any, ...]]) -> int:
        saved = 0
        placeholders = ", ".join("?" for _ in COLUMNS)
        for row in rows:
            try:
                job = _row_to_job(row)  # validates every column, the JSON ones included
            except (ValueError, TypeError):
                continue
            self._db.execute(
                f"INSERT OR IGNORE INTO jobs ({', '.join(COLUMNS)}) VALUES ({placeholders})", row
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO job_deps (job_id, dep_id) VALUES (?, ?)",
                [(job.id, d) for d in job.deps],
            )
            saved += 1
        return saved

    def _sweep_files(self) -> None:
        """Evidence of delivered or shed jobs left behind by a crash between commit and delete."""
        rows = self._db.execute(
            "SELECT id, files FROM jobs WHERE state IN ('done', 'shed') AND files != '[]'"
        ).fetchall()
        for job_id, files in rows:
            self._unlink(json.loads(files))
            self._db.execute("UPDATE jobs SET files = '[]' WHERE id = ?", (job_id,))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # --- plumbing ---------------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise RuntimeError("outbox store is not open")
        return self._con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        totals, counters = (self.rows, self.bytes), dict(self.counters)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            (self.rows, self.bytes), self.counters = totals, counters  # the mirror follows the rollback
            raise
        db.execute("COMMIT")

    def _bump(self, name: str, by: int = 1) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )
        self.counters[name] = self.counters.get(name, 0) + by

    def _unlink(self, files: Sequence[str]) -> None:
        for name in files:
            path = Path(name).resolve()
            if not path.is_relative_to(self.files_root):
                log.warning("outbox_file_outside_state_dir_kept", path=str(path))
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- adding -----------------------------------------------------------------------------------

    def add(self, specs: Sequence[JobSpec]) -> list[int]:
        """Persist jobs in one transaction (all or none) and enforce the quota. Raises ValueError for a
        malformed spec (unknown dependency, bad payload); nothing is written then."""
        now = self._clock()
        ids: list[int] = []
        unlink: list[str] = []
        with self._tx() as db:
            for spec in specs:
                if not spec.kind or not spec.group:
                    raise ValueError("a job needs a kind and a group")
                deps = self._resolve_deps(spec.deps, ids)
                payload = _dumps(spec.payload)
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
                        _dumps(deps),
                        _dumps(files),
                        spec.priority,
                        now,
                        now,
                        now,
                        size,
                    ),
                )
                job_id = int(cursor.lastrowid or 0)
                ids.append(job_id)
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
            if self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (dep,)).fetchone() is None:
                raise ValueError(f"dependency {dep} is not a known job")
            resolved.append(int(dep))
        return resolved

    def _settle_on_dead_deps(self, job_id: int, deps: list[int], now: float) -> list[str]:
        """A job added after its dependency failed or was shed follows it at once."""
        for dep in deps:
            state = self._db.execute("SELECT state FROM jobs WHERE id = ?", (dep,)).fetchone()[0]
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
            db = self._db
            victim = db.execute(
                f"SELECT id, size_bytes FROM jobs WHERE state = 'done' AND id NOT IN ("
                f" SELECT d.dep_id FROM job_deps AS d JOIN jobs AS l ON l.id = d.job_id"
                f" WHERE l.state IN {_LIVE}) ORDER BY id LIMIT 1"
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
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        self._db.execute("DELETE FROM job_deps WHERE job_id = ?", (job_id,))
        self.rows -= 1
        self.bytes -= size

    def _shed(self, job_id: int, reason: str, now: float) -> list[str]:
        """Shed a waiting job (a tombstone stays, without payload) and, with it, its dependants."""
        unlink: list[str] = []
        pending = [(job_id, reason)]
        while pending:
            current, why = pending.pop()
            row = self._db.execute(
                "SELECT kind, grp, files, size_bytes FROM jobs WHERE id = ? AND state = 'pending'", (current,)
            ).fetchone()
            if row is None:
                continue
            kind, grp, files, size = row
            self._db.execute(
                "UPDATE jobs SET state = 'shed', payload = '{}', files = '[]', size_bytes = 0,"
                " attempt_started = 0, last_error = ?, updated_at = ? WHERE id = ?",
                (why, now, current),
            )
            self.bytes -= int(size)
            unlink += json.loads(files)
            self._bump(f"shed.{why}")
            log.warning("outbox_job_shed", job_id=current, kind=kind, group=grp, reason=why)
            pending += [(d, "dependency_shed") for d in self._live_dependants(current)]
        return unlink

    def _live_dependants(self, job_id: int) -> list[int]:
        rows = self._db.execute(
            f"SELECT d.job_id FROM job_deps AS d JOIN jobs AS j ON j.id = d.job_id"
            f" WHERE d.dep_id = ? AND j.state IN {_LIVE}",
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
            rows = db.execute(_READY, {"now": now, "limit": limit}).fetchall()
            for row in rows:
                job = _row_to_job(row)
                db.execute(
                    "UPDATE jobs SET state = 'in_flight', attempt_started = 1, attempts = attempts + 1,"
                    " updated_at = ? WHERE id = ?",
                    (now, job.id),
                )
                results: dict[int, Json] = {}
                for dep in job.deps:
                    found = db.execute("SELECT result FROM jobs WHERE id = ?", (dep,)).fetchone()
                    if found is not None and found[0] is not None:
                        results[dep] = json.loads(found[0])
                claimed.append((replace(job, state=JobState.IN_FLIGHT, attempts=job.attempts + 1), results))
        return claimed

    def next_due(self, after: float) -> float | None:
        """When the earliest waiting job that was not yet due at `after` (the last claim's time) comes
        due. Jobs due earlier but blocked (group, dependencies) are left out: a completion wakes the
        worker for them, and counting them would make it spin."""
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending' AND next_attempt_at > ?", (after,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def has_ready(self) -> bool:
        return bool(self._db.execute(_READY, {"now": self._clock(), "limit": 1}).fetchall())

    def mark_done(self, job_id: int, result: Json, *, adopted: bool = False) -> None:
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT files, payload FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            files, payload = row
            encoded = _dumps(result)
            size = len(payload.encode()) + len(encoded.encode())
            old = db.execute("SELECT size_bytes FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            # `files` stays listed until deleted after the commit; a crash in between is swept at open.
            db.execute(
                "UPDATE jobs SET state = 'done', result = ?, attempt_started = 0, last_error = NULL,"
                " size_bytes = ?, updated_at = ? WHERE id = ?",
                (encoded, size, now, job_id),
            )
            self.bytes += size - int(old)
            self._bump("adopted" if adopted else "delivered")
        self._unlink(json.loads(files))

    def mark_retry(self, job_id: int, next_at: float, error: str, *, outcome_unknown: bool) -> None:
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', next_attempt_at = ?, last_error = ?, attempt_started = ?,"
                " updated_at = ? WHERE id = ?",
                (next_at, error[:1000], int(outcome_unknown), now, job_id),
            )
            self._bump("retries")

    def mark_failed(self, job_id: int, failure: Json) -> list[int]:
        """Fail a job and every live job depending on it, transitively; returns the dependants failed."""
        now = self._clock()
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
        self._db.execute(
            "UPDATE jobs SET state = 'failed', failure = ?, attempt_started = 0, last_error = ?,"
            " updated_at = ? WHERE id = ?",
            (_dumps(failure), str(failure.get("reason", ""))[:1000], now, job_id),
        )

    def release_in_flight(self) -> int:
        """Shutdown: jobs cut off mid-attempt wait again, their outcome unknown (attempt_started kept)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET state = 'pending' WHERE state = 'in_flight'").rowcount

    # --- reading ----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        row = self._db.execute(_SELECT + " WHERE j.id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row is not None else None

    def jobs(self, state: JobState | None = None, limit: int = 1000) -> list[Job]:
        if state is None:
            rows = self._db.execute(_SELECT + " ORDER BY j.id LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._db.execute(
                _SELECT + " WHERE j.state = ? ORDER BY j.id LIMIT ?", (state, limit)
            ).fetchall()
        return [_row_to_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        found = {
            str(s): int(n) for s, n in self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        }
        return {state.value: found.get(state.value, 0) for state in JobState}

    def oldest_live_created_at(self) -> float | None:
        row = self._db.execute(f"SELECT MIN(created_at) FROM jobs WHERE state IN {_LIVE}").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def failures(self, limit: int = 20) -> list[Json]:
        rows = self._db.execute(
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
                "at": r[5],
                **json.loads(r[4] or "{}"),
            }
            for r in rows
        ]
