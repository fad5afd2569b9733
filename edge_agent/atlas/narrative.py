"""Shared pieces of what the reporter writes for humans (pure): run titles, the unique tag and comment
markers, the JSON summary of one anomaly, numbers and the comment frame. The incident's own texts
(title, tags, narratives) are in incident_text.py.

Every comment the agent posts carries a marker line `edge-agent:<incident-id>:<part>`: after a comment
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
# Atlas documents no limit on issue titles; a readable title fits on one line of its UI.
MAX_ISSUE_TITLE_CHARS = 200
DEFAULT_TITLE_TEMPLATE = "{bench} run {started:%Y-%m-%d %H:%M}"


def agent_tag(incident_id: str) -> str:
    """The unique tag of the issue an incident filed (or joined as a repeat): what `find_issue_by_tag`
    looks for."""
    return f"{TAG_PREFIX}{incident_id}"


def comment_marker(incident_id: str, part: str) -> str:
    """The line that identifies one comment of one incident (`open`, `grew1`, `part2`, `close`, ...)."""
    return f"{TAG_PREFIX}{incident_id}:{part}"


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


def subject(anomaly: Anomaly) -> str:
    """What an anomaly is about: its channel, `lens`, or `all channels` (a whole-source dropout)."""
    channel = anomaly.channel
    if not channel:
        return "lens"
    return "all channels" if channel == "*" else channel


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
        # On the source's timeline, like started_mono (the device's clock where it sends one).
        "peak_mono": anomaly.peak_mono,
        "ended_mono": anomaly.ended_mono,
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
        "lens_channels": list(anomaly.lens_channels),
    }
    summary.update(extra)
    return summary


def num(value: float) -> str:
    """A measured number for people: 6 significant digits; NaN and infinities spelled out."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6g}"


def finish_comment(lines: Sequence[str], files: Sequence[str], marker: str) -> str:
    """The lines, the evidence file names, and the marker line last (never cut off by truncation)."""
    body = list(lines)
    if files:
        body.append("Evidence: " + ", ".join(files))
    text = "\n".join(body)
    tail = "\n\n" + marker
    return truncate_comment(text, MAX_COMMENT_CHARS - len(tail)) + tail
