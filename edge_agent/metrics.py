"""Prometheus metrics of the agent, collected at scrape time.

The hot path never touches a metric. Components keep their own plain counters (the serial reader's
`ReaderStats`/`DecodeStats`, the lens service's `counters()`, the outbox's `counters`/`counts()`),
and `Metrics` reads them only when `/metrics` is scraped, through *sources*: callables that return
`Sample`s for the names in `SCHEMA`. `edge_agent.service.metric_sources` has the sources for the
existing components. Events that no component counts (an anomaly opened, a step outcome, an
inference label) are counted here with `inc()`; they are rare, a dict update each.

Every metric name and its labels are fixed in `SCHEMA`, so a dashboard can rely on them; a sample
for an unknown name or with the wrong labels is a programming error (`inc`/`set` raise; a source
that yields one is reported in `edge_agent_metrics_source_errors_total` and skipped).
Samples with the same name and labels from several sources are summed. Besides SCHEMA, the agent
registers the client library's standard `process_*` collector (RSS, CPU seconds, start time, open
file descriptors) on the same registry.

Each `Metrics` owns its own `CollectorRegistry`: no process-global state, so tests (and two agents
in one process) never see each other's numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from edge_agent.logs import get_logger

log = get_logger(__name__)

NAMESPACE = "edge_agent"
DEFAULT_REFRESH_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class MetricSpec:
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...] = ()


# Names without the namespace; counters end in _total as exposed.
SCHEMA: dict[str, MetricSpec] = {
    # serial
    "serial_frames_total": MetricSpec("counter", "Frames decoded.", ("source",)),
    "serial_bytes_total": MetricSpec("counter", "Bytes read from the port.", ("source",)),
    "serial_decode_errors_total": MetricSpec(
        "counter", "Lines skipped by the decoder, by reason.", ("source", "reason")
    ),
    "serial_reconnects_total": MetricSpec("counter", "Re-opens of the port after a loss.", ("source",)),
    "serial_link_up": MetricSpec("gauge", "1 while the port is open.", ("source",)),
    "serial_events_dropped_total": MetricSpec(
        "counter", "Frames/markers a full pipeline queue refused.", ("source",)
    ),
    "serial_clock_steps_total": MetricSpec(
        "counter",
        "Device clock steps (backwards, jump) re-anchored on receive time, by kind.",
        ("source", "kind"),
    ),
    "serial_frames_without_device_time_total": MetricSpec(
        "counter", "Frames of a device_time port that carried no usable device time.", ("source",)
    ),
    # lens
    "lens_windows_sent_total": MetricSpec("counter", "Windows sent to the lens session."),
    "lens_windows_dropped_total": MetricSpec("counter", "Windows not delivered, by reason.", ("reason",)),
    "lens_inferences_total": MetricSpec("counter", "Inference results, by label.", ("label",)),
    "lens_errors_total": MetricSpec("counter", "Lens errors, by kind.", ("kind",)),
    "lens_session_up": MetricSpec("gauge", "1 while a lens session is streaming."),
    # detection and steps
    "anomalies_opened_total": MetricSpec("counter", "Anomalies opened.", ("kind", "severity")),
    "anomalies_open": MetricSpec("gauge", "Anomalies open now."),
    "incident_events_total": MetricSpec(
        "counter",
        "Incidents (anomalies of one physical event, one Atlas issue each), by what happened: opened, grew"
        " (an anomaly joined one), closed.",
        ("event",),
    ),
    "step_outcomes_total": MetricSpec("counter", "Test-step outcomes decided, by status.", ("status",)),
    "step_running": MetricSpec("gauge", "1 while a test step is running."),
    # evidence ring
    "evidence_ring_bytes": MetricSpec("gauge", "Bytes the evidence ring holds, by source.", ("source",)),
    "evidence_ring_budget_bytes": MetricSpec(
        "gauge",
        "What the evidence ring may hold now: what the data path's budget (memory.data_path_mb) leaves"
        " it after the other consumers, at most evidence.memory_mb.",
    ),
    "data_path_memory_budget_bytes": MetricSpec(
        "gauge", "The data path's memory budget (memory.data_path_mb): every consumer together."
    ),
    "data_path_memory_bytes": MetricSpec(
        "gauge",
        "Bytes each consumer of the data path's memory budget holds (evidence, recorder, lens, live).",
        ("consumer",),
    ),
    "evidence_ring_span_seconds": MetricSpec(
        "gauge", "Seconds of frames the evidence ring holds, by source.", ("source",)
    ),
    "evidence_ring_evicted_blocks_total": MetricSpec(
        "counter", "Blocks of frames dropped from the evidence ring, by reason (time, memory).", ("reason",)
    ),
    "evidence_slices_cut_total": MetricSpec(
        "counter",
        "Evidence slices that came out shorter than asked because the ring had dropped their start,"
        " by reason (memory: the byte budget; time: older than ring_seconds).",
        ("reason",),
    ),
    "evidence_frames_not_kept_total": MetricSpec(
        "counter", "Frames wider than the whole evidence memory budget, not kept."
    ),
    # recordings
    "recording_frames_total": MetricSpec("counter", "Frames written to recording segments."),
    "recording_frames_dropped_total": MetricSpec(
        "counter",
        "Frames not recorded, by reason (queue_full: the writer fell behind; write_error).",
        ("reason",),
    ),
    "recording_segments": MetricSpec(
        "gauge", "Recording segments on disk, by state (open, finished, uploaded).", ("state",)
    ),
    "recording_segments_deleted_total": MetricSpec(
        "counter",
        "Segments deleted by the disk budget, by reason (uploaded; not_uploaded: lost before S3;"
        " local_only: no S3).",
        ("reason",),
    ),
    "recording_disk_bytes": MetricSpec("gauge", "Bytes of recording segments on disk."),
    "recording_disk_budget_bytes": MetricSpec("gauge", "The recordings' disk budget (recorder.max_disk_mb)."),
    "recording_pending_bytes": MetricSpec(
        "gauge", "Frames waiting for the recorder's writer thread, in (estimated) bytes."
    ),
    "recording_pending_budget_bytes": MetricSpec(
        "gauge", "The memory budget of frames waiting for the writer (recorder.max_pending_mb)."
    ),
    # outbox
    "outbox_jobs": MetricSpec("gauge", "Outbox jobs, by state.", ("state",)),
    "outbox_enqueued_total": MetricSpec("counter", "Jobs persisted."),
    "outbox_delivered_total": MetricSpec("counter", "Jobs delivered (or adopted after a crash)."),
    "outbox_failed_total": MetricSpec("counter", "Jobs failed for good."),
    "outbox_retries_total": MetricSpec("counter", "Delivery attempts retried."),
    "outbox_shed_total": MetricSpec("counter", "Jobs shed, by reason.", ("reason",)),
    "outbox_blocked": MetricSpec(
        "gauge", "1 while the whole queue is paused, by reason (auth: Atlas refuses the token).", ("reason",)
    ),
    "outbox_oldest_waiting_seconds": MetricSpec(
        "gauge", "Age of the oldest job not yet delivered (0 when none waits)."
    ),
    "outbox_commits_lost_total": MetricSpec(
        "counter", "Outbox commits found missing from the database at start (a damaged -wal file)."
    ),
    "outbox_jobs_restored_total": MetricSpec(
        "counter", "Jobs of lost commits put back from the outbox's commit journal."
    ),
    "outbox_commits_unrecoverable_total": MetricSpec(
        "counter", "Lost outbox commits whose journal line was damaged too (their jobs are unknown)."
    ),
    "outbox_groups_held": MetricSpec("gauge", "Ordered job groups whose head waits (retry, outage, deps)."),
    # state files and disk
    "disk_full": MetricSpec("gauge", "1 while a state write waits for disk space."),
    "state_write_failures_total": MetricSpec("counter", "State-file writes refused for lack of space."),
    "state_files_damaged_total": MetricSpec("counter", "Damaged state files found and set aside."),
    "anomaly_events_waiting": MetricSpec(
        "gauge", "Anomaly events a consumer could not take yet (kept for a retry).", ("consumer",)
    ),
    "anomaly_events_dropped_total": MetricSpec(
        "counter", "Anomaly events a consumer's full backlog could not keep.", ("consumer",)
    ),
    # process
    "info": MetricSpec(
        "gauge",
        "Always 1: the bench name the agent is configured with, and its version.",
        ("agent_bench", "version"),
    ),
    "component_restarts_total": MetricSpec(
        "counter", "Restarts of a supervised component after it failed.", ("component",)
    ),
    "component_failed": MetricSpec(
        "gauge", "1 when a component stopped for good (e.g. an API key refused).", ("component",)
    ),
    "state_dir_filesystem_avail_bytes": MetricSpec(
        "gauge", "Bytes the agent may still write on the state directory's filesystem.", ("path",)
    ),
    "state_dir_filesystem_size_bytes": MetricSpec(
        "gauge", "Size of the state directory's filesystem.", ("path",)
    ),
    "event_loop_lag_seconds": MetricSpec("gauge", "Worst event-loop lag of the last few seconds."),
    "watchdog_withheld_total": MetricSpec("counter", "Watchdog pings withheld (loop lag or no progress)."),
    "metrics_source_errors_total": MetricSpec(
        "counter", "Metric sources that failed, by source.", ("source",)
    ),
}


class Sample(NamedTuple):
    name: str  # a key of SCHEMA
    labels: Mapping[str, str]
    value: float


Source = Callable[[], Iterable[Sample]]
AsyncSource = Callable[[], Awaitable[Iterable[Sample]]]
_Key = tuple[str, tuple[str, ...]]


def _key(name: str, labels: Mapping[str, str]) -> _Key:
    spec = SCHEMA.get(name)
    if spec is None:
        raise ValueError(f"unknown metric {name!r}")
    if set(labels) != set(spec.labels):
        raise ValueError(f"metric {name!r} takes labels {spec.labels}, got {tuple(sorted(labels))}")
    return name, tuple(str(labels[label]) for label in spec.labels)


class Metrics:
    def __init__(self, refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT) -> None:
        self.refresh_timeout = refresh_timeout
        self.registry = CollectorRegistry(auto_describe=False)
        self._sources: list[tuple[str, Source]] = []
        self._async_sources: list[tuple[str, AsyncSource]] = []
        self._async_samples: dict[str, list[Sample]] = {}  # last good answer of each async source
        self._owned: dict[_Key, float] = {}  # what inc()/set() count here
        self._source_errors: dict[str, int] = {}
        self._warned: set[str] = set()
        self.registry.register(_SchemaCollector(self))

    # --- feeding ----------------------------------------------------------------------------------

    def add_source(self, name: str, source: Source) -> None:
        """A callable read at every scrape, on the event loop: must be cheap and must not block."""
        self._sources.append((name, source))

    def add_async_source(self, name: str, source: AsyncSource) -> None:
        """An awaitable source (e.g. the outbox's depth, read off the loop); `refresh()` awaits it and
        `render()` serves its last good answer."""
        self._async_sources.append((name, source))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = _key(name, labels)
        if SCHEMA[name].kind != "counter":
            raise ValueError(f"{name!r} is a gauge: use set()")
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._owned[key] = self._owned.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = _key(name, labels)
        if SCHEMA[name].kind != "gauge":
            raise ValueError(f"{name!r} is a counter: use inc()")
        self._owned[key] = value

    # --- reading ----------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Await every async source (each bounded by `refresh_timeout`); a failed one keeps its last
        answer."""
        for name, source in self._async_sources:
            try:
                async with asyncio.timeout(self.refresh_timeout):
                    self._async_samples[name] = list(await source())
            except Exception as exc:  # one broken source must not take /metrics down
                self._source_failed(name, exc)

    def render(self) -> bytes:
        """The Prometheus text format (0.0.4) of everything, as of now (async sources: as of `refresh`)."""
        return generate_latest(self.registry)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """(body, content type) for a scraper's `Accept` header: OpenMetrics when it asks for it, the
        classic text format otherwise (what every Prometheus version parses)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of one series as a scrape would show it (for /status and tests)."""
        return self.collect_values().get(_key(name, labels))

    def collect_values(self) -> dict[_Key, float]:
        values = dict(self._owned)
        batches: list[tuple[str, Iterable[Sample]]] = list(self._async_samples.items())
        for name, source in self._sources:
            try:
                batches.append((name, list(source())))
            except Exception as exc:
                self._source_failed(name, exc)
        for name, samples in batches:
            try:
                for sample in samples:
                    key = _key(sample.name, sample.labels)
                    values[key] = values.get(key, 0.0) + float(sample.value)
            except (ValueError, TypeError) as exc:
                self._source_failed(name, exc)
        for name, count in self._source_errors.items():
            values[("metrics_source_errors_total", (name,))] = float(count)
        return values

    def _source_failed(self, name: str, exc: BaseException) -> None:
        self._source_errors[name] = self._source_errors.get(name, 0) + 1
        if name not in self._warned:
            self._warned.add(name)
            log.warning("metrics_source_failed", source=name, error=f"{type(exc).__name__}: {exc}")


class _SchemaCollector(Collector):
    """Turns `Metrics.collect_values()` into metric families, every family of SCHEMA always present."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        by_name: dict[str, list[tuple[tuple[str, ...], float]]] = {name: [] for name in SCHEMA}
        for (name, label_values), value in self._metrics.collect_values().items():
            by_name[name].append((label_values, value))
        for name, spec in SCHEMA.items():
            full = f"{NAMESPACE}_{name}"
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.kind == "counter":
                family = CounterMetricFamily(full, spec.help, labels=spec.labels)
            else:
                family = GaugeMetricFamily(full, spec.help, labels=spec.labels)
            series = by_name[name]
            if not series and not spec.labels:
                series = [((), 0.0)]  # an unlabelled series exists from the start: dashboards see 0
            for label_values, value in sorted(series):
                family.add_metric(list(label_values), value)
            yield family
