"""Atlas's analysis report of each test run: `analyst.py` the component (what a run was, when it
ends, where its report is), `jobs.py` the outbox handlers (request, poll, post the summary),
`context.py` the texts (the `analysis_context` sent, the summary comment posted), `status.py` where
each report is (for /status)."""

from edge_agent.analysis.analyst import RunAnalysis

__all__ = ["RunAnalysis"]
