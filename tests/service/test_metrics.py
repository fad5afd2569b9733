"""Metrics: the schema holds, sources are read at scrape time, a broken source is isolated, and the
sources for the real components (a serial reader on a real pty, an outbox on disk) move as data flows.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config import OutboxSection, SerialPort
from edge_agent.frames import SerialEvent
from edge_agent.metrics import SCHEMA, Metrics, Sample
from edge_agent.outbox import Outbox
from edge_agent.serial.reader import SerialReader
from edge_agent.service.looplag import LoopLagMonitor
from edge_agent.service.metric_sources import (
    lens_samples,
    outbox_samples,
    outbox_source,
    process_source,
    serial_source,
)


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_schema_family_is_exposed_with_the_namespace() -> None:
    families = {f.name: f for f in text_string_to_metric_families(Metrics().render().decode())}
    for name, spec in SCHEMA.items():
        exposed = "edge_agent_" + name.removesuffix("_total")
        assert exposed in families, exposed
        assert families[exposed].type == spec.kind
    # Unlabelled series exist from the start (a dashboard shows 0, not "no data").
    assert scrape(Metrics())[("edge_agent_anomalies_open", ())] == 0


def test_two_instances_share_nothing() -> None:
    a, b = Metrics(), Metrics()
    a.inc("outbox_retries_total", 5)
    assert a.value("outbox_retries_total") == 5
    assert b.value("outbox_retries_total") is None


def test_inc_and_set_check_names_labels_and_kinds() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.inc("frames_total")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.inc("step_outcomes_total")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.inc("step_outcomes_total", status="passed", extra="x")
    with pytest.raises(ValueError, match="gauge"):
        metrics.inc("anomalies_open")
    with pytest.raises(ValueError, match="counter"):
        metrics.set("outbox_retries_total", 3)
    with pytest.raises(ValueError, match="only goes up"):
        metrics.inc("outbox_retries_total", -1)
    metrics.inc("step_outcomes_total", status="passed")
    metrics.inc("step_outcomes_total", status="passed")
    metrics.set("anomalies_open", 4)
    metrics.set("anomalies_open", 2)
    values = scrape(metrics)
    assert values[("edge_agent_step_outcomes_total", (("status", "passed"),))] == 2
    assert values[("edge_agent_anomalies_open", ())] == 2


def test_same_series_from_several_sources_is_summed() -> None:
    metrics = Metrics()
    metrics.add_source("a", lambda: [Sample("outbox_jobs", {"state": "pending"}, 2)])
    metrics.add_source("b", lambda: [Sample("outbox_jobs", {"state": "pending"}, 3)])
    assert metrics.value("outbox_jobs", state="pending") == 5


def test_a_broken_source_is_counted_and_the_rest_still_served() -> None:
    metrics = Metrics()

    def explodes() -> Iterable[Sample]:
        raise RuntimeError("component gone")

    metrics.add_source("explodes", explodes)
    metrics.add_source("typo", lambda: [Sample("lens_windows_sent", {}, 1)])
    metrics.add_source("good", lambda: [Sample("lens_windows_sent_total", {}, 9)])
    values = scrape(metrics)
    assert values[("edge_agent_lens_windows_sent_total", ())] == 9
    assert values[("edge_agent_metrics_source_errors_total", (("source", "explodes"),))] == 1
    assert values[("edge_agent_metrics_source_errors_total", (("source", "typo"),))] == 1


async def test_async_source_refresh_and_timeout_keeps_the_last_answer() -> None:
    metrics = Metrics(refresh_timeout=0.2)
    answer = {"depth": 3, "hang": False}

    async def depth() -> Iterable[Sample]:
        if answer["hang"]:
            await asyncio.sleep(5)
        return [Sample("outbox_jobs", {"state": "pending"}, answer["depth"])]

    metrics.add_async_source("outbox", depth)
    assert metrics.value("outbox_jobs", state="pending") is None  # not refreshed yet
    await metrics.refresh()
    assert metrics.value("outbox_jobs", state="pending") == 3
    answer.update(depth=7, hang=True)
    await metrics.refresh()  # bounded by refresh_timeout, not by the source
    assert metrics.value("outbox_jobs", state="pending") == 3
    assert metrics.value("metrics_source_errors_total", source="outbox") == 1


def test_lens_and_outbox_mappings() -> None:
    counters = {
        "pacer_sent": 40.0,
        "pacer_dropped_queue_full": 2.0,
        "stream_updates_refused": 1.0,
        "stream_drops": 3.0,
        "outputs_error_timeout": 4.0,
        "windower_frames": 999.0,  # not exposed: the serial side counts frames
    }
    metrics = Metrics()
    metrics.add_source("lens", lambda: lens_samples(counters, streaming=True))
    metrics.add_source(
        "outbox",
        lambda: outbox_samples(
            {"enqueued": 10, "delivered": 6, "adopted": 1, "retries": 4, "shed.quota_jobs": 2, "failed": 1},
            {"pending": 2, "in_flight": 0, "done": 7, "failed": 1, "shed": 2},
        ),
    )
    values = scrape(metrics)
    assert values[("edge_agent_lens_windows_sent_total", ())] == 40
    assert values[("edge_agent_lens_windows_dropped_total", (("reason", "queue_full"),))] == 2
    assert values[("edge_agent_lens_windows_dropped_total", (("reason", "refused_by_lens"),))] == 1
    assert values[("edge_agent_lens_errors_total", (("kind", "connection_drop"),))] == 3
    assert values[("edge_agent_lens_errors_total", (("kind", "output_timeout"),))] == 4
    assert values[("edge_agent_lens_session_up", ())] == 1
    assert values[("edge_agent_outbox_delivered_total", ())] == 7  # adopted jobs were delivered too
    assert values[("edge_agent_outbox_retries_total", ())] == 4
    assert values[("edge_agent_outbox_shed_total", (("reason", "quota_jobs"),))] == 2
    assert values[("edge_agent_outbox_jobs", (("state", "done"),))] == 7


async def test_serial_source_counts_move_as_frames_flow_on_a_real_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    port = SerialPort(name="bench", url=os.ttyname(slave), columns=["t_ms", "v"], device_time="t_ms")
    events: list[SerialEvent] = []
    reader = SerialReader(port, events.append)
    metrics = Metrics()
    metrics.add_source("serial:bench", serial_source(reader))
    task = asyncio.create_task(reader.run())
    try:

        async def frames_reach(n: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            for _ in range(250):  # bounded: 5 s
                values = scrape(metrics)
                if values.get(("edge_agent_serial_frames_total", (("source", "bench"),)), 0) >= n:
                    return values
                await asyncio.sleep(0.02)
            raise AssertionError(f"frames never reached {n}: {values}")

        for _ in range(250):
            if reader.is_up:
                break
            await asyncio.sleep(0.02)
        os.write(master, b"1,12.0\n2,12.1\n3,oops\n")
        values = await frames_reach(2)
        assert values[("edge_agent_serial_link_up", (("source", "bench"),))] == 1
        key = ("edge_agent_serial_decode_errors_total", (("reason", "not_numeric"), ("source", "bench")))
        assert values[key] == 1
        os.write(master, b"".join(b"%d,12.0\n" % i for i in range(4, 104)))
        values = await frames_reach(102)
        assert values[("edge_agent_serial_frames_total", (("source", "bench"),))] == 102
        assert values[("edge_agent_serial_bytes_total", (("source", "bench"),))] > 300
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(master)
        os.close(slave)


async def test_outbox_source_shows_depth_on_disk(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, OutboxSection())  # no handlers: jobs wait as pending
    await outbox.start()
    try:
        metrics = Metrics()
        metrics.add_async_source("outbox", outbox_source(outbox))
        for i in range(3):
            await outbox.enqueue("atlas.issue", f"anomaly-{i}", {"n": i})
        await metrics.refresh()
        values = scrape(metrics)
        assert values[("edge_agent_outbox_jobs", (("state", "pending"),))] == 3
        assert values[("edge_agent_outbox_enqueued_total", ())] == 3
    finally:
        await outbox.close()


async def test_process_source_shows_loop_lag() -> None:
    monitor = LoopLagMonitor(period=0.01)
    metrics = Metrics()
    metrics.add_source("process", process_source(monitor))
    task = asyncio.create_task(monitor.run())
    try:
        for _ in range(100):
            if monitor.tracker.ticks >= 3:
                break
            await asyncio.sleep(0.01)
        assert monitor.tracker.ticks >= 3
        time.sleep(0.1)  # noqa: ASYNC251 - a wedged loop is what the gauge must show
        lag = metrics.value("event_loop_lag_seconds")
        assert lag is not None and lag >= 0.08
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
