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

Times are on the outbox's own clock (clock.py: running time, carried across restarts, blind to
wall-clock steps); each transaction records it and a sequence number in `meta`, and appends a line to
the commit journal (journal.py), which lets `open` find and put back commits a damaged `-wal` lost.

Order within a group: a job is ready when no earlier live job of its group holds the group. A job
waiting for a prerequisite (`waiting_since` set: the handler said what it needs is not there) steps
aside: it no longer holds its group, is delivered when its prerequisite appears, and fails after the
policy's `prerequisite_wait`. A job that fails for good is skipped; the rest keep their order.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger
from edge_agent.outbox.clock import OutboxClock
from edge_agent.outbox.journal import COMPACT_BYTES, CommitJournal, CommitRecord
from edge_agent.outbox.journal import SUFFIX as JOURNAL_SUFFIX
from edge_agent.outbox.model import (
    BatchRef,
    Job,
    JobSpec,
    JobState,
    Json,
)
from edge_agent.outbox.recovery import (
    RecoveryReport,
    RestoreReport,
    find_problem,
    quarantine,
    restore_lost_commits,
    salvage_rows,
)
from edge_agent.state_files import FILE_MODE, StateFileHealth, ensure_private_dir, is_no_space

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
# Columns added since the first layout: an older database gets them (ALTER TABLE) when opened.
ADDED_COLUMNS = {"waiting_since": "REAL"}
ALL_COLUMNS = (*COLUMNS, *ADDED_COLUMNS)
_SELECT = "SELECT " + ", ".join(f"j.{c}" for c in ALL_COLUMNS) + " FROM jobs AS j"
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
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID;
"""

# A live job that holds its group: one waiting for a prerequisite has stepped aside (module doc).
_HOLDS = f"state IN {_LIVE} AND waiting_since IS NULL"
# Ready = waiting, due, no earlier job holds its group, every dependency delivered. Walks the
# (state, id) index in id order so it stops after `limit` hits instead of sorting every waiting job.
_READY = f"""
{_SELECT} INDEXED BY jobs_by_state
WHERE j.state = 'pending' AND j.next_attempt_at <= :now
  AND NOT EXISTS (
    SELECT 1 FROM jobs AS e WHERE e.grp = j.grp AND e.id < j.id AND e.state IN {_LIVE}
    AND e.waiting_since IS NULL)
  AND NOT EXISTS (
    SELECT 1 FROM job_deps AS d JOIN jobs AS x ON x.id = d.dep_id
    WHERE d.job_id = j.id AND x.state != 'done')
ORDER BY j.id LIMIT :limit
"""
# The same, leaving out the kinds named in the JSON array :exclude (a drain does not wait for them).
_READY_EXCEPT = _READY.replace(
    "ORDER BY j.id", "AND j.kind NOT IN (SELECT value FROM json_each(:exclude))\nORDER BY j.id"
)


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
        clock: OutboxClock | None = None,
        health: StateFileHealth | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_jobs = max_jobs
        self.max_disk_bytes = max_disk_bytes
        # Evidence is deleted only below this directory: a payload must not be able to delete /etc.
        self.files_root = (files_root or self.path.parent).resolve()
        self._synchronous = synchronous
        self.clock = clock or OutboxClock()
        self.health = health
        self.journal = CommitJournal(
            self.path.with_name(self.path.name + JOURNAL_SUFFIX),
            sync=synchronous.upper() in ("FULL", "EXTRA"),
        )
        self._entry: CommitRecord | None = None  # what the open transaction will journal
        self._seq = 0
        self._con: sqlite3.Connection | None = None
        self.rows = 0
        self.bytes = 0
        self.counters: dict[str, int] = {}
        self.recovery: RecoveryReport | None = None
        self.restored: RestoreReport | None = None

    # --- opening ----------------------------------------------------------------------------------

    def open(self) -> RecoveryReport | None:
        """Open (creating, or recovering a damaged file). Never raises for a damaged database; raises
        sqlite3.OperationalError for an environment problem (locked by another agent, permissions)."""
        ensure_private_dir(self.path.parent)
        _private_file(self.path)  # SQLite gives -wal and -shm the database file's mode
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
        moved = quarantine(self.path, self.path.parent / "quarantine")
        salvaged, unreadable = salvage_rows(moved, COLUMNS)
        self.recovery = RecoveryReport(problem=problem, quarantined=str(moved), unreadable=unreadable)
        self._connect(salvaged)
        log.error("outbox_database_recovered", path=str(self.path), **self.recovery.as_dict())
        return self.recovery

    def _connect(self, salvaged: list[tuple[Any, ...]]) -> None:
        _private_file(self.path)
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._con = con
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self._synchronous}")
        con.execute("PRAGMA busy_timeout=5000")
        con.executescript(_SCHEMA)
        present = {str(r[1]) for r in con.execute("PRAGMA table_info(jobs)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in present:
                con.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        self.counters = {str(k): int(v) for k, v in con.execute("SELECT name, value FROM counters")}
        meta = {str(k): float(v) for k, v in con.execute("SELECT name, value FROM meta")}
        self.clock.resume(meta.get("clock"))
        self._seq = int(meta.get("seq", 0))
        self.journal.open()
        witnessed = self.journal.read()
        # Commits the database lost (a damaged -wal) are put back from the journal (journal.py).
        # After a quarantine the new file knows no sequence: every record is checked against it.
        since = 0 if self.recovery is not None else self._seq
        self._seq = max(self._seq, max((r.seq for r in witnessed.records), default=0))
        with self._tx():
            if self.recovery is not None:
                self.recovery.salvaged = self._insert_salvaged(salvaged)
                self._bump("corrupt_recovered")
            self.restored = restore_lost_commits(
                self._db,
                witnessed.records,
                since,
                witnessed.unreadable,
                quarantined=self.recovery is not None,
            )
            if self.restored is not None:
                for name, value in self.restored.counts().items():
                    self._bump(name, value)
            # A job in flight when the last process died may or may not have reached the server:
            # it goes back to waiting with attempt_started still set, so find_existing runs first.
            con.execute("UPDATE jobs SET state = 'pending' WHERE state = 'in_flight'")
        self._sweep_files()
        row = con.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM jobs").fetchone()
        self.rows, self.bytes = int(row[0]), int(row[1])
        if self.restored is not None or self.recovery is not None or self.journal.size > COMPACT_BYTES:
            self.compact()

    def compact(self) -> bool:
        """Copy the WAL into the main file and empty the journal (journal.py); False if SQLite could
        not checkpoint all of it now (the journal is kept, and tried again later)."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            return False
        try:
            self.journal.reset()
        except OSError as exc:
            log.warning("outbox_journal_reset_failed", error=str(exc))
            return False
        return True

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
            with contextlib.suppress(sqlite3.Error, OSError):
                self.compact()
            self._con.close()
            self._con = None
        self.journal.close()

    # --- plumbing ---------------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise RuntimeError("outbox store is not open")
        return self._con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        totals, counters, seq = (self.rows, self.bytes), dict(self.counters), self._seq
        entry = self._entry = CommitRecord(seq + 1)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                self._seq += 1
                db.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    [("seq", self._seq), ("clock", self.clock.now())],
                )
            except BaseException:
                db.execute("ROLLBACK")
                (self.rows, self.bytes), self.counters = totals, counters  # the mirror follows the rollback
                self._seq = seq
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._note_write_failed(exc)
            raise
        finally:
            self._entry = None
        self._note_write_ok()
        try:
            self.journal.append(entry)
        except OSError as exc:  # committed, but unwitnessed: a later -wal loss of it would go unseen
            log.warning("outbox_journal_append_failed", seq=entry.seq, error=str(exc))
            if self.health is not None:
                self.health.note_write_failed(self.journal.path, exc)
            return
        if self.journal.size > COMPACT_BYTES:
            with contextlib.suppress(sqlite3.Error):
                self.compact()

    def _touch(self, *job_ids: int) -> None:
        if self._entry is not None:
            self._entry.touched.extend(job_ids)

    def _note_write_failed(self, exc: sqlite3.OperationalError) -> None:
        if self.health is not None and is_sqlite_full(exc):
            self.health.note_no_space(self.path, str(exc))

    def _note_write_ok(self) -> None:
        if self.health is not None:
            self.health.note_write_ok(self.path)

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
        now = self.clock.now()
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
                if self._entry is not None:
                    self._entry.added.append(
                        [job_id, spec.kind, spec.group, payload, _dumps(deps), _dumps(files), spec.priority,
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
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending' AND next_attempt_at > ?"
            " AND kind NOT IN (SELECT value FROM json_each(?))",
            (after, _dumps(list(exclude))),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def has_ready(self, exclude: Sequence[str] = ()) -> bool:
        """Whether a job is ready now; `exclude`: kinds left out."""
        params = {"now": self.clock.now(), "limit": 1}
        if not exclude:
            return bool(self._db.execute(_READY, params).fetchall())
        return bool(self._db.execute(_READY_EXCEPT, {**params, "exclude": _dumps(list(exclude))}).fetchall())

    def mark_done(self, job_id: int, result: Json, *, adopted: bool = False) -> None:
        now = self.clock.now()
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
        self._db.execute(
            "UPDATE jobs SET state = 'failed', failure = ?, attempt_started = 0, last_error = ?,"
            " waiting_since = NULL, updated_at = ? WHERE id = ?",
            (_dumps(failure), str(failure.get("reason", ""))[:1000], now, job_id),
        )
        self._touch(job_id)

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

    def latest(self, kind: str, state: JobState, limit: int) -> list[Job]:
        """The newest `limit` jobs of one kind in one state, newest first (the live page's "issues
        filed": delivered issue jobs with their results)."""
        rows = self._db.execute(
            _SELECT + " WHERE j.kind = ? AND j.state = ? ORDER BY j.id DESC LIMIT ?", (kind, state, limit)
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

    def group_heads(self, now: float, limit: int = 1000) -> list[Json]:
        """The job holding each group that has jobs behind it, with why it is not being delivered now
        (`why` None: it is due and ready). For /status (the worker adds queue-wide pauses)."""
        rows = self._db.execute(
            f"SELECT j.id, j.kind, j.grp, j.state, j.attempts, j.next_attempt_at, j.last_error, j.created_at,"
            f" (SELECT COUNT(*) FROM jobs AS b WHERE b.grp = j.grp AND b.id > j.id AND b.state IN {_LIVE})"
            f" FROM jobs AS j WHERE j.{_HOLDS} AND NOT EXISTS ("
            f"  SELECT 1 FROM jobs AS e WHERE e.grp = j.grp AND e.id < j.id AND e.{_HOLDS})"
            f" ORDER BY j.id LIMIT ?",
            (limit,),
        ).fetchall()
        heads: list[Json] = []
        for job_id, kind, grp, state, attempts, next_at, last_error, created, behind in rows:
            if not behind:
                continue
            blockers = self._db.execute(
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

    def waiting_for_prerequisites(self, now: float, wait: float, limit: int = 20) -> list[Json]:
        rows = self._db.execute(
            f"SELECT id, kind, grp, waiting_since, last_error FROM jobs"
            f" WHERE state IN {_LIVE} AND waiting_since IS NOT NULL ORDER BY id LIMIT ?",
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


def _private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 less the umask, and gives
    its -wal and -shm the database's mode), or tighten an existing one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def is_sqlite_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or is_no_space(exc)
    )
