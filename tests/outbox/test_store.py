"""The job store on its own: quota shedding (counted, logged, files deleted) and damaged database files."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.outbox import BatchRef, JobSpec, JobState
from edge_agent.outbox.store import JobStore


def open_store(path: Path, *, max_jobs: int = 1000, max_disk_bytes: int = 10**9) -> JobStore:
    store = JobStore(path, max_jobs=max_jobs, max_disk_bytes=max_disk_bytes)
    store.open()
    return store


def item(key: str, priority: int = 0, **payload: object) -> JobSpec:
    return JobSpec("item", key, {"key": key, **payload}, priority=priority)


def test_job_quota_purges_delivered_then_sheds_oldest_of_lowest_priority(tmp_path: Path) -> None:
    store = open_store(tmp_path / "o.db", max_jobs=4)
    done, low_old, high, low_new = store.add(
        [item("done"), item("low-old"), item("high", 5), item("low-new")]
    )
    store.mark_done(done, {"id": "x"})
    dependant = store.add([JobSpec("item", "g", {"key": "dep"}, deps=(low_old,))])[0]  # 5 rows: purge `done`
    assert store.get(done) is None and store.counters["purged"] == 1

    newest = store.add([item("newest")])[0]  # 5 live rows: shed low-old (and its dependant with it)
    # Both become tombstones; one more row is over the quota, so the oldest tombstone goes.
    assert store.get(low_old) is None
    assert store.get(dependant).state is JobState.SHED  # type: ignore[union-attr]
    assert store.counters["shed.quota_jobs"] == 1 and store.counters["shed.dependency_shed"] == 1
    live = {j.id for j in store.jobs() if j.state is JobState.PENDING}
    assert live == {high, low_new, newest}
    assert store.rows <= 4
    store.close()


def test_disk_quota_counts_evidence_files_and_deletes_them_when_shed_or_done(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    files = []
    for i in range(3):
        path = evidence / f"anomaly-{i}.csv"
        path.write_bytes(b"x" * 4000)
        files.append(str(path))
    store = open_store(tmp_path / "o.db", max_disk_bytes=10_000)
    first, second = store.add([item("a", files=[files[0]]), item("b", files=[files[1]])])
    assert store.bytes > 8000
    store.mark_done(second, {"id": "b"})
    assert not Path(files[1]).exists()  # delivered: evidence no longer needed

    third = store.add([item("c", files=[files[2]])])[0]  # ~8.4 kB: within the quota
    assert store.get(second) is not None and store.get(first).state is JobState.PENDING  # type: ignore[union-attr]
    big = evidence / "big.csv"
    big.write_bytes(b"y" * 5000)
    store.add([item("d", files=[str(big)])])  # ~13.4 kB: purge delivered `b`, then shed oldest waiting `a`
    assert store.get(second) is None
    assert store.get(first).state is JobState.SHED  # type: ignore[union-attr]
    assert not Path(files[0]).exists() and Path(files[2]).exists()
    assert store.counters["shed.quota_disk"] == 1 and store.bytes <= 10_000
    assert store.get(third).state is JobState.PENDING  # type: ignore[union-attr]
    store.close()


def test_files_outside_the_state_dir_are_never_deleted(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    store = open_store(tmp_path / "state" / "o.db")
    job_id = store.add([item("a", files=[str(outside)])])[0]
    store.mark_done(job_id, {})
    assert outside.read_text() == "keep me"
    store.close()


def test_counters_and_unknown_outcome_survive_reopen(tmp_path: Path) -> None:
    store = open_store(tmp_path / "o.db")
    ids = store.add([item("a"), JobSpec("item", "a", {"key": "b"}, deps=(BatchRef(0),))])
    (claimed, _), *_ = store.claim(4, time.time())
    assert claimed.id == ids[0] and not claimed.attempt_started
    store.close()  # as if the process died mid-send

    store = open_store(tmp_path / "o.db")
    job = store.get(ids[0])
    assert job is not None and job.state is JobState.PENDING and job.attempt_started and job.attempts == 1
    (again, _), *_ = store.claim(4, time.time())
    assert again.id == ids[0] and again.attempt_started  # the worker will look before re-sending
    assert store.counters["enqueued"] == 2
    store.close()


def test_bad_specs_are_refused_without_writing(tmp_path: Path) -> None:
    store = open_store(tmp_path / "o.db")
    with pytest.raises(ValueError, match="not a known job"):
        store.add([item("a"), JobSpec("item", "g", {}, deps=(999,))])
    with pytest.raises(ValueError, match="files"):
        store.add([item("a", files="not-a-list")])
    with pytest.raises(ValueError, match="BatchRef"):
        store.add([JobSpec("item", "g", {}, deps=(BatchRef(0),))])
    assert store.rows == 0 and store.jobs() == []
    store.close()


# --- damaged database files ----------------------------------------------------------------------


def fill(path: Path, n: int) -> list[int]:
    store = open_store(path)
    ids = [store.add([item(f"k{i}", blob="z" * 300)])[0] for i in range(n)]
    store.mark_done(ids[0], {"id": "first"})
    # Fold the WAL into the main file so the damage below hits the only copy of the rows.
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return ids


def quarantined(state_dir: Path) -> list[Path]:
    folder = state_dir / "quarantine"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_garbage_database_is_quarantined_and_a_fresh_one_starts(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    fill(path, 5)
    path.write_bytes(os.urandom(8192))

    store = open_store(path)
    assert store.recovery is not None and store.recovery.salvaged == 0
    assert [p.name.startswith("o.db.") for p in quarantined(tmp_path)] == [True]
    assert store.counters["corrupt_recovered"] == 1
    new_id = store.add([item("after")])[0]
    assert store.get(new_id) is not None
    store.close()
    assert open_store(path).recovery is None  # the fresh file is sound


def test_truncated_database_keeps_what_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ids = fill(path, 200)  # ~300 bytes a row: many pages
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2 + 1000)  # mid-page, half the rows gone

    store = open_store(path)
    report = store.recovery
    assert report is not None and 50 < report.salvaged < 200, report
    kept = store.jobs(limit=1000)
    assert all(j.id in ids and j.payload["key"] == f"k{j.id - 1}" for j in kept)
    assert store.get(ids[0]).state is JobState.DONE  # type: ignore[union-attr]
    # Order continues after the salvaged rows: a new job never takes an old id.
    assert store.add([item("new")])[0] > max(j.id for j in kept)
    assert len(quarantined(tmp_path)) >= 1
    store.close()


def test_a_foreign_sqlite_file_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, something TEXT)")
    con.commit()
    con.close()
    store = open_store(path)
    assert store.recovery is not None and "unknown layout" in store.recovery.problem
    assert store.add([item("a")]) == [1]
    store.close()
