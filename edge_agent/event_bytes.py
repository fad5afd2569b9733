"""What an anomaly or incident event holds in memory, estimated generously: the byte budget of what
a consumer that cannot take events yet (a full disk) keeps for a retry (consumers.py)."""

from __future__ import annotations

from edge_agent.detect.anomaly import Anomaly, AnomalyEvent
from edge_agent.incidents import IncidentClosed, IncidentEvent, IncidentGrew, IncidentOpened


def anomaly_bytes(a: Anomaly) -> int:
    """A generous estimate of an anomaly's memory (the object, its strings and scores), for the
    consumers' byte budget."""
    strings = (a.id, a.kind, a.description, a.measure, a.threshold, a.label or "", *a.key, *a.lens_channels)
    return 1024 + sum(len(text) for text in strings) * 2 + 160 * len(a.scores)


def anomaly_event_bytes(event: AnomalyEvent) -> int:
    return anomaly_bytes(event.anomaly)


def event_bytes(event: AnomalyEvent | IncidentEvent) -> int:
    if isinstance(event, IncidentOpened | IncidentGrew | IncidentClosed):
        return incident_event_bytes(event)
    return anomaly_event_bytes(event)


def incident_event_bytes(event: IncidentEvent) -> int:
    joined = event.joined if not isinstance(event, IncidentOpened) else ()
    return 512 + sum(anomaly_bytes(a) for a in (*event.incident.members, *joined))
