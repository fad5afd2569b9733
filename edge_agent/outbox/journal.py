"""The outbox's commit journal: a witness, outside SQLite, of what the database committed.

Why: SQLite in WAL mode keeps the newest commits only in `outbox.sqlite3-wal` until a checkpoint
copies them into the main file. A `-wal` that is damaged after a kill (truncated, a garbage header:
power loss on a filesystem that does not order data, a copy without it, a bad block) is simply ignored
by SQLite: the database opens "sound" and the jobs of those commits are gone, silently. Nothing inside
the database can tell, since the evidence was in the lost file.

What: every transaction gets a sequence number, stored in the database in the same transaction
(`meta.seq`), and, after its COMMIT, one line appended here (`<crc32> <json>`): its sequence, the
full rows of the jobs it added, and the ids of the jobs whose state it changed. At start, records with
a sequence above the database's are commits the database lost:

- their added jobs are put back, exactly as enqueued (same id, group, payload, dependencies), and
- every job they touched (claimed, delivered, retried, failed) that is waiting gets `attempt_started`,
  so its handler looks for what an attempt may have made before sending again: no duplicate either;
- a lost commit whose record is unreadable too is counted as unrecoverable (its jobs are unknown).

Each of these is logged as an error, counted (durable counters), and on /status (`lost_commits`).

Cost and bounds: one extra append per transaction, and one `fdatasync` for a transaction that adds
jobs (the database already does one per transaction); measured in bench/bench_outbox.py. The lines of
the other transactions (claims, outcomes) are not synced: a kill cannot lose them (the kernel has
them), only a power cut can, and then only if the same power cut also tore the fsynced WAL frames.
The journal only needs to cover what is not yet in the main file, so when it passes `COMPACT_BYTES`
the outbox checkpoints the WAL into the main file (`TRUNCATE`) and empties the journal; it is also
emptied at a clean close. Its size stays around `COMPACT_BYTES`.

What it cannot see: a commit whose journal line was never written (the process killed between COMMIT
and the append, or the append refused by a full disk, which is logged) AND whose WAL frames are then
damaged: two faults on the same commit. A damaged main database file is the quarantine's (recovery.py);
the journal then puts back the recent jobs the salvage could not read.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.state_files import FILE_MODE

SUFFIX = ".commits"
COMPACT_BYTES = 1024 * 1024


@dataclass(slots=True)
class CommitRecord:
    seq: int
    added: list[list[Any]] = field(default_factory=list)  # full job rows, in schema.COLUMNS order
    touched: list[int] = field(default_factory=list)


@dataclass(slots=True)
class JournalRead:
    records: list[CommitRecord]
    unreadable: int  # lines that failed their checksum or did not parse (a torn last line included)


def encode(record: CommitRecord) -> bytes:
    body = json.dumps(
        {"seq": record.seq, "add": record.added, "touch": record.touched},
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> CommitRecord | None:
    crc, sep, body = line.rstrip(b"\n").partition(b" ")
    if not sep or len(crc) != 8:
        return None
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        doc = json.loads(body)
        return CommitRecord(
            seq=int(doc["seq"]),
            added=[list(row) for row in doc.get("add", [])],
            touched=[int(i) for i in doc.get("touch", [])],
        )
    except (ValueError, TypeError, KeyError):
        return None


class CommitJournal:
    """Append-only; one writer (the outbox's database thread)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self.path = Path(path)
        self.sync = sync
        self._fd: int | None = None
        self.size = 0

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)
        self.size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self) -> JournalRead:
        records: list[CommitRecord] = []
        unreadable = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return JournalRead([], 0)
        for line in _lines(data):
            record = decode(line)
            if record is None:
                unreadable += 1
            else:
                records.append(record)
        return JournalRead(records, unreadable)

    def append(self, record: CommitRecord) -> None:
        """Raises OSError (disk full): the caller logs it; the commit itself already happened. Synced
        when the record adds jobs (module doc)."""
        if self._fd is None:
            raise RuntimeError("commit journal is not open")
        data = encode(record)
        written = os.write(self._fd, data)
        if written != len(data):
            # A short append (disk full): cut it back so the next record starts on a line of its own.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise OSError(28, "No space left on device (short write to the commit journal)")
        self.size += written
        if self.sync and record.added:
            os.fdatasync(self._fd)

    def reset(self) -> None:
        """Empty the journal: everything it witnessed is in the main database file now."""
        if self._fd is None:
            raise RuntimeError("commit journal is not open")
        os.ftruncate(self._fd, 0)
        if self.sync:
            os.fsync(self._fd)
        self.size = 0


def _lines(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip():
            yield line
