"""What the reporter writes for humans (pure): session and issue titles, tags, the JSON summary of an
anomaly and the comment narratives (what, where, when, values versus limits).

Every comment the agent posts carries a marker line `edge-agent:<anomaly-id>:<part>`: after a comment
POST of unknown outcome, the outbox looks for that line among the issue's comments instead of posting
twice (Atlas has no idempotency keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edge_agent.atlas.client import MAX_COMMENT_CHARS, truncate_comment
from edge_agent.detect.anomaly import Anomaly

TAG_PREFIX = "edge-agent:"
DEFAULT_TITLE_TEMPLATE = "{bench} run {started:%Y-%m-%d %H:%M}"
# Atlas documents no limit on issue titles; a readable title fits on one line of its UI.
MAX_ISSUE_TITLE_CHARS = 200


def anomaly_tag(anomaly_id: str) -> str:
    """The unique tag of the issue an anomaly created: what `find_issue_by_tag` looks for."""
    return f"{TAG_PREFIX}{anomaly_id}"


def comment_marker(anomaly_id: str, part: str) -> str:
    """The line that identifies one comment of one anomaly (`open`, `close`, `part2`, ...)."""
    return f"{TAG_PREFIX}{anomaly_id}:{part}"


def has_marker(content: str, marker: str) -> bool:
    return any(line.strip() == marker for line in content.splitlines())


def run_title(template: str, bench: str, started_wall: float) -> str:
    """`template` with `{bench}` and `{started:<strftime>}` (local time of the bench). A template that
    does not format (unknown field, bad spec) falls back to the default rather than stopping the run."""
    started = datetime.fromtimestamp(started_wall, UTC).astimezone()
    try:
        title = template.format(bench=bench, started=started)
    except (KeyError, IndexError, ValueError, AttributeError):
        title = DEFAULT_TITLE_TEMPLATE.format(bench=bench, started=started)
    return title.strip() or DEFAULT_TITLE_TEMPLATE.format(bench=bench, started=started)


def where(anomaly: Anomaly) -> str:
    """`supply_v on bench`, `lens on bench`, `all channels on bench`."""
    channel = anomaly.channel
    if not channel:
        subject = "lens"
    elif channel == "*":
        subject = "all channels"
    else:
        subject = channel
    return f"{subject} on {anomaly.source}" if anomaly.source else subject


def issue_title(anomaly: Anomaly, bench: str) -> str:
    """`[bench-03] supply_v on bench: outside [11.4, 12.6] (peak 13.1, max 12.6)`."""
    description = anomaly.description
    prefix = f"{anomaly.channel} " if anomaly.channel and anomaly.channel != "*" else ""
    if prefix and description.startswith(prefix):
        description = description[len(prefix) :]
    if anomaly.kind == "lens" and anomaly.label:
        peak = f"label {anomaly.label}"
    else:
        peak = f"peak {_num(anomaly.peak_value)}, {anomaly.threshold}"
    title = f"[{bench}] {where(anomaly)}: {description} ({peak})"
    if len(title) > MAX_ISSUE_TITLE_CHARS:
        title = title[: MAX_ISSUE_TITLE_CHARS - 1] + "…"
    return title


def issue_tags(anomaly: Anomaly, bench: str) -> list[str]:
    """bench, channel (or `lens`), rule, and the unique `edge-agent:<id>` tag; no empties, no repeats."""
    channel = anomaly.channel or "lens"
    tags = [bench, channel, anomaly.rule_id, anomaly_tag(anomaly.id)]
    return list(dict.fromkeys(t for t in tags if t))


def render_description(blocks: Sequence[Mapping[str, Any]], fields: Mapping[str, Any]) -> list[Any]:
    """The configured description blocks with every string formatted from the anomaly's fields
    (`atlas.description_blocks`; names checked when the config loads). A field without a value (a
    lens anomaly has no threshold) renders empty, never as `None`. No blocks: `[]`, the only value
    the public docs show."""
    values = {name: "" if value is None else value for name, value in fields.items()}
    return [_render(block, values) for block in blocks]


def _render(value: Any, fields: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        try:
            return value.format_map(fields)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            # e.g. `{threshold:.2f}` on a lens anomaly (no threshold): keep the template, not lose the issue
            return value
    if isinstance(value, Mapping):
        return {key: _render(item, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, fields) for item in value]
    return value


def iso(wall: float | None) -> str | None:
    if wall is None or not math.isfinite(wall):
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def anomaly_summary(anomaly: Anomaly, bench: str, **extra: Any) -> dict[str, Any]:
    """The anomaly as the evidence JSON and the open-anomaly record keep it (no secrets in it)."""
    summary: dict[str, Any] = {
        "id": anomaly.id,
        "bench": bench,
        "rule_id": anomaly.rule_id,
        "source": anomaly.source,
        "channel": anomaly.channel,
        "kind": anomaly.kind,
        "description": anomaly.description,
        "severity": anomaly.severity,
        "priority": anomaly.priority,
        "measure": anomaly.measure,
        "threshold": anomaly.threshold,
        "peak_value": anomaly.peak_value,
        "peak_excursion": anomaly.peak_excursion,
        "samples": anomaly.samples,
        "started_mono": anomaly.started_mono,
        "started_wall": anomaly.started_wall,
        "started_at": iso(anomaly.started_wall),
        "opened_wall": anomaly.opened_wall,
        "opened_at": iso(anomaly.opened_wall),
        "peak_wall": anomaly.peak_wall,
        "peak_at": iso(anomaly.peak_wall),
        "ended_wall": anomaly.ended_wall,
        "ended_at": iso(anomaly.ended_wall),
        "closed_wall": anomaly.closed_wall,
        "closed_at": iso(anomaly.closed_wall),
        "close_reason": anomaly.close_reason,
        "label": anomaly.label,
        "scores": dict(anomaly.scores),
    }
    summary.update(extra)
    return summary


def _num(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6g}"


def _scores(scores: Mapping[str, float]) -> str:
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:5]
    return ", ".join(f"{k} {_num(v)}" for k, v in top)


def _facts(summary: Mapping[str, Any]) -> list[str]:
    lines = [
        f"What: {summary.get('description')} ({summary.get('kind')}, severity {summary.get('severity')})",
        f"Where: bench {summary.get('bench')}, source {summary.get('source') or '-'},"
        f" channel {summary.get('channel') or '-'} (rule {summary.get('rule_id')})",
        f"When: started {summary.get('started_at')}, confirmed {summary.get('opened_at')}",
        f"Peak: {summary.get('measure')} {_num(float(summary.get('peak_value') or 0.0))}"
        f" at {summary.get('peak_at')} versus {summary.get('threshold')}"
        f" (beyond by {_num(float(summary.get('peak_excursion') or 0.0))});"
        f" {summary.get('samples')} anomalous samples",
    ]
    if summary.get("label"):
        scores = summary.get("scores") or {}
        lines.append(
            f"Lens: label {summary.get('label')}" + (f"; scores {_scores(scores)}" if scores else "")
        )
    return lines


def _finish(lines: Sequence[str], files: Sequence[str], marker: str) -> str:
    body = list(lines)
    if files:
        body.append("Evidence: " + ", ".join(files))
    text = "\n".join(body)
    tail = "\n\n" + marker
    return truncate_comment(text, MAX_COMMENT_CHARS - len(tail)) + tail


def opening_comment(summary: Mapping[str, Any], files: Sequence[str], *, repeat: bool = False) -> str:
    """Posted right after the issue (or, for a repeat, as the comment on the open issue)."""
    head = "Anomaly detected again (repeat while this issue is open)." if repeat else "Anomaly detected."
    lines = [head, *_facts(summary), "Status: still active; the full evidence follows when it clears."]
    return _finish(lines, files, comment_marker(str(summary["id"]), "open"))


def part_comment(summary: Mapping[str, Any], part: int, files: Sequence[str]) -> str:
    """A long-running anomaly's evidence, part by part while it lasts."""
    lines = [f"Anomaly still active: evidence part {part}.", *_facts(summary)]
    return _finish(lines, files, comment_marker(str(summary["id"]), f"part{part}"))


def closing_comment(summary: Mapping[str, Any], files: Sequence[str], *, note: str = "") -> str:
    """The narrative when the anomaly is over: what, where, when, peak versus threshold, duration."""
    started = summary.get("started_wall")
    ended = summary.get("ended_wall") or summary.get("closed_wall")
    reason = summary.get("close_reason") or "cleared"
    lines = ["Anomaly over.", *_facts(summary)]
    if isinstance(started, int | float) and isinstance(ended, int | float):
        lines.append(f"Duration: {max(0.0, ended - started):.3f} s (ended {iso(ended)}, closed: {reason})")
    else:
        lines.append(f"Closed: {reason}")
    if note:
        lines.append(note)
    return _finish(lines, files, comment_marker(str(summary["id"]), "close"))
