"""Incidents (sans-I/O): related anomalies -> one incident, the unit that becomes one Atlas issue.

`IncidentGrouper` (grouper.py) is the core; `Incident` and its events are in model.py.
"""

from edge_agent.incidents.grouper import IncidentGrouper
from edge_agent.incidents.model import (
    INCIDENT_EVENTS,
    Incident,
    IncidentClosed,
    IncidentEvent,
    IncidentGrew,
    IncidentOpened,
    signature_of,
)

__all__ = [
    "INCIDENT_EVENTS",
    "Incident",
    "IncidentClosed",
    "IncidentEvent",
    "IncidentGrew",
    "IncidentGrouper",
    "IncidentOpened",
    "signature_of",
]
