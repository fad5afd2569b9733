"""The metrics a lab's alert rules need beyond the data path: the state directory's filesystem (read
off the event loop, bounded when the disk hangs), supervised components' restarts and failures, the
agent's own bench name, and the process_* collector."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import pytest
from prometheus_client import ProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from edge_agent import __version__
from edge_agent.metrics import Metrics
from edge_agent.service.metric_sources import FilesystemSource, info_source, supervisor_source
from edge_agent.supervisor import Supervisor

MiB = 1024 * 1024


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


async def test_state_dir_filesystem_gauges_match_statvfs(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.add_async_source("state_dir", FilesystemSource(tmp_path))
    await metrics.refresh()
    values = samples(metrics)
    labels = (("path", str(tmp_path)),)
    usage = shutil.disk_usage(tmp_path)  # the same filesystem, asked another way
    assert values[("edge_agent_state_dir_filesystem_size_bytes", labels)] == usage.total
    avail = values[("edge_agent_state_dir_filesystem_avail_bytes", labels)]
    # Other processes write to this disk between the two questions: close, not equal.
    assert abs(avail - usage.free) < 256 * MiB, (avail, usage.free)
    assert 0 < avail <= usage.total


async def test_state_dir_gauge_follows_what_is_written(tmp_path: Path) -> None:
    """The gauge is read at each scrape, not once: writing 64 MiB shows (on a disk where nothing
    else writes as much in between; the margin is half the file)."""
    metrics = Metrics()
    metrics.add_async_source("state_dir", FilesystemSource(tmp_path))
    key = ("edge_agent_state_dir_filesystem_avail_bytes", (("path", str(tmp_path)),))
    await metrics.refresh()
    before = samples(metrics)[key]
    if before < 512 * MiB:
        pytest.fail(f"test disk too full to measure a 64 MiB write ({before / MiB:.0f} MiB free)")
    blob = tmp_path / "blob"
    with blob.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(MiB))
        f.flush()
        os.fsync(f.fileno())
    await metrics.refresh()
    after = samples(metrics)[key]
    assert before - after > 32 * MiB, (before, after)


async def test_missing_state_dir_is_a_source_error_not_a_full_disk(tmp_path: Path) -> None:
    """A path that cannot be measured must not read as 0 bytes free (that would page as a full disk):
    the series is absent and the failure is counted."""
    metrics = Metrics()
    metrics.add_async_source("state_dir", FilesystemSource(tmp_path / "missing"))
    await metrics.refresh()
    values = samples(metrics)
    assert not [k for k in values if k[0].startswith("edge_agent_state_dir_filesystem")]
    assert values[("edge_agent_metrics_source_errors_total", (("source", "state_dir"),))] == 1


async def test_a_hung_filesystem_holds_one_thread_and_never_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """statvfs runs off the event loop; when it hangs (a dead NFS server), scrapes still answer within
    the refresh timeout, and no second call piles up behind the first."""
    release = threading.Event()
    calls: list[str] = []
    real_statvfs = os.statvfs

    def slow_statvfs(path: str | os.PathLike[str]) -> os.statvfs_result:
        calls.append(threading.current_thread().name)
        release.wait(10)
        return real_statvfs(path)

    monkeypatch.setattr(os, "statvfs", slow_statvfs)
    metrics = Metrics(refresh_timeout=0.2)
    metrics.add_async_source("state_dir", FilesystemSource(tmp_path))
    loop_thread = threading.current_thread().name
    try:
        for _ in range(3):
            await asyncio.wait_for(metrics.refresh(), 2.0)  # bounded by refresh_timeout, not by statvfs
        assert len(calls) == 1 and calls[0] != loop_thread, calls
        assert metrics.value("metrics_source_errors_total", source="state_dir") == 3
    finally:
        release.set()
    for _ in range(100):  # bounded: the released call finishes, the next scrape starts a fresh one
        await metrics.refresh()
        if metrics.value("state_dir_filesystem_size_bytes", path=str(tmp_path)):
            break
        await asyncio.sleep(0.02)
    assert (
        metrics.value("state_dir_filesystem_size_bytes", path=str(tmp_path))
        == shutil.disk_usage(tmp_path).total
    )


class Boom(Exception):
    pass


class Refused(Exception):
    pass


async def test_component_restarts_and_failures_are_exposed() -> None:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.02)
    metrics = Metrics()
    metrics.add_source("components", supervisor_source(supervisor))
    flaky_runs = 0
    flaky_stable = asyncio.Event()

    async def flaky() -> None:
        nonlocal flaky_runs
        flaky_runs += 1
        if flaky_runs <= 3:
            raise Boom("port vanished")
        flaky_stable.set()
        await asyncio.Event().wait()

    async def refused() -> None:
        raise Refused("401 from the lens API")

    supervisor.spawn("serial:bench", flaky)
    supervisor.spawn("lens", refused, fatal=(Refused,))
    try:
        await asyncio.wait_for(flaky_stable.wait(), 5)
        for _ in range(100):  # bounded: the fatal one settles at once
            if supervisor.components["lens"].state == "failed":
                break
            await asyncio.sleep(0.01)
        values = samples(metrics)
        assert values[("edge_agent_component_restarts_total", (("component", "serial:bench"),))] == 3
        assert values[("edge_agent_component_failed", (("component", "serial:bench"),))] == 0
        assert values[("edge_agent_component_restarts_total", (("component", "lens"),))] == 0
        assert values[("edge_agent_component_failed", (("component", "lens"),))] == 1
    finally:
        await supervisor.stop()


def test_info_carries_the_configured_bench_and_version() -> None:
    metrics = Metrics()
    metrics.add_source("info", info_source("bench-03"))
    values = samples(metrics)
    assert values[("edge_agent_info", (("agent_bench", "bench-03"), ("version", __version__)))] == 1


def test_process_collector_shares_the_agents_registry() -> None:
    metrics = Metrics()
    ProcessCollector(registry=metrics.registry)
    values = samples(metrics)
    assert values[("process_resident_memory_bytes", ())] > 10 * MiB
    assert values[("process_start_time_seconds", ())] > 1.6e9
    assert ("process_cpu_seconds_total", ()) in values
    assert samples(Metrics()).get(("process_resident_memory_bytes", ())) is None  # only where registered
