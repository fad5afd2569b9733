"""An incident as the grouper builds it (`LiveIncident`, mutable, never handed out: `snapshot` is the
`Incident` it reports), and when a member's activity ended (`end_of`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.detect.anomaly import Anomaly
from edge_agent.incidents.model import Incident, IncidentCloseReason


@dataclass(slots=True)
class LiveIncident:
    """An incident being built: mutable, private to the grouper (`IncidentGrouper`)."""

    id: str
    group: str
    members: dict[str, Anomaly]  # anomaly id -> latest snapshot, in join order
    started_mono: float
    started_wall: float
    opened_mono: float
    opened_wall: float
    open_ids: set[str] = field(default_factory=set)
    last_end_mono: float = -math.inf
    last_end_wall: float = 0.0
    pending: list[str] = field(default_factory=list)  # joined since the last report
    pending_since: float = math.inf
    reported_rank: int = 0

    def span_end(self, clearing_since: Callable[[str], float | None]) -> float:
        """Where the incident's activity ends as far as is known: +inf while a member still holds; a
        member that is open but clearing (waiting out its `clear_after`) ended at its first clear
        sample, unless it becomes active again."""
        end = self.last_end_mono
        for anomaly_id in self.open_ids:
            since = clearing_since(anomaly_id)
            if since is None:
                return math.inf
            end = max(end, since)
        return end

    def activity(self, clearing_since: Callable[[str], float | None]) -> tuple[float, float]:
        """Most recently active first: an incident with a member that still holds, then the one that
        ended last; among those, the one whose latest member opened last."""
        latest_open = max(m.opened_mono for m in self.members.values())
        return (self.span_end(clearing_since), latest_open)

    def sources(self) -> set[str]:
        return {m.source for m in self.members.values()}

    def snapshot(
        self,
        closed_mono: float | None = None,
        closed_wall: float | None = None,
        reason: IncidentCloseReason | None = None,
    ) -> Incident:
        ended = not self.open_ids and self.last_end_mono > -math.inf
        return Incident(
            id=self.id,
            group=self.group,
            members=tuple(self.members.values()),
            started_mono=self.started_mono,
            started_wall=self.started_wall,
            opened_mono=self.opened_mono,
            opened_wall=self.opened_wall,
            ended_mono=self.last_end_mono if ended else None,
            ended_wall=self.last_end_wall if ended else None,
            closed_mono=closed_mono,
            closed_wall=closed_wall,
            close_reason=reason,
        )


def end_of(anomaly: Anomaly) -> tuple[float, float]:
    """When a closed anomaly stopped holding (its first clear sample), else when it was closed."""
    if anomaly.ended_mono is not None and anomaly.ended_wall is not None:
        return anomaly.ended_mono, anomaly.ended_wall
    return (
        anomaly.closed_mono if anomaly.closed_mono is not None else anomaly.opened_mono,
        anomaly.closed_wall if anomaly.closed_wall is not None else anomaly.opened_wall,
    )
