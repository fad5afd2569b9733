"""Metric sources for the existing components: each turns a component's own counters into `Sample`s
at scrape time (see `edge_agent.metrics`). The supervisor registers them:

    metrics.add_source(f"serial:{reader.port.name}", serial_source(reader))
    metrics.add_source("lens", lens_source(lens_service))
    metrics.add_async_source("outbox", outbox_source(outbox))
    metrics.add_source("evidence", evidence_source(rings))
    metrics.add_source("process", process_source(lag_monitor, watchdog))
    metrics.add_source("components", supervisor_source(supervisor))
    metrics.add_source("steps", steps_source(step_tracker))
    metrics.add_source("info", info_source(bench))
    metrics.add_async_source("state_dir", FilesystemSource(state_dir))

What no component counts is counted with `Metrics.inc`: `lens_inferences_total{label}` per inference,
`anomalies_opened_total{kind,severity}` per opened anomaly, `incident_events_total{event}` per incident
event, `step_outcomes_total{status}` per step
outcome; `anomalies_open` with `Metrics.set` (or a source reading the tracker).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import ProcessCollector

from edge_agent import __version__
from edge_agent.incidents import INCIDENT_EVENTS
from edge_agent.metrics import Metrics, Sample

if TYPE_CHECKING:
    from edge_agent.agent import Agent
    from edge_agent.consumers import IsolatedConsumer
    from edge_agent.evidence import EvidenceRings
    from edge_agent.lens.service import LensService
    from edge_agent.memory_budget import DataPathBudget
    from edge_agent.outbox import Outbox
    from edge_agent.recorder import Recorder
    from edge_agent.serial.clock import SourceClock
    from edge_agent.serial.reader import SerialReader
    from edge_agent.service.looplag import LoopLagMonitor
    from edge_agent.service.watchdog import Watchdog
    from edge_agent.state_health import StateFileHealth
    from edge_agent.steps.tracker import StepTracker
    from edge_agent.supervisor import Supervisor

# LensService.counters() key -> lens_windows_dropped_total{reason}
LENS_DROP_REASONS = {
    "pacer_dropped_queue_full": "queue_full",
    "pacer_superseded": "superseded",  # waited while a newer window was sent
    "windower_thinned": "not_built",  # complete, but the lens could not have taken it: never built
    "pacer_dropped_reconnect": "reconnect",
    "pacer_lost_in_flight": "lost_in_flight",
    "stream_updates_refused": "refused_by_lens",
}
# LensService.counters() key -> lens_errors_total{kind}; outputs_error_<kind> map to output_<kind>.
LENS_ERROR_KINDS = {
    "stream_drops": "connection_drop",
    "stream_update_errors": "update",
    "stream_bad_replies": "bad_reply",
    "stream_error_replies": "error_reply",
    "lifecycle_create_failures": "session_create",
}
# Outbox counters (durable, since the database was created) -> counter names.
OUTBOX_COUNTERS = {
    "enqueued": "outbox_enqueued_total",
    "delivered": "outbox_delivered_total",
    "adopted": "outbox_delivered_total",
    "failed": "outbox_failed_total",
    "retries": "outbox_retries_total",
    "commits_lost": "outbox_commits_lost_total",
    "jobs_restored": "outbox_jobs_restored_total",
    "commits_unrecoverable": "outbox_commits_unrecoverable_total",
}
# Why the whole outbox can be paused: each reason is always exposed (0 or 1), so an alert on it has a
# series to look at from the first scrape, not only after the first pause.
OUTBOX_BLOCK_REASONS = ("auth",)
# Why jobs are shed (store.py). Exposed at 0 before the first shed: `increase()` needs a sample before
# the jump, or the first shed of an agent's life would never reach an alert.
OUTBOX_SHED_REASONS = ("quota_jobs", "quota_disk", "dependency_shed")


def serial_samples(
    source: str, frames: int, bytes_read: int, skipped: dict[str, int], opens: int, dropped: int, up: bool
) -> list[Sample]:
    labels = {"source": source}
    samples = [
        Sample("serial_frames_total", labels, frames),
        Sample("serial_bytes_total", labels, bytes_read),
        # The first open is a connect, every later one a reconnect.
        Sample("serial_reconnects_total", labels, max(0, opens - 1)),
        Sample("serial_events_dropped_total", labels, dropped),
        Sample("serial_link_up", labels, 1.0 if up else 0.0),
    ]
    samples += [
        Sample("serial_decode_errors_total", {"source": source, "reason": reason}, count)
        for reason, count in skipped.items()
    ]
    return samples


def clock_samples(source: str, clock: SourceClock) -> list[Sample]:
    """Device-clock trouble of a port's timeline (nothing for a port without device_time)."""
    if clock.mode != "device":
        return []
    stats = clock.stats
    return [
        Sample("serial_clock_steps_total", {"source": source, "kind": "backwards"}, stats.backwards),
        Sample("serial_clock_steps_total", {"source": source, "kind": "jump"}, stats.jumps),
        Sample("serial_frames_without_device_time_total", {"source": source}, stats.missing),
    ]


def serial_source(reader: SerialReader) -> Callable[[], Iterable[Sample]]:
    def collect() -> Iterable[Sample]:
        link, decode = reader.stats, reader.decoder.stats
        return serial_samples(
            reader.port.name,
            decode.frames,
            link.bytes,
            decode.skipped,
            link.opens,
            link.dropped,
            reader.is_up,
        ) + clock_samples(reader.port.name, reader.clock)

    return collect


def lens_samples(counters: dict[str, float], streaming: bool) -> list[Sample]:
    samples = [
        Sample("lens_windows_sent_total", {}, counters.get("pacer_sent", 0)),
        Sample("lens_session_up", {}, 1.0 if streaming else 0.0),
    ]
    for key, reason in LENS_DROP_REASONS.items():
        samples.append(Sample("lens_windows_dropped_total", {"reason": reason}, counters.get(key, 0)))
    for key, kind in LENS_ERROR_KINDS.items():
        samples.append(Sample("lens_errors_total", {"kind": kind}, counters.get(key, 0)))
    for key, value in counters.items():
        if key.startswith("outputs_error_"):
            samples.append(Sample("lens_errors_total", {"kind": "output_" + key[14:]}, value))
    return samples


def lens_source(service: LensService) -> Callable[[], Iterable[Sample]]:
    return lambda: lens_samples(service.counters(), service.running.is_set())


def evidence_samples(status: dict[str, Any]) -> list[Sample]:
    """From `EvidenceRings.status()`; both reasons always exposed, so an alert has a series at 0."""
    samples = [Sample("evidence_ring_budget_bytes", {}, status["budget_bytes"])]
    for source, ring in status["sources"].items():
        samples.append(Sample("evidence_ring_bytes", {"source": source}, ring["bytes"]))
        samples.append(Sample("evidence_ring_span_seconds", {"source": source}, ring["span_s"]))
    for reason in ("time", "memory"):
        evicted = status["blocks_evicted"].get(reason, 0)
        samples.append(Sample("evidence_ring_evicted_blocks_total", {"reason": reason}, evicted))
        samples.append(
            Sample("evidence_slices_cut_total", {"reason": reason}, status["slices_cut"].get(reason, 0))
        )
    samples.append(Sample("evidence_frames_not_kept_total", {}, status["frames_not_kept"]))
    return samples


def evidence_source(rings: EvidenceRings) -> Callable[[], Iterable[Sample]]:
    return lambda: evidence_samples(rings.status())


def data_path_samples(status: dict[str, Any]) -> list[Sample]:
    """From `DataPathBudget.status()`."""
    samples = [Sample("data_path_memory_budget_bytes", {}, status["budget_bytes"])]
    for name, consumer in status["consumers"].items():
        samples.append(Sample("data_path_memory_bytes", {"consumer": name}, consumer["bytes"]))
    return samples


def data_path_source(budget: DataPathBudget, rings: EvidenceRings) -> Callable[[], Iterable[Sample]]:
    return lambda: data_path_samples(budget.status(rings.nbytes))


def outbox_samples(
    counters: dict[str, int],
    depth: dict[str, int],
    *,
    oldest_waiting: float = 0.0,
    blocked: str | None = None,
) -> list[Sample]:
    # `Outbox.counts()` names every state, zeros included, so each series exists from the start.
    samples = [Sample("outbox_jobs", {"state": state}, count) for state, count in depth.items()]
    samples.append(Sample("outbox_oldest_waiting_seconds", {}, oldest_waiting))
    for reason in sorted({*OUTBOX_BLOCK_REASONS, *([blocked] if blocked else [])}):
        samples.append(Sample("outbox_blocked", {"reason": reason}, 1.0 if reason == blocked else 0.0))
    shed = dict.fromkeys(OUTBOX_SHED_REASONS, 0)
    for key, value in counters.items():
        if key in OUTBOX_COUNTERS:
            samples.append(Sample(OUTBOX_COUNTERS[key], {}, value))
        elif key.startswith("shed."):
            shed[key[5:]] = value
    samples += [Sample("outbox_shed_total", {"reason": reason}, count) for reason, count in shed.items()]
    return samples


def outbox_source(outbox: Outbox) -> Callable[[], Awaitable[Iterable[Sample]]]:
    async def collect() -> Iterable[Sample]:
        depth, oldest = await outbox.backlog()
        samples = outbox_samples(outbox.counters, depth, oldest_waiting=oldest, blocked=outbox.blocked_reason)
        samples.append(Sample("outbox_groups_held", {}, len(await outbox.held_groups())))
        return samples

    return collect


def state_source(health: StateFileHealth) -> Callable[[], Iterable[Sample]]:
    def collect() -> Iterable[Sample]:
        return [
            Sample("disk_full", {}, 1.0 if health.disk_full else 0.0),
            Sample("state_write_failures_total", {}, health.write_failures_total),
            Sample("state_files_damaged_total", {}, health.damaged_total),
        ]

    return collect


def consumers_source(consumers: Iterable[IsolatedConsumer[Any]]) -> Callable[[], Iterable[Sample]]:
    def collect() -> Iterable[Sample]:
        samples: list[Sample] = []
        for consumer in consumers:
            labels = {"consumer": consumer.name}
            samples.append(Sample("anomaly_events_waiting", labels, consumer.waiting))
            samples.append(Sample("anomaly_events_dropped_total", labels, consumer.dropped))
        return samples

    return collect


def process_source(
    monitor: LoopLagMonitor, watchdog: Watchdog | None = None
) -> Callable[[], Iterable[Sample]]:
    def collect() -> Iterable[Sample]:
        samples = [Sample("event_loop_lag_seconds", {}, monitor.lag)]
        if watchdog is not None:
            samples.append(Sample("watchdog_withheld_total", {}, watchdog.gate.withheld))
        return samples

    return collect


def supervisor_source(supervisor: Supervisor) -> Callable[[], Iterable[Sample]]:
    def collect() -> Iterable[Sample]:
        samples = []
        for name, state in list(supervisor.components.items()):
            labels = {"component": name}
            samples.append(Sample("component_restarts_total", labels, state.restarts))
            samples.append(Sample("component_failed", labels, 1.0 if state.state == "failed" else 0.0))
        return samples

    return collect


def steps_source(tracker: StepTracker) -> Callable[[], Iterable[Sample]]:
    return lambda: [Sample("step_running", {}, 0.0 if tracker.running_step is None else 1.0)]


def recorder_source(recorder: Recorder) -> Callable[[], Iterable[Sample]]:
    def samples() -> list[Sample]:
        status = recorder.status()
        dropped = status["frames_dropped"]
        counters = status["counters"]
        out = [
            Sample("recording_frames_total", {}, status["frames_recorded"]),
            Sample("recording_disk_bytes", {}, status["disk_bytes"]),
            Sample("recording_disk_budget_bytes", {}, status["budget_bytes"]),
            Sample("recording_pending_bytes", {}, status["pending"]["bytes"]),
            Sample("recording_pending_budget_bytes", {}, status["pending"]["budget_bytes"]),
            Sample("recording_segments", {"state": "open"}, status["open_segments"]),
            Sample("recording_segments", {"state": "finished"}, status["finished_segments"]),
            Sample("recording_segments", {"state": "uploaded"}, status["uploaded_segments"]),
        ]
        out += [Sample("recording_frames_dropped_total", {"reason": r}, dropped[r]) for r in sorted(dropped)]
        for reason in ("uploaded", "not_uploaded", "local_only"):
            out.append(
                Sample(
                    "recording_segments_deleted_total",
                    {"reason": reason},
                    counters.get(f"deleted_{reason}", 0),
                )
            )
        return out

    return samples


def info_source(bench: str) -> Callable[[], Iterable[Sample]]:
    """The bench name the agent was configured with: an alert compares it with the `bench` label the
    scrape config gives the target, so a target pointed at the wrong PC is noticed."""
    sample = Sample("info", {"agent_bench": bench, "version": __version__}, 1.0)
    return lambda: [sample]


class FilesystemSource:
    """Free and total bytes of the filesystem holding `path` (the state directory: outbox, evidence,
    recordings). `statvfs` runs on a worker thread, never on the event loop: on a network or failing
    disk it can hang, and a hung one is not started again until it returns, so a wedged filesystem
    holds one thread, not one per scrape (the scrape itself is bounded by `Metrics.refresh_timeout`
    and serves the last answer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: asyncio.Future[os.statvfs_result] | None = None

    async def __call__(self) -> Iterable[Sample]:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(asyncio.to_thread(os.statvfs, self.path))
        # shield: a scrape that times out must not cancel the shared answer another scrape awaits.
        stat = await asyncio.shield(self._pending)
        labels = {"path": str(self.path)}
        return [
            # f_bavail: what an unprivileged process (the agent's user) may still use.
            Sample("state_dir_filesystem_avail_bytes", labels, stat.f_bavail * stat.f_frsize),
            Sample("state_dir_filesystem_size_bytes", labels, stat.f_blocks * stat.f_frsize),
        ]


def add_agent_sources(metrics: Metrics, agent: Agent) -> None:
    """Every source of the agent's components, in the order /metrics shows them."""
    for name, reader in agent.readers.items():
        metrics.add_source(f"serial:{name}", serial_source(reader))
    if agent.lens is not None:
        metrics.add_source("lens", lens_source(agent.lens))
    metrics.add_async_source("outbox", outbox_source(agent.outbox))
    metrics.add_source("evidence", evidence_source(agent.rings))
    metrics.add_source("data_path_memory", data_path_source(agent.memory, agent.rings))
    metrics.add_source("process", process_source(agent.loop_lag, agent.watchdog))
    metrics.add_source("components", supervisor_source(agent.supervisor))
    metrics.add_source("steps", steps_source(agent.steps))
    if agent.recorder is not None:
        metrics.add_source("recorder", recorder_source(agent.recorder))
    metrics.add_source("info", info_source(agent.config.agent.bench))
    metrics.add_async_source("state_dir", FilesystemSource(agent.state_dir))
    # The client library's process_* metrics (RSS, CPU seconds, start time, open fds): a few small
    # reads of /proc at scrape time, no disk I/O.
    ProcessCollector(registry=metrics.registry)
    metrics.add_source("state", state_source(agent.state_health))
    metrics.add_source("consumers", consumers_source(agent.feeds()))
    for event in INCIDENT_EVENTS:  # at 0 from the first scrape: increase() needs a sample before a jump
        metrics.inc("incident_events_total", 0.0, event=event)
