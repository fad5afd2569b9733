"""Issue 12, item 5: a damaged `-wal` after a kill. SQLite ignores a WAL it cannot trust (a garbage
header) or the part of it past a torn frame (truncated), and opens "sound" without those commits:
before, the outbox lost 7 (truncated) or 11 (garbage header) of 11 jobs silently. The commit journal
(outbox/journal.py) shows what the database lost; the jobs are put back and each reaches the peer once,
and the loss is on /status, in the log and in the counters (the metrics)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
import structlog
from outbox_peer import ItemHandler, ScriptedPeer
from test_delivery import settle

from edge_agent.config import OutboxSection
from edge_agent.outbox import JobState, Outbox

N_JOBS = 11
CHILD = Path(__file__).parent / "outbox_child.py"
WAIT = 20.0


async def enqueue_in_a_child_then_kill(state_dir: Path, url: str) -> None:
    """A real process enqueues N_JOBS (the peer refuses: none is delivered) and is SIGKILLed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(state_dir), url, str(N_JOBS),
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    try:
        assert child.stdout is not None
        for _ in range(1000):
            line = await asyncio.wait_for(child.stdout.readline(), WAIT)
            if line.strip() in (b"enqueued", b""):
                break
        assert line.strip() == b"enqueued"
        await asyncio.sleep(0.3)  # a few delivery attempts (refused) commit too
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), WAIT)
    assert child.returncode == -signal.SIGKILL


def rows_sqlite_sees(db: Path) -> int:
    """What a plain SQLite open of the damaged files finds (on a copy: the real ones are left as is)."""
    copy = db.with_name("copy.sqlite3")
    for suffix in ("", "-wal"):
        source = Path(str(db) + suffix)
        if source.exists():
            Path(str(copy) + suffix).write_bytes(source.read_bytes())
    con = sqlite3.connect(copy)
    try:
        return int(con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        con.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(copy) + suffix).unlink(missing_ok=True)


def damage(db: Path, how: str) -> None:
    """Damage the WAL the killed process left; its index (-shm) goes too: it is rebuilt at open."""
    wal = Path(str(db) + "-wal")
    assert wal.stat().st_size > 32, "the commits are still in the WAL (no checkpoint happened)"
    Path(str(db) + "-shm").unlink(missing_ok=True)
    data = wal.read_bytes()
    if how == "truncated":
        wal.write_bytes(data[: 32 + (len(data) - 32) // 3])  # the header and the first third of the frames
    else:
        wal.write_bytes(os.urandom(32) + data[32:])  # a garbage header: SQLite drops the whole WAL


def break_journal_line(journal: Path, needle: bytes) -> None:
    """The journal line holding `needle` no longer matches its checksum."""
    lines = journal.read_bytes().split(b"\n")
    index = next(i for i, line in enumerate(lines) if needle in line)
    lines[index] = b"00000000 " + lines[index][9:]
    journal.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("how", ["truncated", "garbage-header"])
async def test_a_damaged_wal_is_detected_the_jobs_put_back_and_each_delivered_once(
    tmp_path: Path, peer: ScriptedPeer, how: str
) -> None:
    state_dir = tmp_path / "state"
    await peer.refuse()
    await enqueue_in_a_child_then_kill(state_dir, peer.url)
    db = state_dir / "outbox.sqlite3"
    damage(db, how)
    sqlite_sees = rows_sqlite_sees(db)
    assert sqlite_sees < N_JOBS  # what was lost without the journal

    await peer.start()
    handler = ItemHandler(peer.url, timeout=5.0)
    section = OutboxSection.model_validate({"retry_base": 0.01, "retry_cap": 0.2})
    outbox = Outbox(state_dir, section, {"item": handler})
    try:
        with structlog.testing.capture_logs() as logs:
            await outbox.start()
        lost = [e for e in logs if e["event"] == "outbox_commits_lost"]
        assert len(lost) == 1 and lost[0]["log_level"] == "error"
        status = await outbox.status()
        report = status["lost_commits"]
        assert report is not None and report["commits_lost"] >= 1
        assert abs(report["recovered_wall"] - time.time()) < 60
        assert report["jobs_restored"] == N_JOBS - sqlite_sees
        assert report["commits_unrecoverable"] == 0
        assert outbox.counters["commits_lost"] == report["commits_lost"]
        assert outbox.counters["jobs_restored"] == N_JOBS - sqlite_sees
        ids = [j.id for j in await outbox.jobs()]
        assert ids == list(range(1, N_JOBS + 1))
        await settle(outbox, ids)
        jobs = await outbox.jobs()
    finally:
        await outbox.close()
        await handler.close()
    assert all(j.state is JobState.DONE for j in jobs)
    assert sorted(peer.creates) == sorted(f"k{i}" for i in range(N_JOBS))
    assert set(peer.creates.values()) == {1}
    # Dependencies survived too: each job was sent with its group predecessor's server id.
    by_key = {j.payload["key"]: j for j in jobs}
    for i in range(4, N_JOBS):
        assert peer.records[f"k{i}"]["after"] == [peer.records[f"k{i - 4}"]["id"]]
        assert by_key[f"k{i}"].deps == (by_key[f"k{i - 4}"].id,)
    # A clean close folded everything into the database file and emptied the journal.
    assert os.stat(state_dir / "outbox.sqlite3.commits").st_size == 0


async def test_a_lost_commit_whose_journal_line_is_damaged_too_is_counted_unrecoverable(
    tmp_path: Path, peer: ScriptedPeer
) -> None:
    state_dir = tmp_path / "state"
    await peer.refuse()
    await enqueue_in_a_child_then_kill(state_dir, peer.url)
    db = state_dir / "outbox.sqlite3"
    damage(db, "garbage-header")
    break_journal_line(state_dir / "outbox.sqlite3.commits", b'"add":[[3,')
    outbox = Outbox(state_dir, OutboxSection())
    try:
        await outbox.start()
        report = (await outbox.status())["lost_commits"]
        assert report["commits_unrecoverable"] == 1 and report["journal_unreadable_lines"] == 1
        assert report["jobs_restored"] == N_JOBS - 1
        assert outbox.counters["commits_unrecoverable"] == 1
        assert [j.id for j in await outbox.jobs()] == [i for i in range(1, N_JOBS + 1) if i != 3]
    finally:
        await outbox.close()
