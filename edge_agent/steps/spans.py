"""The anomalies a step's outcome is judged on: one span per anomaly (its source's timeline, its
severity, the incident it joined), built from the anomaly and incident events, and kept in the
tracker's state so that an agent killed mid-step still counts, after its restart, what it saw before
the crash."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from edge_agent.atlas.headline import BenchPorts, describe_anomaly
from edge_agent.detect.anomaly import AnomalyClosed, AnomalyEvent, AnomalyUpdated
from edge_agent.incidents import IncidentClosed, IncidentEvent, IncidentGrew, IncidentOpened
from edge_agent.steps.outcome import AnomalySpan


class StepSpans:
    def __init__(self, ports: BenchPorts) -> None:
        """`ports`: the bench's (BenchPorts.of the config's): a note's `temp_c` two ports carry says which."""
        self._ports = ports
        self._spans: dict[str, AnomalySpan] = {}

    def spans(self) -> list[AnomalySpan]:
        return list(self._spans.values())

    def apply(self, events: Sequence[AnomalyEvent | IncidentEvent]) -> bool:
        """Anomaly events make the spans; incident events say which incident (one Atlas issue) each
        anomaly is in, so the outcome's note can name the issue. True when a span worth saving changed
        (an update alone is not)."""
        changed = False
        for event in events:
            if isinstance(event, IncidentOpened | IncidentGrew | IncidentClosed):
                for member in event.incident.members:
                    span = self._spans.get(member.id)
                    if span is not None and span.incident_id != event.incident.id:
                        self._spans[member.id] = replace(span, incident_id=event.incident.id)
                        changed = True
                continue
            a = event.anomaly
            end = None
            if isinstance(event, AnomalyClosed):
                end = a.ended_mono if a.ended_mono is not None else a.closed_mono
            changed = changed or not isinstance(event, AnomalyUpdated)
            known = self._spans.get(a.id)
            self._spans[a.id] = AnomalySpan(
                a.id, a.severity, describe_anomaly(a, self._ports), a.started_mono, end, a.source,
                known.incident_id if known is not None else "",
            )  # fmt: skip
        return changed

    def join_incidents(self, incident_of: Callable[[str], str | None]) -> None:
        """Name the incident of each span whose events have not said it yet (the grouper knows at once)."""
        for key, span in list(self._spans.items()):
            incident_id = span.incident_id or incident_of(span.anomaly_id)
            if incident_id and incident_id != span.incident_id:
                self._spans[key] = replace(span, incident_id=incident_id)

    def keep_open(self) -> None:
        """Forget the spans that are over (a run ended: only the open ones can touch the next run)."""
        self._spans = {k: s for k, s in self._spans.items() if s.end is None}

    def drop_ended_before(self, bounds: Mapping[str, tuple[float, float]], mono: float) -> None:
        """Steps run one after another: anomalies over before this step's end (on their source's
        timeline, `bounds`; else host time `mono`) cannot touch a later step."""
        self._spans = {
            k: s
            for k, s in self._spans.items()
            if s.end is None or s.end >= bounds.get(s.source, (0.0, mono))[1]
        }

    def as_state(self) -> dict[str, Any]:
        return {k: asdict(s) for k, s in self._spans.items()}

    def restore(self, saved: Mapping[str, Any] | None, now: float) -> None:
        """The spans of a saved state. Spans still open at the crash end at the restart, `now` (the
        reporter closes those anomalies then too). Monotonic times stay comparable across restarts:
        CLOCK_MONOTONIC is system-wide."""
        for key, raw in (saved or {}).items():
            try:
                span = AnomalySpan(**raw)
            except TypeError:
                continue
            self._spans[key] = span if span.end is not None else replace(span, end=now)
