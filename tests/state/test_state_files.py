"""The one atomic-write / state-file helper (issue 12, items 5 and 8): modes whatever the umask,
whole-or-nothing writes (also when the disk fills halfway), damaged files set aside and counted, and
the async twins off the event loop."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from state_helpers import fill_up, free_up, small_tmpfs

from edge_agent import state_files
from edge_agent.state_files import (
    dump_json,
    ensure_private_dir,
    read_json_state,
    read_json_state_async,
    remove_stale_temps,
    write_atomic,
    write_atomic_async,
    write_atomic_stream,
    write_json,
    write_json_async,
)
from edge_agent.state_health import StateFileHealth


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o777])
def test_files_are_0600_and_created_folders_0700_whatever_the_umask(
    tmp_path: Path, umask: None, mask: int
) -> None:
    os.umask(mask)
    target = tmp_path / "state" / "steps" / "deep" / "state.json"
    write_atomic(target, b'{"a": 1}', health=StateFileHealth())
    os.umask(0o022)
    assert target.read_bytes() == b'{"a": 1}'
    assert mode(target) == 0o600
    for folder in (tmp_path / "state", tmp_path / "state" / "steps", tmp_path / "state" / "steps" / "deep"):
        assert mode(folder) == 0o700, folder


def test_replacing_a_world_readable_file_leaves_it_0600(tmp_path: Path, umask: None) -> None:
    target = tmp_path / "lens_sessions.json"
    target.write_text("{}")
    target.chmod(0o644)
    os.umask(0o000)
    write_json(target, {"sessions": []}, health=StateFileHealth())
    assert mode(target) == 0o600
    assert json.loads(target.read_text()) == {"sessions": []}


def test_ensure_private_dir_creates_and_tightens(tmp_path: Path, umask: None) -> None:
    os.umask(0o000)
    fresh = tmp_path / "a" / "b"
    ensure_private_dir(fresh)
    assert mode(fresh) == 0o700 and mode(tmp_path / "a") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    ensure_private_dir(loose)
    assert mode(loose) == 0o700


def test_a_write_failing_halfway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json(target, {"version": 1}, health=StateFileHealth())

    def half_then_fail(out: object) -> None:
        assert hasattr(out, "write")
        out.write(b'{"version": 2, "half')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic_stream(target, half_then_fail, health=StateFileHealth())
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_real_full_disk_raises_keeps_the_old_file_and_is_reported_until_the_write_succeeds(
    tmp_path: Path,
) -> None:
    health = StateFileHealth()
    with small_tmpfs(tmp_path / "fs", "1m") as fs:
        target = fs / "state.json"
        write_json(target, {"version": 1}, health=health)
        fill_up(fs)
        big = {"version": 2, "blob": "x" * 200_000}
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(OSError) as raised:
                    write_json(target, big, health=health)
                assert raised.value.errno == 28  # ENOSPC
        assert json.loads(target.read_text()) == {"version": 1}
        assert sorted(p.name for p in fs.iterdir()) == ["filler.bin", "state.json"]  # no temp left
        assert health.disk_full and health.write_failures_total == 3
        assert [e["event"] for e in logs].count("disk_full") == 1  # reported once, not per failure
        assert health.status()["writes_waiting_for_space"] == [str(target)]
        free_up(fs)
        with structlog.testing.capture_logs() as logs:
            write_json(target, big, health=health)
        assert not health.disk_full and health.disk_full_episodes == 1
        assert [e["event"] for e in logs] == ["disk_space_returned"]
        assert json.loads(target.read_text())["version"] == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"this is not json {", "not JSON"),
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b'{"a": NaN}', "non-finite number NaN"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_a_damaged_file_is_set_aside_logged_once_counted_and_read_as_absent(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    health = StateFileHealth()
    target = tmp_path / "lens_sessions.json"
    target.write_bytes(content)
    with structlog.testing.capture_logs() as logs:
        assert read_json_state(target, what="lens sessions", health=health) is None
    assert not target.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("lens_sessions.json.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content  # kept for a human, byte for byte
    damaged = [e for e in logs if e["event"] == "state_file_damaged"]
    assert len(damaged) == 1
    assert damaged[0]["path"] == str(target) and reason in damaged[0]["reason"]
    assert damaged[0]["set_aside_as"] == str(aside[0])
    assert health.damaged_total == 1
    assert health.status()["damaged"][0]["aside"] == str(aside[0])
    assert abs(health.status()["damaged"][0]["set_aside_wall"] - time.time()) < 60
    # The next read finds nothing (absent is not damage) and the agent writes a fresh file.
    assert read_json_state(target, what="lens sessions", health=health) is None
    assert health.damaged_total == 1
    write_json(target, {"sessions": []}, health=health)
    assert read_json_state(target, what="lens sessions", health=health) == {"sessions": []}


def test_two_damaged_copies_in_the_same_instant_do_not_overwrite_each_other(tmp_path: Path) -> None:
    health = StateFileHealth()
    target = tmp_path / "state.json"
    for n in range(3):
        target.write_bytes(b"garbage %d" % n)
        state_files.set_aside(target, "test", what="steps", health=health)
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert kept == [b"garbage 0", b"garbage 1", b"garbage 2"]


def test_dump_json_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"\$\.spans\.a\[1\]"):
        dump_json({"spans": {"a": [1.0, float("inf")]}, "b": 2})
    with pytest.raises(TypeError, match=r"\$\.when"):
        dump_json({"when": object()})
    assert dump_json({"b": 1, "a": [1.5, None]}) == b'{"a": [1.5, null], "b": 1}'


def test_remove_stale_temps_takes_only_temps(tmp_path: Path) -> None:
    (tmp_path / ".state.json.abc123.tmp").write_text("half")
    (tmp_path / "state.json").write_text("{}")
    assert remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


async def test_the_async_twins_run_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fsync and read of the async versions happens off the loop's thread; while one is held up
    (a slow disk), the loop keeps running other tasks."""
    loop_thread = threading.get_ident()
    seen: list[int] = []
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        seen.append(threading.get_ident())
        assert release.wait(5.0), "the loop never ran while the fsync was held up"
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)

    async def loop_keeps_running() -> None:
        await asyncio.sleep(0.01)
        release.set()

    health = StateFileHealth()
    await asyncio.wait_for(
        asyncio.gather(write_atomic_async(tmp_path / "a.json", b"{}", health=health), loop_keeps_running()),
        10,
    )
    release.clear()
    await asyncio.wait_for(
        asyncio.gather(write_json_async(tmp_path / "b.json", {"x": 1}, health=health), loop_keeps_running()),
        10,
    )
    assert seen and loop_thread not in seen
    read_threads: list[int] = []
    real_read = Path.read_bytes

    def spy_read(self: Path) -> bytes:
        read_threads.append(threading.get_ident())
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", spy_read)
    assert await read_json_state_async(tmp_path / "b.json", what="test", health=health) == {"x": 1}
    assert read_threads and loop_thread not in read_threads


def test_the_outbox_database_its_wal_shm_and_journal_are_0600_whatever_the_umask(
    tmp_path: Path, umask: None
) -> None:
    from edge_agent.outbox import JobSpec
    from edge_agent.outbox.store import JobStore

    os.umask(0o000)
    store = JobStore(tmp_path / "state" / "outbox.sqlite3", max_jobs=10, max_disk_bytes=10**6)
    store.open()
    try:
        store.add([JobSpec("item", "g", {"key": "a"})])
        names = ["outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm", "outbox.sqlite3.commits"]
        assert {n: oct(mode(tmp_path / "state" / n)) for n in names} == {n: oct(0o600) for n in names}
        assert mode(tmp_path / "state") == 0o700
    finally:
        store.close()
