"""Start-up check of the outbox database, quarantine of a damaged file and salvage of its rows, and
the putting back of commits a damaged `-wal` lost (from the commit journal, journal.py).

The agent must never refuse to start because its queue file is torn (power loss mid-write, a full
disk, a bad sector): the damaged file and its -wal/-shm are moved aside for a human, whatever rows can
still be read are carried into a fresh database, and the event is logged, counted and reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger
from edge_agent.outbox.journal import CommitRecord
from edge_agent.state_files import ensure_private_dir

log = get_logger(__name__)

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
# Point look-ups for rows a full scan could not reach stop here: a guard against a damaged sequence.
MAX_PROBED_IDS = 200_000


@dataclass(slots=True)
class RecoveryReport:
    problem: str
    quarantined: str
    salvaged: int = 0
    unreadable: int = 0
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "quarantined": self.quarantined,
            "salvaged": self.salvaged,
            "unreadable": self.unreadable,
            "recovered_wall": self.at,
        }


def find_problem(path: Path, expected_columns: Sequence[str]) -> str | None:
    """None when `path` is absent or a sound database whose `jobs` table (if any) is ours; else what
    is wrong. Raises sqlite3.OperationalError when the file cannot be checked at all."""
    if not path.exists():
        return None
    con = sqlite3.connect(path)
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "quick_check: " + "; ".join(str(r[0]) for r in rows[:5])
        columns = [r[1] for r in con.execute("PRAGMA table_info(jobs)")]
        if columns and set(expected_columns) - set(columns):
            return f"jobs table has an unknown layout: {columns}"
    except sqlite3.OperationalError:
        # Locked, busy, cannot open, I/O error: a problem of the environment (another agent on the
        # same state dir, permissions), not of the file. Quarantining a sound queue would be wrong.
        raise
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return f"{type(exc).__name__}: {exc}"
    finally:
        con.close()
    return None


def quarantine(path: Path, quarantine_dir: Path, now: float | None = None) -> Path:
    """Move the database and its side files to `quarantine_dir/<name>.<UTC timestamp>` (sqlite naming
    kept, so the moved -wal still belongs to the moved file). Returns the moved database's path."""
    now = time.time() if now is None else now  # a name for humans: the wall clock is what they read
    ensure_private_dir(quarantine_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:]
    target = quarantine_dir / f"{path.name}.{stamp}"
    os.replace(path, target)
    for suffix in SIDE_SUFFIXES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


def salvage_rows(path: Path, columns: Sequence[str]) -> tuple[list[tuple[Any, ...]], int]:
    """Every `jobs` row still readable from a damaged file, by id; plus how many ids could not be read.

    A full scan stops at the first damaged page, so ids it did not reach are then read one by one (a
    point look-up descends the b-tree on its own path and fails only for rows on damaged pages).
    """
    rows: dict[int, tuple[Any, ...]] = {}
    unreadable = 0
    try:
        con = sqlite3.connect(path)
    except sqlite3.Error:
        return [], 0
    select = f"SELECT {', '.join(columns)} FROM jobs"
    try:
        # A torn file is shorter than its header says; SQLite refuses it outright unless the schema is
        # "writable" (it then trusts the file's real size). We only read this quarantined copy.
        with contextlib.suppress(sqlite3.Error):
            con.execute("PRAGMA writable_schema=ON")
        with contextlib.suppress(sqlite3.Error):
            for row in con.execute(select + " ORDER BY id"):
                rows[int(row[0])] = row
        highest = max(rows, default=0)
        for probe in ("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'", "SELECT max(id) FROM jobs"):
            with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
                found = con.execute(probe).fetchone()
                if found and found[0] is not None:
                    highest = max(highest, int(found[0]))
        for job_id in range(1, min(highest, MAX_PROBED_IDS) + 1):
            if job_id in rows:
                continue
            try:
                row = con.execute(select + " WHERE id = ?", (job_id,)).fetchone()
            except sqlite3.Error:
                unreadable += 1
                continue
            if row is not None:
                rows[job_id] = row
    finally:
        con.close()
    return [rows[k] for k in sorted(rows)], unreadable


@dataclass(slots=True)
class RestoreReport:
    """What the commit journal showed missing from the database at start, and what was put back."""

    commits_lost: int
    jobs_restored: int
    jobs_to_look_up: int  # waiting jobs a lost commit had claimed or settled: looked up before re-sending
    commits_unrecoverable: int  # lost commits whose journal line is unreadable too: their jobs are unknown
    journal_unreadable_lines: int
    at: float = field(default_factory=time.time)

    def counts(self) -> dict[str, int]:
        return {
            "commits_lost": self.commits_lost,
            "jobs_restored": self.jobs_restored,
            "commits_unrecoverable": self.commits_unrecoverable,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "commits_lost": self.commits_lost,
            "jobs_restored": self.jobs_restored,
            "jobs_to_look_up": self.jobs_to_look_up,
            "commits_unrecoverable": self.commits_unrecoverable,
            "journal_unreadable_lines": self.journal_unreadable_lines,
            "recovered_wall": self.at,
        }


_RESTORE = (
    "INSERT OR IGNORE INTO jobs (id, kind, grp, payload, deps, files, priority, created_at, size_bytes,"
    " state, attempts, next_attempt_at, attempt_started, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?)"
)


def restore_lost_commits(
    db: sqlite3.Connection,
    records: Sequence[CommitRecord],
    since: int,
    unreadable: int,
    *,
    quarantined: bool = False,
) -> RestoreReport | None:
    """Inside the caller's transaction: put back the jobs of journal records newer than the database's
    sequence `since`, and make every waiting job they touched look before it sends again (journal.py).
    None when nothing was lost. After a quarantine (`since` 0), jobs the salvage kept are left alone
    and only the missing ones come back; sequence gaps are not counted then (the new file has none)."""
    lost = [r for r in records if r.seq > since]
    if not lost:
        return None
    present = {r.seq for r in lost}
    first = max(since + 1, min(r.seq for r in records))
    gaps = 0 if quarantined else sum(1 for seq in range(first, max(present) + 1) if seq not in present)
    restored = 0
    touched: set[int] = set()
    for record in lost:
        for row in record.added:
            job_id, kind, grp, payload, deps, files, priority, created, size = row
            cursor = db.execute(
                _RESTORE, (job_id, kind, grp, payload, deps, files, priority, created, size, created, created)
            )
            if cursor.rowcount == 1:
                restored += 1
                db.executemany(
                    "INSERT OR IGNORE INTO job_deps (job_id, dep_id) VALUES (?, ?)",
                    [(job_id, int(d)) for d in json.loads(deps)],
                )
        touched.update(record.touched)
    look_up = 0
    for job_id in sorted(touched):
        look_up += db.execute(
            "UPDATE jobs SET attempt_started = 1 WHERE id = ? AND state IN ('pending', 'in_flight')",
            (job_id,),
        ).rowcount
    if quarantined and restored == 0:
        return None
    report = RestoreReport(
        commits_lost=0 if quarantined else len(lost) + gaps,
        jobs_restored=restored,
        jobs_to_look_up=look_up,
        commits_unrecoverable=gaps,
        journal_unreadable_lines=unreadable,
    )
    log.error("outbox_commits_lost", **report.as_dict(), database_sequence=since, quarantined=quarantined)
    return report
