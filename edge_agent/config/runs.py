"""The test run: `[steps]`, where its steps come from (markers, the API or a plan), and `[analysis]`,
Atlas's report of it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.config.values import Interval, Section


class PlanStep(Section):
    title: str = Field(min_length=1, max_length=100)
    description: str = ""


class PlanCard(Section):
    title: str = Field(min_length=1)
    description: str = ""
    steps: list[PlanStep] = Field(default_factory=list)


class StepsPlan(Section):
    run_title: str = "{bench} run {started:%Y-%m-%d %H:%M}"
    system_id: str = ""
    cards: list[PlanCard] = Field(default_factory=list)


class StepsSection(Section):
    source: Literal["markers", "api", "plan"] = "markers"
    test_run_id: str = ""
    system_id: str = ""
    plan: StepsPlan | None = None


class AnalysisSection(Section):
    """Atlas's analysis report of each test run (edge_agent/analysis): requested when the run ends,
    polled until it is finished, its summary posted on the run's issues and shown on /status."""

    enabled: bool = Field(
        True,
        description="When a test run ends (a clean shutdown, or POST /runs/end) ask Atlas for its analysis"
        " report of the run; needs Atlas and a test run (steps.test_run_id or a system id).",
    )
    per_failed_step: bool = Field(
        False, description="Also ask for a report of each step that ends failed (scope step)."
    )
    comment_on_issues: bool = Field(
        True, description="Post each finished report's summary as a comment on the issues of its run or step."
    )
    # An AI analysis over a run's files is minutes; the polls back off to outbox.retry_cap, so an hour is
    # about 60 polls. Counted on the outbox's clock: time the agent spent polling, not its downtime.
    poll_timeout: Interval = Field(
        3600.0,
        description="A report not finished after this long of polling is given up (said on /status).",
    )
