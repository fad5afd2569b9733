"""What the live page shows that the agent's per-frame and per-event paths feed (sans-I/O).

`LiveBoard` holds the decimating tap (every frame), the recent anomalies and incidents (every event, a
bounded number kept, the closed ones dropped first), and the recent lens labels. It turns them into
the JSON documents the page draws; times become the page's x axis, epoch milliseconds: a source
timeline's seconds plus `offset` (host wall minus host monotonic, taken once, so that at 1x the axis
reads as the bench's wall clock and every mark lines up with the traces it belongs to).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edge_agent.detect.anomaly import Anomaly, AnomalyEvent
from edge_agent.frames import Frame
from edge_agent.incidents import Incident, IncidentEvent
from edge_agent.live.decimator import BUCKETS, SPANS, WIDTHS, Buckets, Decimator

MAX_MARKS = 200  # anomalies (and, apart, incidents) kept for the page: about 150 B each
MAX_LABELS = 30  # recent lens inferences shown
SIGNIFICANT_DIGITS = 6  # a plot a few hundred pixels high cannot show more


def rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _x(seconds: float | None, offset: float) -> float | None:
    """Source-timeline seconds -> epoch milliseconds on the page's axis (None stays None)."""
    return None if seconds is None else round((seconds + offset) * 1000.0, 1)


def _lead_description(incident: Incident) -> str:
    return incident.lead.description


class LiveBoard:
    def __init__(
        self,
        offset: float,
        decimator: Decimator | None = None,
        title: Callable[[Incident], str] = _lead_description,
    ) -> None:
        self.offset = offset
        self.title = title  # an incident's title, as its Atlas issue has it
        self.decimator = decimator or Decimator()
        self._anomalies: OrderedDict[str, Anomaly] = OrderedDict()
        self._incidents: OrderedDict[str, Incident] = OrderedDict()
        self._labels: deque[dict[str, Any]] = deque(maxlen=MAX_LABELS)
        self.version = 0  # bumped by every event: the page's marks changed
        self.listener: Callable[[], None] | None = None  # told of every change (the page's push loops)

    # -- inputs -------------------------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        self.decimator.on_frame(frame)

    def on_anomaly_events(self, events: Iterable[AnomalyEvent]) -> None:
        for event in events:
            anomaly = event.anomaly
            self._anomalies[anomaly.id] = anomaly
            self._anomalies.move_to_end(anomaly.id)
        _trim(self._anomalies, lambda a: a.is_open)
        self._changed()

    def on_incident_events(self, events: Iterable[IncidentEvent]) -> None:
        for event in events:
            incident = event.incident
            self._incidents[incident.id] = incident
            self._incidents.move_to_end(incident.id)
        _trim(self._incidents, lambda i: i.is_open)
        self._changed()

    def on_inference(self, label: str, score: float | None, wall: float, anomalous: bool) -> None:
        self._labels.append(
            {"label": label, "score": rounded(score), "at": round(wall * 1000.0), "anomalous": anomalous}
        )
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        if self.listener is not None:
            self.listener()

    # -- documents ----------------------------------------------------------------------------------

    def traces(self, level: int, since: dict[str, int] | None = None) -> dict[str, Any]:
        """Buckets of `level` per source: all kept ones, or from the bucket numbers in `since` (the
        page's running bucket, which has grown since). `first`: the first bucket's number, `x0` its
        start on the page's axis, `dx` the bucket width (ms)."""
        out: dict[str, Any] = {}
        for source in self.decimator.sources():
            found = self.decimator.buckets(source, level, None if since is None else since.get(source))
            if found is not None:
                out[source] = self._bucket_doc(found)
        return out

    def _bucket_doc(self, found: Buckets) -> dict[str, Any]:
        width = WIDTHS[found.level]
        return {
            "first": found.first,
            "x0": _x(found.start(0), self.offset),
            "dx": width * 1000.0,
            "lo": {ch: [rounded(v) for v in values] for ch, values in found.lo.items()},
            "hi": {ch: [rounded(v) for v in values] for ch, values in found.hi.items()},
        }

    def anomalies(self) -> list[dict[str, Any]]:
        return [self._anomaly_doc(a) for a in self._anomalies.values()]

    def _anomaly_doc(self, a: Anomaly) -> dict[str, Any]:
        return {
            "id": a.id,
            "source": a.source,
            "channel": a.channel,  # "" a lens anomaly (the whole source), "*" a dropout of every channel
            "kind": a.kind,
            "severity": a.severity,
            "description": a.description,
            "threshold": a.threshold,
            "label": a.label,
            "peak": rounded(a.peak_value),
            "x0": _x(a.started_mono, self.offset),
            "opened": _x(a.opened_mono, self.offset),
            "x1": _x(a.ended_mono, self.offset),
            "closed": _x(a.closed_mono, self.offset),
            "open": a.is_open,
        }

    def marks(self) -> dict[str, list[dict[str, Any]]]:
        """What the page shades on the traces: the anomalies and the incidents kept."""
        return {"anomalies": self.anomalies(), "incidents": self.incidents()}

    def incidents(self) -> list[dict[str, Any]]:
        return [
            {
                "id": i.id,
                "title": self.title(i),
                "severity": i.severity,
                "sources": list(i.sources),
                "channels": list(i.channels),
                "members": [m.id for m in i.members],
                "x0": _x(i.started_mono, self.offset),
                "x1": _x(i.ended_mono, self.offset),
                "closed": _x(i.closed_mono, self.offset),
                "open": i.is_open,
            }
            for i in self._incidents.values()
        ]

    def labels(self) -> list[dict[str, Any]]:
        return list(self._labels)

    def summary(self) -> dict[str, Any]:
        tap = self.decimator
        return {
            "channels": tap.channel_count,
            "channels_refused": tap.channels_refused,
            "bytes": tap.nbytes(),
        }


def levels_doc() -> list[dict[str, float]]:
    return [
        {"level": level, "width_s": WIDTHS[level], "span_s": SPANS[level], "buckets": BUCKETS}
        for level in range(len(WIDTHS))
    ]


def _trim(marks: OrderedDict[str, Any], is_open: Callable[[Any], bool]) -> None:
    """At most MAX_MARKS: the oldest closed ones go first, then (a storm of open ones) the oldest."""
    excess = len(marks) - MAX_MARKS
    if excess <= 0:
        return
    closed: Sequence[str] = [key for key, mark in marks.items() if not is_open(mark)][:excess]
    for key in closed:
        del marks[key]
    while len(marks) > MAX_MARKS:
        marks.popitem(last=False)
