"""The live reference for the backtest: the same recording through the live decoder (its SourceClock
stamping each frame as a 1x replay delivers it), `Detector.on_frame` frame by frame and `Detector.tick`
at every tick of the agent on the source's timeline, and the incident grouper after both."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.backtest.engine import end_horizon, tick_time
from edge_agent.config import EdgeAgentConfig, SerialPort, load_config
from edge_agent.detect import AnomalyEvent, Detector
from edge_agent.frames import Frame
from edge_agent.incidents import IncidentEvent, IncidentGrouper
from edge_agent.serial.decoders import make_decoder


def replay_host_times(port: SerialPort, lines: list[bytes], scale: float) -> list[float]:
    """The host monotonic time each line arrives at when the recording is replayed at 1x from host time
    0: a frame arrives its device time's advance after the previous one (a device time that goes back,
    or none, arrives at once); other lines arrive with the line before them."""
    decoder = make_decoder(port)
    host = 0.0
    last_device: float | None = None
    out = []
    for line in lines:
        for item in decoder.feed(line + b"\n", 0.0, 0.0):
            device = item.device_time if isinstance(item, Frame) else None
            if device is not None and math.isfinite(device):
                if last_device is not None and device > last_device:
                    host += (device - last_device) * scale
                last_device = device
        out.append(host)
    return out


@dataclass
class LiveRun:
    anomaly_events: list[AnomalyEvent] = field(default_factory=list)
    incident_events: list[IncidentEvent] = field(default_factory=list)
    frames: int = 0


def live_run(config: EdgeAgentConfig, port: SerialPort, data: bytes, scale: float) -> LiveRun:
    anomaly_ids = itertools.count(1)
    incident_ids = itertools.count(1)
    detector = Detector(config.rules, None, new_id=lambda: f"a{next(anomaly_ids)}", sources={port.name})
    grouper = IncidentGrouper.from_config(  # wired as the agent wires it
        config,
        new_id=lambda: f"i{next(incident_ids)}",
        clearing_since=detector.clearing_since,
        lateness=detector.report_lateness,
        pending_reports=detector.pending_reports,
    )
    decoder = make_decoder(port)  # with the port's own SourceClock, as the agent's reader has
    run = LiveRun()

    def anomalies(events: list[AnomalyEvent] | tuple[AnomalyEvent, ...]) -> None:
        run.anomaly_events.extend(events)
        run.incident_events.extend(grouper.on_events(list(events)))

    def tick(now: float, watches: bool = True) -> None:
        anomalies(detector.tick(now, now) if watches else detector.tracker.tick(now, now))
        run.incident_events.extend(grouper.tick(lambda _source: now, now))

    t0: float | None = None
    k = 0
    last_t = 0.0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line, host in zip(lines, replay_host_times(port, lines, scale), strict=True):
        for item in decoder.feed(line + b"\n", host, host):
            if not isinstance(item, Frame):
                continue
            t = item.mono
            if t0 is None:
                t0 = t
            while tick_time(t0, k) < t:
                tick(tick_time(t0, k))
                k += 1
            run.frames += 1
            last_t = t
            anomalies(detector.on_frame(Frame(port.name, t, t, item.values, item.device_time)))
    if t0 is None:
        return run
    end = last_t + end_horizon(config)
    while tick_time(t0, k) <= end:
        tick(tick_time(t0, k), watches=False)
        k += 1
    anomalies(detector.close_all(end, end))
    run.incident_events.extend(grouper.close_all(end, end))
    return run


def config_of(
    serial: list[dict[str, Any]], rules: list[dict[str, Any]], **sections: dict[str, Any]
) -> EdgeAgentConfig:
    """A validated config from plain data (through the environment variables the loader reads)."""
    env = {"EDGE_AGENT_SERIAL": json.dumps(serial), "EDGE_AGENT_RULES": json.dumps(rules)}
    for section, values in sections.items():
        for key, value in values.items():
            text = value if isinstance(value, str) else json.dumps(value)
            env[f"EDGE_AGENT_{section.upper()}__{key.upper()}"] = text
    return load_config(None, environ=env, home=Path("/nonexistent"))
