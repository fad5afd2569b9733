"""`run_backtest`: a config and a recording in, the incidents and step outcomes that would have been
filed out. Pure apart from reading the recording (and a baseline file a rule names): no network, no
state directory, no Atlas."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.backtest.engine import BacktestEngine, IncidentRecord
from edge_agent.backtest.recording import CHUNK_BYTES, EX_USAGE, RecordingError, RecordingReader
from edge_agent.backtest.steps import StepResult
from edge_agent.backtest.timeline import unit_scale
from edge_agent.config import EdgeAgentConfig, SerialPort
from edge_agent.detect.anomaly import AnomalyEvent
from edge_agent.incidents import IncidentEvent


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    source: str | None = None  # which [[serial]] port's decoder settings apply (default: the first)
    time_column: str | None = None  # default: the port's device_time
    time_unit: str | None = None  # s, ms, us, ns; default: the port's, else the column name's suffix
    rate: float | None = None  # no time column: rows are 1/rate seconds apart
    format: str | None = None  # csv, jsonl, kv; default: the port's
    keep_events: bool = False  # keep every anomaly and incident event (tests compare them)
    chunk_bytes: int = CHUNK_BYTES  # read size: a block is the complete lines of one read


@dataclass(slots=True)
class BacktestResult:
    path: Path
    port: SerialPort
    time_column: str | None
    scale: float | None
    rate: float | None
    lines: int
    data_rows: int
    frames: int
    rows_with_time: int
    decode: dict[str, int]
    time_steps_back: int
    time_missing: int
    first_device_time: float | None
    last_device_time: float | None
    duration: float  # timeline seconds from the first row to the last
    incidents: list[IncidentRecord]
    steps: list[StepResult]
    anomalies_opened: int
    markers_ignored: int
    step_ends_unmatched: int
    seconds: float  # how long the backtest took
    anomaly_events: list[AnomalyEvent] = field(default_factory=list)
    incident_events: list[IncidentEvent] = field(default_factory=list)


def choose_port(config: EdgeAgentConfig, options: BacktestOptions) -> SerialPort:
    """The port whose decoder settings read the recording, with the options' overrides applied."""
    if not config.serial:
        raise RecordingError(
            "the config has no [[serial]] port: its decoder settings read the recording", EX_USAGE
        )
    names = [port.name for port in config.serial]
    if options.source is None:
        port = config.serial[0]
    elif options.source in names:
        port = config.serial[names.index(options.source)]
    else:
        raise RecordingError(
            f"--source {options.source!r} is not a [[serial]] port ({', '.join(names)})", EX_USAGE
        )
    update: dict[str, object] = {}
    if options.format is not None:
        update["format"] = options.format
    if options.time_column is not None:
        update["device_time"] = options.time_column
    if options.rate is not None and options.time_column is None:
        update["device_time"] = None
    return port.model_copy(update=update) if update else port


def time_scale(port: SerialPort, options: BacktestOptions) -> float | None:
    if port.device_time is None:
        if options.rate is None:
            raise RecordingError(
                f"no time column: [[serial]] {port.name!r} has no device_time; name one with --time-column"
                " (and --time-unit), or give --rate HZ for rows evenly spaced in time",
                EX_USAGE,
            )
        return None
    unit = options.time_unit or getattr(port, "device_time_unit", None)
    try:
        return unit_scale(port.device_time, unit)
    except ValueError as exc:
        raise RecordingError(str(exc), EX_USAGE) from None


def run_backtest(
    config: EdgeAgentConfig, path: Path, options: BacktestOptions | None = None
) -> BacktestResult:
    options = options or BacktestOptions()
    started = time.perf_counter()
    port = choose_port(config, options)
    scale = time_scale(port, options)
    engine = BacktestEngine(config, port.name, keep_events=options.keep_events)
    reader = RecordingReader(
        path, port, engine.channels, scale=scale, rate=None if scale is not None else options.rate,
        chunk_bytes=options.chunk_bytes,
    )  # fmt: skip
    first_device: float | None = None
    last_device: float | None = None
    first_t: float | None = None
    last_t = 0.0
    for block in reader.blocks():
        if len(block):
            if first_t is None:
                first_t = float(block.t[0])
                first_device = float(block.device[0])
            last_t = float(block.t[-1])
            last_device = float(block.device[-1])
        engine.feed(block)
    engine.finish()
    timeline = reader.device_timeline
    return BacktestResult(
        path=path,
        port=port,
        time_column=port.device_time,
        scale=scale,
        rate=options.rate if scale is None else None,
        lines=reader.lines,
        data_rows=reader.data_rows,
        frames=engine.frames,
        rows_with_time=reader.rows_with_time,
        decode=reader.stats,
        time_steps_back=timeline.steps_back if timeline is not None else 0,
        time_missing=timeline.missing if timeline is not None else 0,
        first_device_time=first_device if scale is not None else None,
        last_device_time=last_device if scale is not None else None,
        duration=last_t - (first_t or 0.0),
        incidents=engine.incidents,
        steps=engine.steps.results,
        anomalies_opened=engine.anomalies_opened,
        markers_ignored=engine.steps.ignored_markers,
        step_ends_unmatched=engine.steps.unmatched_ends,
        seconds=time.perf_counter() - started,
        anomaly_events=engine.anomaly_events,
        incident_events=engine.incident_events,
    )
