"""Test steps of a recording from its `#STEP` marker lines, with the agent's outcome rule.

The same sequencing as the live `StepTracker` (edge_agent/steps/tracker.py), without Atlas: a START
while a step runs ends that step first (its note says so), an END that names no running step is
ignored (counted), a step name run twice is "name (2)", and each END's outcome is `step_outcome` over
the anomalies known at that moment (edge_agent/steps/outcome.py), anomalies that ended before a step
ended being forgotten after it. With `steps.source = "api"` markers are ignored, as the agent ignores
them. A step still running at the end of the recording ends there, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.atlas.headline import BenchPorts, describe_anomaly
from edge_agent.detect.anomaly import AnomalyClosed, AnomalyEvent, AnomalyUpdated
from edge_agent.frames import StepEdge, StepMarker
from edge_agent.steps.outcome import AnomalySpan, step_outcome


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    title: str
    start_row: int | None  # the first data row after the START marker (None: there is none)
    end_row: int | None  # the last data row before the END marker (None: there is none)
    start_line: int
    end_line: int | None  # None: still running when the recording ended
    start_t: float
    end_t: float
    verdict: str | None
    execution_status: str
    exception: str | None


@dataclass(slots=True)
class _Running:
    name: str
    title: str
    row: int | None
    line: int
    t: float


class StepReplay:
    def __init__(self, ports: BenchPorts, source: str = "markers") -> None:
        """`ports`: the bench's, so that the notes say what the agent's would (StepSpans)."""
        self._ports = ports
        self.ignore_markers = source == "api"
        self.results: list[StepResult] = []
        self.ignored_markers = 0
        self.unmatched_ends = 0
        self._spans: dict[str, AnomalySpan] = {}
        self._titles: set[str] = set()
        self._running: _Running | None = None

    def on_anomaly_event(self, event: AnomalyEvent) -> None:
        if isinstance(event, AnomalyUpdated):
            return
        a = event.anomaly
        end = None
        if isinstance(event, AnomalyClosed):
            end = a.ended_mono if a.ended_mono is not None else a.closed_mono
        self._spans[a.id] = AnomalySpan(
            a.id, a.severity, describe_anomaly(a, self._ports), a.started_mono, end
        )

    def on_marker(
        self, marker: StepMarker, t: float, row_after: int | None, row_before: int | None, line: int
    ) -> None:
        """A marker line at timeline time `t`, between data rows `row_before` and `row_after`."""
        if self.ignore_markers:
            self.ignored_markers += 1
            return
        if marker.edge is StepEdge.START:
            if self._running is not None:
                self._end(None, t, row_before, line, note=f"ended by the start of {marker.name!r}")
            self._running = _Running(marker.name, self._title(marker.name), row_after, line, t)
            return
        running = self._running
        if running is None or running.name != marker.name:
            self.unmatched_ends += 1
            return
        self._end(marker.verdict.value if marker.verdict else None, t, row_before, line)

    def finish(self, t: float, row: int | None) -> None:
        if self._running is not None:
            self._end(None, t, row, None, note="still running at the end of the recording")

    def _title(self, name: str) -> str:
        title, n = name.strip() or "step", 1
        base = title
        while title in self._titles:
            n += 1
            title = f"{base} ({n})"
        self._titles.add(title)
        return title

    def _end(self, verdict: str | None, t: float, row: int | None, line: int | None, note: str = "") -> None:
        running = self._running
        assert running is not None
        outcome = step_outcome(running.t, t, list(self._spans.values()), verdict)
        exception = outcome.exception
        if note:
            exception = f"{note}; {exception}" if exception else note
        self.results.append(
            StepResult(
                name=running.name,
                title=running.title,
                start_row=running.row,
                end_row=row,
                start_line=running.line,
                end_line=line,
                start_t=running.t,
                end_t=t,
                verdict=verdict,
                execution_status=outcome.execution_status,
                exception=exception,
            )
        )
        self._running = None
        self._spans = {k: s for k, s in self._spans.items() if s.end is None or s.end >= t}
