"""A test step's outcome from what happened during it (pure, property-tested).

- `failed` when a high-severity anomaly overlapped the step, or the step's own verdict says FAIL;
- `passed_with_exception` when only lower-severity anomalies overlapped it (the `exception` note names
  them and the Atlas issue each one is in: Atlas means that field for this status);
- `passed` otherwise. A PASS verdict never hides an anomaly: the worse of the two wins.

Verdicts (a marker's PASS/FAIL, or the control API's PASS/FAIL/ERROR/SKIP): FAIL and ERROR (the test
itself broke: a fixture, a setup or a teardown) fail the step; SKIP means the step was not carried out,
so without anomalies it stays `todo` (Atlas's "not executed"); anomalies during it still give their
outcome, since the device misbehaved while the bench was in that step.

Spans are closed intervals on their source's timeline (edge_agent.serial.clock: monotonic seconds on
the device's clock or the host's); an anomaly still open has `end` None and overlaps everything from
its start on. A step's bounds can be given per source (`per_source`), each on that source's timeline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_NOTE_CHARS = 2000  # Atlas documents no limit for `exception`; a note is for a human to read


@dataclass(frozen=True, slots=True)
class AnomalySpan:
    anomaly_id: str
    severity: str  # low | medium | high
    label: str  # what a human reads in the note: "supply_v above max 12.6 (peak 13.1)" (headline.py)
    start: float
    end: float | None = None
    source: str = ""  # whose timeline start and end are on ("" : unknown, compared with the step's own)
    incident_id: str = ""  # the incident (one Atlas issue) it belongs to, once known


@dataclass(frozen=True, slots=True)
class Outcome:
    execution_status: str  # passed | passed_with_exception | failed | todo (skipped)
    exception: str | None = None


def overlaps(start: float, end: float, span: AnomalySpan) -> bool:
    return span.start <= end and (span.end is None or span.end >= start)


ISSUE_PLACEHOLDER = re.compile(r"\{issue:([A-Za-z0-9][A-Za-z0-9_.-]*)\}")


def name_issues(text: str, issue_of: Mapping[str, str]) -> str:
    """`text` as Atlas shows it: each `{issue:<incident-id>}` replaced by that incident's Atlas issue id
    where `issue_of` knows it, else by "pending (incident <id>)". The one rendering of a step's note:
    the outcome job sends it (steps/jobs.py), /status and the live page show it (StepTracker)."""
    return ISSUE_PLACEHOLDER.sub(lambda m: issue_of.get(m[1]) or f"pending (incident {m[1]})", text)


def issue_placeholder(incident_id: str) -> str:
    """Where the note names an incident's Atlas issue; the outcome job puts the issue's id there when it
    is delivered (steps/jobs.py), since the issue may not be filed yet when the step ends."""
    return f"{{issue:{incident_id}}}"


def _name(span: AnomalySpan) -> str:
    where = (
        f"issue {issue_placeholder(span.incident_id)}" if span.incident_id else f"anomaly {span.anomaly_id}"
    )
    return f"{span.label} [{span.severity}, {where}]"


def step_outcome(
    start: float,
    end: float,
    anomalies: Sequence[AnomalySpan],
    verdict: str | None = None,
    per_source: Mapping[str, tuple[float, float]] | None = None,
) -> Outcome:
    """The step [start, end]'s outcome given the anomalies and the verdict its end marker carried.
    `per_source[s]`, when present, is the step's [start, end] on source s's timeline."""
    bounds = per_source or {}
    hit = [a for a in anomalies if overlaps(*bounds.get(a.source, (start, end)), a)]
    high = [a for a in hit if a.severity == "high"]
    said = (verdict or "").upper()
    failed_by_verdict = said in ("FAIL", "ERROR")
    if high or failed_by_verdict:
        parts = []
        if failed_by_verdict:
            parts.append(f"step verdict {said}")
        if hit:
            parts.append("anomalies during the step: " + "; ".join(_name(a) for a in hit))
        return Outcome("failed", _cut("; ".join(parts)))
    if hit:
        return Outcome(
            "passed_with_exception", _cut("anomalies during the step: " + "; ".join(_name(a) for a in hit))
        )
    if said == "SKIP":
        return Outcome("todo", None)
    return Outcome("passed", None)


def _cut(note: str) -> str:
    return note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 1] + "…"
