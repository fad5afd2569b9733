"""Test steps: which step is running (markers, control API, config plan) and its Atlas outcome.

`outcome.py` is the pure outcome rule, `tracker.py` the component (with `atlas_objects.py`, `spans.py`,
`state_file.py`, `titles.py`), `jobs.py` its outbox handlers.
"""

from edge_agent.steps.outcome import AnomalySpan, Outcome, overlaps, step_outcome
from edge_agent.steps.tracker import StepTracker

__all__ = ["AnomalySpan", "Outcome", "StepTracker", "overlaps", "step_outcome"]
