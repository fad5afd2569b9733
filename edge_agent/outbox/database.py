"""The outbox database file: opening it (creating, migrating, recovering a damaged one and salvaging its
rows, putting back commits a damaged `-wal` lost), its transactions, and compaction. Blocking; the
worker calls it from one dedicated thread so the event loop never waits on the disk. `JobStore`
(store.py) is the job lifecycle on top of it.

Durability: `synchronous=FULL` by default. WAL with NORMAL already survives a killed process (the
guarantee the tests check with SIGKILL), but a power cut could lose the last commits, and the last
commits are exactly the "attempt started" markers that prevent duplicates. FULL costs one fsync per
transaction; the agent writes a few jobs per anomaly, so that is cheap (see bench/bench_outbox.py).

Every state change is one transaction. Times are on the outbox's own clock (clock.py: running time,
carried across restarts, blind to wall-clock steps); each transaction records it and a sequence number
in `meta`, and appends a line to the commit journal (journal.py), which lets `open` find and put back
commits a damaged `-wal` lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger
from edge_agent.outbox.clock import OutboxClock
from edge_agent.outbox.journal import COMPACT_BYTES, CommitJournal, CommitRecord
from edge_agent.outbox.journal import SUFFIX as JOURNAL_SUFFIX
from edge_agent.outbox.recovery import (
    RecoveryReport,
    RestoreReport,
    find_problem,
    quarantine,
    restore_lost_commits,
    salvage_rows,
)
from edge_agent.outbox.schema import ADDED_COLUMNS, COLUMNS, SCHEMA, row_to_job
from edge_agent.state_files import FILE_MODE, ensure_private_dir
from edge_agent.state_health import StateFileHealth, is_no_space

log = get_logger(__name__)


class JobDatabase:
    """Not thread-safe: one thread owns it (the worker's executor)."""

    def __init__(
        self,
        path: Path,
        *,
        files_root: Path | None = None,
        synchronous: str = "FULL",
        clock: OutboxClock | None = None,
        health: StateFileHealth | None = None,
    ) -> None:
        self.path = Path(path)
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
        con.executescript(SCHEMA)
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
                self.db,
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
        busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
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
                job = row_to_job(row)  # validates every column, the JSON ones included
            except (ValueError, TypeError):
                continue
            self.db.execute(f"INSERT OR IGNORE INTO jobs ({', '.join(COLUMNS)}) VALUES ({placeholders})", row)
            self.db.executemany(
                "INSERT OR IGNORE INTO job_deps (job_id, dep_id) VALUES (?, ?)",
                [(job.id, d) for d in job.deps],
            )
            saved += 1
        return saved

    def _sweep_files(self) -> None:
        """Evidence of delivered or shed jobs left behind by a crash between commit and delete."""
        rows = self.db.execute(
            "SELECT id, files FROM jobs WHERE state IN ('done', 'shed') AND files != '[]'"
        ).fetchall()
        for job_id, files in rows:
            self._unlink(json.loads(files))
            self.db.execute("UPDATE jobs SET files = '[]' WHERE id = ?", (job_id,))

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                self.compact()
            self._con.close()
            self._con = None
        self.journal.close()

    # --- plumbing ---------------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection, for the thread that owns the store (views.py reads through it)."""
        if self._con is None:
            raise RuntimeError("outbox store is not open")
        return self._con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
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
        self.db.execute(
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
