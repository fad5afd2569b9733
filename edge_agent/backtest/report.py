"""The backtest's result for people (text) and for programs (JSON, a stable shape: `FORMAT`).

JSON shape (`edge-agent-backtest/1`; fields are only ever added):

    {"format": "edge-agent-backtest/1", "rows": "<what a row number means>",
     "recording": {"path", "format", "source", "time": {"column", "seconds_per_unit"} | {"rate_hz"},
                   "lines", "data_rows", "frames", "bad_rows": {reason: n}, "headers", "comments",
                   "markers", "device_time_first", "device_time_last", "duration_s",
                   "rows_time_went_back", "rows_without_time"},
     "config": {"path", "bench", "rules", "incidents": {"group_by", "join_window", "update_after"}},
     "incidents": [{"id", "title", "filed_title", "tags", "severity", "priority", "signature", "group",
                    "lead": {"rule_id", "kind", "source", "channel"},
                    "members": [{"anomaly_id", "rule_id", "kind", "source", "channel", "severity",
                                 "description", "measure", "threshold", "peak_value", "peak_excursion",
                                 "samples", "close_reason", "start_row", "open_row", "peak_row", "end_row",
                                 "start_s", "open_s", "peak_s", "end_s", "closed_s"}],   (join order)
                    "start_row", "end_row", "filed_row", "start_s", "end_s", "filed_s", "closed_s",
                    "start_device_time", "end_device_time", "comments", "close_reason"}],
     "steps": [{"name", "title", "start_row", "end_row", "start_line", "end_line", "start_s", "end_s",
                "verdict", "execution_status", "exception"}],
     "summary": {"incidents", "by_severity": {severity: n}, "anomalies", "steps": {status: n}},
     "run": {"seconds", "frames_per_s"}}

`title` and `tags` are the issue's as they read at the end (the agent updates them as members join),
`filed_title` the title it was filed with, at its first anomaly.

Times: `*_s` are seconds on the recording's timeline from its first row (the device clock when there is
a time column); `*_device_time` the same moment in the time column's own units. Rows: a moment that is
a sample (the first sample of a condition, its peak, its first clear sample) is that sample's row; a
moment decided between rows by the clock (a dropout seen by a tick, an incident filed by one) is the
next row; null is after the last row. A non-finite number is written as the string "inf", "-inf" or
"nan" (JSON has none).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from edge_agent.atlas.headline import BenchPorts
from edge_agent.atlas.incident_text import incident_tags, incident_title
from edge_agent.backtest.engine import IncidentRecord
from edge_agent.backtest.rows import AnomalyRows
from edge_agent.backtest.runner import BacktestResult
from edge_agent.backtest.steps import StepResult
from edge_agent.config import EdgeAgentConfig
from edge_agent.detect.anomaly import Anomaly

FORMAT = "edge-agent-backtest/1"
ROWS_MEANING = (
    "1-based data rows: every line of the file except blank lines, the CSV header (and repeats of it),"
    " #STEP markers and # comments; bad data rows are numbered too (they are counted in bad_rows)"
)
CLOSE_REASONS = {"quiet": "quiet", "shutdown": "end_of_recording"}


def _num(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def device_time_at(result: BacktestResult, t: float | None) -> float | None:
    """The time column's value at timeline time `t` (exact while the device time never went back)."""
    if t is None or result.scale is None or result.first_device_time is None:
        return None
    if not math.isfinite(result.first_device_time):
        return None
    return result.first_device_time + t / result.scale


def member_json(anomaly: Anomaly, rows: AnomalyRows) -> dict[str, Any]:
    end = anomaly.ended_mono if anomaly.ended_mono is not None else anomaly.closed_mono
    return {
        "anomaly_id": anomaly.id,
        "rule_id": anomaly.rule_id,
        "kind": anomaly.kind,
        "source": anomaly.source,
        "channel": anomaly.channel,
        "severity": anomaly.severity,
        "description": anomaly.description,
        "measure": anomaly.measure,
        "threshold": anomaly.threshold,
        "peak_value": _num(anomaly.peak_value),
        "peak_excursion": _num(anomaly.peak_excursion),
        "samples": anomaly.samples,
        "close_reason": CLOSE_REASONS.get(anomaly.close_reason or "", anomaly.close_reason),
        "start_row": rows.start,
        "open_row": rows.opened,
        "peak_row": rows.peak,
        "end_row": rows.end,
        "start_s": _num(anomaly.started_mono),
        "open_s": _num(anomaly.opened_mono),
        "peak_s": _num(anomaly.peak_mono),
        "end_s": _num(end),
        "closed_s": _num(anomaly.closed_mono),
    }


def incident_json(
    record: IncidentRecord, result: BacktestResult, bench: str, ports: BenchPorts
) -> dict[str, Any]:
    """`ports`: the bench's, so that the titles are the ones the agent would file."""
    incident = record.closed.incident
    members = [member_json(m, record.rows.get(m.id, AnomalyRows(None, None, None))) for m in incident.members]
    starts = [m for m in incident.members if m.started_mono == incident.started_mono]
    start_row = record.rows[starts[0].id].start if starts and starts[0].id in record.rows else None
    end_rows = [m["end_row"] for m in members if m["end_row"] is not None]
    end = incident.ended_mono if incident.ended_mono is not None else incident.closed_mono
    lead = incident.lead
    return {
        "id": incident.id,
        "title": incident_title(incident, bench, ports),
        "filed_title": incident_title(record.opened, bench, ports),
        "tags": incident_tags(incident, bench),
        "severity": incident.severity,
        "priority": incident.priority,
        "signature": incident.signature,
        "group": incident.group,
        "lead": {"rule_id": lead.rule_id, "kind": lead.kind, "source": lead.source, "channel": lead.channel},
        "members": members,
        "start_row": start_row,
        "end_row": max(end_rows) if end_rows and len(end_rows) == len(members) else None,
        "filed_row": record.opened_row,
        "start_s": _num(incident.started_mono),
        "end_s": _num(end),
        "filed_s": _num(incident.opened_mono),
        "closed_s": _num(incident.closed_mono),
        "start_device_time": _num(device_time_at(result, incident.started_mono)),
        "end_device_time": _num(device_time_at(result, end)),
        "comments": record.updates,
        "close_reason": CLOSE_REASONS.get(incident.close_reason or "", incident.close_reason),
    }


def step_json(step: StepResult) -> dict[str, Any]:
    return {
        "name": step.name,
        "title": step.title,
        "start_row": step.start_row,
        "end_row": step.end_row,
        "start_line": step.start_line,
        "end_line": step.end_line,
        "start_s": _num(step.start_t),
        "end_s": _num(step.end_t),
        "verdict": step.verdict,
        "execution_status": step.execution_status,
        "exception": step.exception,
    }


def to_json(result: BacktestResult, config: EdgeAgentConfig, config_path: Path | None) -> dict[str, Any]:
    decode = result.decode
    bad = {k.removeprefix("skipped_"): v for k, v in decode.items() if k.startswith("skipped_")}
    bad.pop("empty", None)
    bad.pop("bad_marker", None)
    time: dict[str, Any] = (
        {"column": result.time_column, "seconds_per_unit": result.scale}
        if result.scale is not None
        else {"rate_hz": result.rate}
    )
    bench = config.agent.bench
    ports = BenchPorts.of(config.serial)
    incidents = [incident_json(r, result, bench, ports) for r in result.incidents]
    return {
        "format": FORMAT,
        "rows": ROWS_MEANING,
        "recording": {
            "path": str(result.path),
            "format": result.port.format,
            "source": result.port.name,
            "time": time,
            "lines": result.lines,
            "data_rows": result.data_rows,
            "frames": result.frames,
            "bad_rows": bad,
            "headers": decode.get("headers", 0),
            "comments": decode.get("comments", 0),
            "markers": decode.get("markers", 0),
            "device_time_first": _num(result.first_device_time),
            "device_time_last": _num(result.last_device_time),
            "duration_s": _num(result.duration),
            "rows_time_went_back": result.time_steps_back,
            "rows_without_time": result.time_missing,
        },
        "config": {
            "path": str(config_path) if config_path else None,
            "bench": bench,
            "rules": len(config.rules),
            "incidents": {
                "group_by": config.incidents.group_by,
                "join_window": config.incidents.join_window,
                "update_after": config.incidents.update_after,
            },
        },
        "incidents": incidents,
        "steps": [step_json(s) for s in result.steps],
        "summary": {
            "incidents": len(incidents),
            "by_severity": dict(Counter(i["severity"] for i in incidents)),
            "anomalies": result.anomalies_opened,
            "steps": dict(Counter(s.execution_status for s in result.steps)),
        },
        "run": {
            "seconds": round(result.seconds, 3),
            "frames_per_s": round(result.frames / result.seconds) if result.seconds > 0 else None,
        },
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _span(first: Any, last: Any) -> str:
    """`12-40`, `12`, or `12-end` (a moment after the last row)."""
    if first == last:
        return _fmt(first)
    return f"{_fmt(first)}-{'end' if last is None else _fmt(last)}"


def to_text(report: dict[str, Any]) -> str:
    rec = report["recording"]
    time = rec["time"]
    clock = (
        f"time column {time['column']} ({time['seconds_per_unit']:g} s per unit)"
        if "column" in time
        else f"rows {1 / time['rate_hz']:g} s apart (--rate)"
    )
    bad = ", ".join(f"{reason} {n}" for reason, n in sorted(rec["bad_rows"].items())) or "none"
    lines = [
        f"backtest of {rec['path']} (source {rec['source']}, {rec['format']}; {clock})",
        f"  {rec['data_rows']:,} data rows, {rec['frames']:,} frames, {_fmt(rec['duration_s'])} s;"
        f" bad rows skipped: {bad}",
        "  rows are 1-based data rows (blank lines, the header, #STEP markers and # comments are not"
        " counted; bad rows are); times are seconds from the first row",
        "",
    ]
    if "column" in time and rec["frames"] and rec["rows_without_time"] == rec["frames"]:
        lines += [f"WARNING: no frame has a number in the time column {time['column']}: all are at t = 0", ""]
    elif rec["rows_without_time"] or rec["rows_time_went_back"]:
        lines += [
            f"note: {rec['rows_without_time']} frame(s) without a time and {rec['rows_time_went_back']} whose"
            " time went back were held at the time before them (as the agent's clock holds them)",
            "",
        ]
    incidents = report["incidents"]
    if not incidents:
        lines.append("No incident would have been filed.")
    else:
        lines.append(f"{len(incidents)} incident(s) would have been filed:")
    for number, inc in enumerate(incidents, 1):
        lines += [
            "",
            f"#{number} {inc['id']} [{inc['severity']}] rows {_span(inc['start_row'], inc['end_row'])}"
            f" (t {_span(inc['start_s'], inc['end_s'])} s), filed at row {_fmt(inc['filed_row'])},"
            f" {len(inc['members'])} member(s), {inc['comments']} comment(s), closed: {inc['close_reason']}",
            f"   title: {inc['title']}",
            f"   tags: {', '.join(inc['tags'])}",
        ]
        for k, m in enumerate(inc["members"], 1):
            subject = (
                m["channel"]
                if m["channel"] not in ("", "*")
                else ("all channels" if m["channel"] else "lens")
            )
            rows = _span(m["start_row"], m["end_row"])
            lines.append(
                f"   {k}. {subject} {m['rule_id']} [{m['severity']}] rows {rows}:"
                f" peak {m['measure']} {_fmt(m['peak_value'])} at row {_fmt(m['peak_row'])} vs"
                f" {m['threshold']} (by {_fmt(m['peak_excursion'])}), {m['samples']} samples"
            )
    if report["steps"]:
        lines += ["", "Steps:"]
        for step in report["steps"]:
            note = f" - {step['exception']}" if step["exception"] else ""
            lines.append(
                f"  {step['title']}: rows {_span(step['start_row'], step['end_row'])}"
                f" {step['execution_status']}{note}"
            )
    run = report["run"]
    lines += ["", f"({run['seconds']} s, {_fmt(run['frames_per_s'])} frames/s)"]
    return "\n".join(lines) + "\n"
