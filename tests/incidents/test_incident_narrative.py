"""An incident's issue text tells its times from one origin: the incident's start, the earliest start
of its members on the wall clock. The opening comment's "started", the timeline's "t = 0" and every
member's offset agree, whatever timeline each member was found on."""

from __future__ import annotations

import re
from dataclasses import replace

from edge_agent.atlas.headline import NO_PORTS
from edge_agent.atlas.incident_text import closing_comment, incident_summary, opening_comment
from edge_agent.atlas.narrative import iso
from edge_agent.detect.anomaly import Anomaly, AnomalyClosed, AnomalyKey, AnomalyOpened
from edge_agent.incidents import Incident, IncidentClosed, IncidentGrouper

WALL0 = 1_780_000_111.224  # ...:31.224Z


def anomaly(ident: str, channel: str, mono: float, wall: float, *, kind: str = "limits") -> Anomaly:
    return Anomaly(
        id=ident, key=AnomalyKey(f"rule:{kind}", "bench", channel), kind=kind, description=f"{channel} odd",
        severity="high", priority="high", measure="value", threshold="max 1",
        started_mono=mono, started_wall=wall, opened_mono=mono + 0.01, opened_wall=wall + 0.01,
        peak_value=2.0, peak_excursion=1.0, peak_mono=mono, peak_wall=wall, samples=3,
    )  # fmt: skip


def ended(a: Anomaly, after: float) -> AnomalyClosed:
    return AnomalyClosed(
        replace(
            a, ended_mono=a.started_mono + after, ended_wall=a.started_wall + after,
            closed_mono=a.started_mono + after + 0.1, closed_wall=a.started_wall + after + 0.1,
            close_reason="cleared",
        )
    )  # fmt: skip


def the_demos_incident() -> tuple[Incident, Incident]:
    """As in the demo: the lead (supply_v) starts at 31.224 on the wall clock; a member found on another
    timeline starts earlier on that one (mono) but 2 ms later on the wall clock. (opened, closed)"""
    grouper = IncidentGrouper(new_id=lambda: "inc-1", join_window=1.0, update_after=0.5)
    lead = anomaly("a-supply", "supply_v", mono=100.0, wall=WALL0)
    other = anomaly("a-current", "current_a", mono=99.5, wall=WALL0 + 0.002)
    (opened,) = [e.incident for e in grouper.on_events([AnomalyOpened(lead)])]
    grouper.on_events([AnomalyOpened(other), ended(lead, 0.5), ended(other, 0.3)])
    (closed,) = [e.incident for e in grouper.close_all(110.0, WALL0 + 5) if isinstance(e, IncidentClosed)]
    return opened, closed


def offsets(text: str) -> list[str]:
    return re.findall(r"^\s*([-+]?\S+) s  ", text, flags=re.MULTILINE)


def test_the_incident_starts_at_its_earliest_members_start_on_the_wall_clock() -> None:
    _, closed = the_demos_incident()
    assert closed.started_wall == WALL0  # not the later wall start of the member earliest on its timeline
    assert closed.started_mono == 99.5  # the grouper's own comparisons stay on the timeline


def test_opening_comment_and_timeline_share_t0_and_no_member_is_before_it() -> None:
    opened, closed = the_demos_incident()
    opening = opening_comment(incident_summary(opened, "bench-1", NO_PORTS), [])
    closing = closing_comment(incident_summary(closed, "bench-1", NO_PORTS), [])
    assert f"started {iso(WALL0)}." in opening
    assert f"Timeline (t = 0 at {iso(WALL0)}, the incident's start" in closing
    assert offsets(closing) == ["+0.000", "+0.002"]
    assert "+-" not in opening + closing
    assert "Duration: 0.500 s" in closing


def test_a_summary_kept_with_a_later_start_than_a_member_is_told_from_the_earliest() -> None:
    """An incident recorded before this fix (its open record keeps the summary) named the member
    earliest on its timeline as the start: the narrative still counts from the earliest wall start."""
    _, closed = the_demos_incident()
    summary = incident_summary(closed, "bench-1", NO_PORTS) | {
        "started_wall": WALL0 + 0.002,
        "started_at": "later",
    }
    closing = closing_comment(summary, [])
    assert f"t = 0 at {iso(WALL0)}" in closing and offsets(closing) == ["+0.000", "+0.002"]
    assert f"started {iso(WALL0)}." in opening_comment(summary, [])
