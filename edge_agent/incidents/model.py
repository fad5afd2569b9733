"""What the incident grouper hands downstream: the `Incident` snapshot and the events that open, grow
and close it.

An incident is one physical event as the agent saw it: the anomalies (local rules and lens labels) that
belong together. Like `Anomaly`, an `Incident` is an immutable snapshot made anew for every event, so a
consumer that queues one never sees it change underneath it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_agent.detect.anomaly import Anomaly, Priority, Severity, priority_for

SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}

IncidentCloseReason = Literal["quiet", "shutdown"]


def highest_severity(members: tuple[Anomaly, ...]) -> Severity:
    return max((m.severity for m in members), key=SEVERITY_RANK.__getitem__)


def signature_of(anomaly: Anomaly) -> str:
    """What makes two incidents "the same fault again": the lead anomaly's rule kind, source and
    channel. The rule's kind rather than its id (`rule3:limits`), so reordering `[[rules]]` in the
    config does not make every repeat look new."""
    return f"{anomaly.kind}|{anomaly.source}|{anomaly.channel}"


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident. `members` are the latest snapshots of its anomalies in the order they joined (the
    first is the lead, the anomaly that opened it). Times are on the members' source timelines
    (`mono`) and the host's wall clock (`wall`): `started` is the earliest member start, `opened` when
    the lead was confirmed, `ended` the last member's end once every member has ended, `closed` when
    the quiet period after that passed (or shutdown)."""

    id: str
    group: str
    members: tuple[Anomaly, ...]
    started_mono: float
    started_wall: float
    opened_mono: float
    opened_wall: float
    ended_mono: float | None = None
    ended_wall: float | None = None
    closed_mono: float | None = None
    closed_wall: float | None = None
    close_reason: IncidentCloseReason | None = None

    @property
    def lead(self) -> Anomaly:
        return self.members[0]

    @property
    def severity(self) -> Severity:
        return highest_severity(self.members)

    @property
    def priority(self) -> Priority:
        return priority_for(self.severity)

    @property
    def signature(self) -> str:
        return signature_of(self.lead)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source a member is on, in the order they joined."""
        return tuple(dict.fromkeys(m.source for m in self.members if m.source))

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel a member is about, in the order they joined (lens anomalies have none)."""
        return tuple(dict.fromkeys(m.channel for m in self.members if m.channel))

    @property
    def is_open(self) -> bool:
        return self.closed_mono is None


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    """The first anomaly of a new incident: its issue is due now."""

    incident: Incident


@dataclass(frozen=True, slots=True)
class IncidentGrew:
    """Anomalies joined since the last report (`update_after` apart): one comment for all of them.
    `severity_raised`: the incident is now more severe than when last reported."""

    incident: Incident
    joined: tuple[Anomaly, ...]
    severity_raised: bool


@dataclass(frozen=True, slots=True)
class IncidentClosed:
    """Every member ended and the quiet period passed (or the agent shut down). `joined` are members
    that joined after the last `IncidentGrew` (folded into the closing narrative, not a comment of
    their own)."""

    incident: Incident
    joined: tuple[Anomaly, ...]
    severity_raised: bool


IncidentEvent = IncidentOpened | IncidentGrew | IncidentClosed
# What each event kind is called on /status and /metrics: opened, grew, closed.
INCIDENT_EVENTS = tuple(
    kind.__name__.removeprefix("Incident").lower() for kind in (IncidentOpened, IncidentGrew, IncidentClosed)
)
