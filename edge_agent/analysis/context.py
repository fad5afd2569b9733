"""What the agent tells Atlas when it asks for a report, and what it posts of the answer (pure).

`analysis_context` ("free-text guidance for the analysis", the test-runs page) carries the run as the
agent saw it: each step's outcome with its note, and each incident of the run (one Atlas issue each)
with its issue's id. Issue ids are written `{issue:<incident-id>}` and filled in when the request is
sent (steps/jobs.py `fill_issue_placeholders`): an issue may be filed after the run ended, when Atlas
was down. The page documents no length limit; the text is cut at MAX_CONTEXT_CHARS, the limit Atlas
sets on its other free texts (comments, memories), with a last line saying what was left out.

Every summary comment carries the marker line `edge-agent:report:<key>`: a comment job that runs again
(a lost answer, a restart, two incidents of the run sharing one issue) finds it instead of posting twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.atlas.narrative import TAG_PREFIX, finish_comment
from edge_agent.steps.outcome import issue_placeholder

MAX_CONTEXT_CHARS = 10_000
# A step's note in the context: enough to say what went wrong; the step itself holds the whole note.
MAX_NOTE_CHARS = 300
STATUS_ORDER = ("failed", "passed_with_exception", "passed", "done", "todo")


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    card: str
    status: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    incident_id: str
    title: str
    severity: str


def report_marker(key: str) -> str:
    return f"{TAG_PREFIX}report:{key}"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line: a note's line breaks would break the list
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    opened = cut.rfind("{issue:")
    if opened >= 0 and "}" not in cut[opened:]:
        cut = cut[:opened]  # never half a placeholder: it could not be filled in
    return cut + "…"


def _counts(steps: Sequence[StepRecord]) -> str:
    counts = Counter(s.status for s in steps)
    order = [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
    return ", ".join(f"{counts[status]} {status}" for status in order if counts[status])


def _step_line(step: StepRecord) -> str:
    line = f"- {step.card} / {step.step}: {step.status}"
    return line + (f" ({_cut(step.note, MAX_NOTE_CHARS)})" if step.note else "")


def _incident_line(incident: IncidentRecord) -> str:
    title = _cut(incident.title, 200)
    return f"- issue {issue_placeholder(incident.incident_id)}: {title} [{incident.severity}]"


def run_context(
    bench: str,
    steps: Sequence[StepRecord],
    incidents: Sequence[IncidentRecord],
    *,
    steps_left_out: int = 0,
    incidents_left_out: int = 0,
) -> str:
    """The context of a run's report: its steps' outcomes (failed first) and its incidents' issues."""
    total = len(steps) + steps_left_out
    head = [
        f"Test run on bench {bench}, marked by edge-agent: {total} step(s)"
        + (f" ({_counts(steps)})" if steps else "")
        + f", {len(incidents) + incidents_left_out} incident(s) filed as Atlas issues.",
    ]
    ordered = sorted(steps, key=lambda s: STATUS_ORDER.index(s.status) if s.status in STATUS_ORDER else 99)
    body = ["Step outcomes:", *(_step_line(s) for s in ordered)] if steps else []
    if steps_left_out:
        body.append(f"- ... {steps_left_out} more step(s) not listed")
    if incidents:
        body += ["Incidents during the run (Atlas issues):", *(_incident_line(i) for i in incidents)]
    if incidents_left_out:
        body.append(f"- ... {incidents_left_out} more incident(s) not listed")
    return _fit(head, body)


def step_context(bench: str, step: StepRecord, incidents: Sequence[IncidentRecord]) -> str:
    """The context of a failed step's report: the step's outcome and the incidents during it."""
    head = [f"Test step on bench {bench}, marked by edge-agent:", _step_line(step)]
    body = ["Incidents during the step (Atlas issues):", *(_incident_line(i) for i in incidents)]
    return _fit(head, body if incidents else [])


def _fit(head: list[str], body: list[str]) -> str:
    """The lines within MAX_CONTEXT_CHARS once the placeholders are filled (an issue id is 36
    characters; the placeholder of a long incident id may be longer, so the margin is per line)."""
    lines = list(head)
    used = sum(len(line) + 40 + 1 for line in lines)
    for index, line in enumerate(body):
        cost = len(line) + 40 + 1
        if used + cost > MAX_CONTEXT_CHARS - 80:
            lines.append(f"... {len(body) - index} more line(s) left out (the context is limited).")
            break
        lines.append(line)
        used += cost
    return "\n".join(lines)


def summary_comment(
    *, summary: str, title: str, scope: str, subject: str, report_id: str, run_id: str, key: str
) -> str:
    """The comment that brings a finished report's summary to an issue of its run (or step)."""
    lines = [
        f'Atlas analysed {subject} (report "{title}", scope {scope}):',
        "",
        summary.strip(),
        "",
        f"Full report: test run {run_id}, report {report_id}.",
    ]
    return finish_comment(lines, [], report_marker(key))
