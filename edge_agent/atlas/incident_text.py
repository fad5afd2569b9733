"""What an incident's issue says (pure): its title, tags, JSON summary and the comment narratives.

The issue a test engineer reads is the product: one per physical event. Its title says what happened
to the lead channel (the anomaly that opened it, in headline.py's words) and how many more joined; its
tags name the bench, every channel and kind of check involved (`rule:limits`, `lens`) and the unique
`edge-agent:<incident-id>`; its comments tell the story in order: the
first anomaly (at once), the members that joined (one comment per batch), evidence parts of a long
incident, and at the end the timeline: which channel first, in what order, peaks against thresholds,
how long.

Every comment carries a marker line `edge-agent:<incident-id>:<part>` (narrative.comment_marker), so a
comment POST of unknown outcome is looked up, not posted twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edge_agent.atlas.client import MAX_COMMENT_CHARS, truncate_comment
from edge_agent.atlas.evidence_forms import KeptFile
from edge_agent.atlas.headline import (
    NO_PORTS,
    BenchPorts,
    anomaly_words,
    channels_words,
    describe_anomaly,
    named_subject,
    plural,
    rule_words,
)
from edge_agent.atlas.narrative import (
    MAX_ISSUE_TITLE_CHARS,
    TAG_PREFIX,
    agent_tag,
    anomaly_summary,
    comment_marker,
    finish_comment,
    iso,
)
from edge_agent.detect.anomaly import Anomaly
from edge_agent.incidents import Incident

# How many members a comment lists one by one; a longer incident lists the first ones and counts the rest.
MAX_LISTED_MEMBERS = 40


def incident_title(incident: Incident, bench: str, ports: BenchPorts) -> str:
    """`[bench-03] supply_v above max 12.6 (peak 13.1) +5 more`: what happened to the lead channel, in
    words (headline.anomaly_words), and how many more channels (or the lens) joined. `ports`: the bench's
    (BenchPorts.of the config's), so that a channel name two ports carry says which port
    (`[bench-03] temp_c on dut_b above max 80 (peak 93.1)`), and `temp_c` of dut_a and of dut_b count
    as two channels.

    The title names the first channel that went wrong, even when the lens's label came first: "supply_v
    above its max" tells the engineer where to look, "the lens says fault" does not. The issue is
    filed at the first anomaly either way; a lens-led issue is retitled when a channel joins."""
    lead = next((m for m in incident.members if m.kind != "lens"), incident.lead)
    others = {named_subject(m, ports) for m in incident.members} - {named_subject(lead, ports)}
    more = f" +{len(others)} more" if others else ""
    title = f"[{bench}] {describe_anomaly(lead, ports)}{more}"
    if len(title) > MAX_ISSUE_TITLE_CHARS:
        keep = MAX_ISSUE_TITLE_CHARS - len(more) - 1
        title = title[:keep] + "…" + more
    return title


def issue_tags(bench: str, members: Iterable[Mapping[str, Any]], incident_id: str) -> list[str]:
    """The tags a person filters issues by: the bench, every channel (`lens` for the lens,
    `all-channels` for a whole source), every kind of check (`rule:limits`, `lens`), and last the unique
    `edge-agent:<incident-id>` that the agent looks its issue up by (find_issue_by_tag). `members`: the
    anomalies' JSON summaries (or anything with their `channel` and `kind`)."""
    members = list(members)
    tags = [bench]
    tags += [_channel_tag(str(m.get("channel") or "")) for m in members]
    tags += [str(m.get("kind") or "") for m in members]
    tags.append(agent_tag(incident_id))
    return list(dict.fromkeys(t for t in tags if t))


def _channel_tag(channel: str) -> str:
    return "lens" if not channel else ("all-channels" if channel == "*" else channel)


def incident_tags(incident: Incident, bench: str) -> list[str]:
    """issue_tags of the incident's members."""
    members = [{"channel": m.channel, "kind": m.kind} for m in incident.members]
    return issue_tags(bench, members, incident.id)


def incident_summary(incident: Incident, bench: str, ports: BenchPorts, **extra: Any) -> dict[str, Any]:
    """The incident as its evidence JSON and its open record keep it (no secrets in it)."""
    summary: dict[str, Any] = {
        "id": incident.id,
        "kind": "incident",
        "bench": bench,
        "group": incident.group,
        "signature": incident.signature,
        "severity": incident.severity,
        "priority": incident.priority,
        "sources": list(incident.sources),
        "channels": list(incident.channels),
        "started_mono": incident.started_mono,
        "started_wall": incident.started_wall,
        "started_at": iso(incident.started_wall),
        "opened_wall": incident.opened_wall,
        "opened_at": iso(incident.opened_wall),
        "ended_wall": incident.ended_wall,
        "ended_at": iso(incident.ended_wall),
        "closed_wall": incident.closed_wall,
        "closed_at": iso(incident.closed_wall),
        "close_reason": incident.close_reason,
        "title": incident_title(incident, bench, ports),
        "members": [anomaly_summary(m, bench) for m in incident.members],
    }
    summary.update(extra)
    return summary


def member_line(member: Mapping[str, Any], t0: float | None) -> str:
    """One member in a list: `+0.210 s  current_a above max 2.5 (peak 2.9); limits rule on bench,
    severity high, lasted 0.800 s`. The line names the member's port after its words (`on bench`), so
    the words never do (NO_PORTS)."""
    started = member.get("started_wall")
    offset = f"{started - t0:+.3f} s" if isinstance(started, int | float) and t0 is not None else "       ?"
    ended = member.get("ended_wall")
    lasted = (
        f", lasted {max(0.0, ended - started):.3f} s"
        if isinstance(ended, int | float) and isinstance(started, int | float)
        else ", still active"
    )
    return (
        f"{offset}  {anomaly_words(member, NO_PORTS)}; {rule_words(member)} on {member.get('source') or '-'},"
        f" severity {member.get('severity')}{lasted}"
    )


def _count_and_where(summary: Mapping[str, Any]) -> str:
    """`2 anomalies on supply_v and the lens's channels supply_v, vibration_g`; when the members come
    from two ports or more, each channel with its port (`temp_c on dut_a, temp_c on dut_b`): the
    incident's channel names alone would make one `temp_c` of two devices' readings."""
    members: list[Mapping[str, Any]] = list(summary.get("members") or [])
    ports = {m.get("source") for m in members if m.get("kind") != "lens" and m.get("channel")}
    if len(ports) > 1:
        channels = [
            f"{'all channels' if m['channel'] == '*' else m['channel']} on {m.get('source')}"
            for m in members
            if m.get("kind") != "lens" and m.get("channel")
        ]
    else:
        channels = list(summary.get("channels") or [])
    where = channels_words(channels, members)
    return f"{plural(len(members), 'anomaly')} on {where}"


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def _members_block(members: Sequence[Mapping[str, Any]], t0: float | None) -> list[str]:
    lines = [member_line(m, t0) for m in members[:MAX_LISTED_MEMBERS]]
    if len(members) > MAX_LISTED_MEMBERS:
        lines.append(f"… and {len(members) - MAX_LISTED_MEMBERS} more (all of them in the JSON summary)")
    return lines


def _t0(summary: Mapping[str, Any]) -> float | None:
    """t = 0 of the narrative: the incident's start, the earliest start on the wall clock of the
    incident and its members (an incident kept from before the grouper took the earliest wall start
    may name a later one), so no member starts before it."""
    members = summary.get("members") or []
    starts = [summary.get("started_wall"), *(m.get("started_wall") for m in members)]
    walls = [float(t) for t in starts if isinstance(t, int | float) and math.isfinite(t)]
    return min(walls) if walls else None


def _started_at(summary: Mapping[str, Any], t0: float | None) -> str:
    return iso(t0) or str(summary.get("started_at"))


def opening_comment(
    summary: Mapping[str, Any],
    files: Sequence[str],
    *,
    context: Sequence[str] = (),
    previous: Mapping[str, Any] | None = None,
) -> str:
    """Posted right after the issue is filed: what opened it, at once; more follows as it grows.
    `previous`: the earlier issue of the same fault, filed more than the repeat window ago."""
    lead = summary["members"][0]
    t0 = _t0(summary)
    lines = [
        f"Incident detected on bench {summary.get('bench')}, started {_started_at(summary, t0)}.",
        "First anomaly: " + member_line(lead, t0),
        f"Rule: {lead.get('description')} ({rule_words(lead)}, severity {lead.get('severity')})",
    ]
    if lead.get("label"):
        lines.append(f"Lens: label {lead.get('label')}")
    lines += list(context)
    if previous:
        lines.append(
            f"The same fault was filed before as issue {previous.get('issue_id') or '(not yet in Atlas)'}"
            f" (incident {previous.get('incident_id')}, last active {previous.get('last_activity_at')}),"
            " longer ago than the repeat window: this is a new issue."
        )
    lines.append("Status: active; channels that join are added here, the timeline follows when it is over.")
    return finish_comment(lines, files, comment_marker(str(summary["id"]), "open"))


def repeat_comment(summary: Mapping[str, Any], files: Sequence[str], *, context: Sequence[str] = ()) -> str:
    """Posted on a still-open issue of the same fault within the repeat window, instead of a new issue."""
    lead = summary["members"][0]
    t0 = _t0(summary)
    lines = [
        f"Detected again (incident {summary.get('id')}, started {_started_at(summary, t0)}):"
        " the same fault as this issue, within the repeat window.",
        "First anomaly: " + member_line(lead, t0),
        *context,
        "Status: active; the timeline follows when it is over.",
    ]
    return finish_comment(lines, files, comment_marker(str(summary["id"]), "open"))


def grew_comment(
    summary: Mapping[str, Any], joined: Sequence[Mapping[str, Any]], batch: int, *, severity_raised: bool
) -> str:
    """One comment for the members that joined since the last one."""
    lines = [
        f"{plural(len(joined), 'more anomaly')} joined this incident (now {_count_and_where(summary)}):",
        *_members_block(joined, _t0(summary)),
    ]
    if severity_raised:
        lines.append(f"Severity raised to {summary.get('severity')}.")
    return finish_comment(lines, [], comment_marker(str(summary["id"]), f"grew{batch}"))


def part_comment(summary: Mapping[str, Any], part: int, files: Sequence[str]) -> str:
    """A long incident's evidence, part by part while it lasts."""
    lines = [f"Incident still active: evidence part {part} ({_count_and_where(summary)} so far)."]
    return finish_comment(lines, files, comment_marker(str(summary["id"]), f"part{part}"))


def closing_comment(summary: Mapping[str, Any], files: Sequence[str], *, note: str = "") -> str:
    """The narrative when the incident is over: the timeline (which channel first, in what order),
    peaks against thresholds, how long, why it closed."""
    members: list[Mapping[str, Any]] = list(summary.get("members") or [])
    t0 = _t0(summary)
    ordered = sorted(members, key=lambda m: _float(m.get("started_wall")))
    sources = list(summary.get("sources") or [])
    lines = [
        f"Incident over: {_count_and_where(summary)}"
        f" ({'source' if len(sources) == 1 else 'sources'} {', '.join(sources) or '-'}),"
        f" severity {summary.get('severity')}.",
        f"Timeline (t = 0 at {_started_at(summary, t0)}, the incident's start: its earliest anomaly's):",
        *_members_block(ordered, t0),
    ]
    ended = summary.get("ended_wall") or summary.get("closed_wall")
    reason = summary.get("close_reason") or "quiet"
    if t0 is not None and isinstance(ended, int | float):
        lines.append(f"Duration: {max(0.0, ended - t0):.3f} s (ended {iso(ended)}; closed: {reason})")
    else:
        lines.append(f"Closed: {reason}")
    if note:
        lines.append(note)
    return finish_comment(lines, files, comment_marker(str(summary["id"]), "close"))


def anomaly_members(incident: Incident, bench: str, members: Sequence[Anomaly]) -> list[dict[str, Any]]:
    return [anomaly_summary(m, bench) for m in members]


# -- evidence Atlas refused (uploads.py, evidence_retry.py) -------------------------------------------


def _size(count: int) -> str:
    return f"{count / 1024:.1f} kB" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


def insert_before_marker(content: str, note: str) -> str:
    """`content` (built by finish_comment) with `note` before its marker line, the marker kept last."""
    body, _, marker = content.rpartition("\n\n")
    if not body or not marker.startswith(TAG_PREFIX) or "\n" in marker:
        body, marker = content, ""
    tail = f"\n\n{marker}" if marker else ""
    return truncate_comment(f"{body}\n\n{note}", MAX_COMMENT_CHARS - len(tail)) + tail


def _reasons(reasons: Sequence[str]) -> list[str]:
    distinct = list(dict.fromkeys(reasons))
    return [f"Why: {r}." for r in distinct]


def kept_locally_note(deferred: Sequence[Mapping[str, Any]]) -> str:
    """Added to the comment after the issue when Atlas refused some evidence: which files wait, where
    on the bench PC (the state dir's evidence folder), and why (the server's answer, readable)."""
    kept = [d for d in deferred if d.get("kept")]
    lost = [d for d in deferred if not d.get("kept")]
    lines: list[str] = []
    if kept:
        lines.append("Evidence kept on the bench PC, not attached yet:")
        lines += [f"- {d.get('name')} ({_size(int(d.get('bytes') or 0))}) at {d.get('path')}" for d in kept]
        lines += _reasons([str(d.get("reason")) for d in kept])
        lines.append(
            "The agent retries it (compressed, split into parts, or trimmed to the incident) and links"
            " it here when Atlas accepts it."
        )
    if lost:
        lines.append("Evidence not attached: " + ", ".join(str(d.get("name")) for d in lost) + ".")
        lines += _reasons([str(d.get("reason")) for d in lost])
    return "\n".join(lines)


def evidence_linked_comment(
    incident_id: str, part: str, files: Sequence[KeptFile], attached: Sequence[tuple[str, str]], form: str
) -> str:
    """Posted when evidence held back earlier is finally in Atlas, with the attachments."""
    lines = [
        f"Evidence now attached: {', '.join(n for n, _ in attached)}.",
        f"It is {', '.join(f.name for f in files)} ({part} evidence of incident {incident_id}), held back"
        f" earlier because Atlas refused it; sent {form}.",
    ]
    return finish_comment(lines, [], comment_marker(incident_id, f"{part}-evidence"))


def evidence_kept_comment(
    incident_id: str,
    part: str,
    files: Sequence[KeptFile],
    attached: Sequence[tuple[str, str]],
    why: str,
) -> str:
    """Posted when the retries of refused evidence ran out: it stays on the bench PC, for a human."""
    lines = [
        f"Evidence could not be delivered to Atlas ({part} evidence of incident {incident_id}): {why}.",
        "It is kept on the bench PC:",
        *(f"- {f.name} ({_size(f.size)}) at {f.path}" for f in files),
    ]
    if attached:
        lines.append(f"Attached meanwhile (parts): {', '.join(n for n, _ in attached)}.")
    return finish_comment(lines, [], comment_marker(incident_id, f"{part}-evidence-kept"))
