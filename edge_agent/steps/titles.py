"""The Atlas step and card titles of a started step: a plan's step title when the name is one of the
plan's (exactly, else ignoring case), else the name itself, cut to Atlas's limit and numbered when the
run already has a step of that title."""

from __future__ import annotations

from collections.abc import Container

from edge_agent.atlas.client import MAX_STEP_TITLE_CHARS
from edge_agent.config import PlanCard, StepsSection


def plan_card(section: StepsSection, name: str) -> tuple[PlanCard, str] | None:
    """The plan card holding the step `name` and that step's title, or None (no plan, or not in it)."""
    plan = section.plan
    if plan is None:
        return None
    for exact in (True, False):
        for card in plan.cards:
            for step in card.steps:
                if step.title == name if exact else step.title.casefold() == name.casefold():
                    return card, step.title
    return None


def step_title(
    section: StepsSection, bench: str, taken: Container[str], name: str, card: str | None
) -> tuple[str, str]:
    """(step title, card title) for a started step name; `taken`: the run's step titles so far."""
    planned = plan_card(section, name)
    if planned is not None:
        return planned[1], planned[0].title
    card_title = card or (f"{bench} unplanned steps" if section.plan else f"{bench} steps")
    title = name.strip()[:MAX_STEP_TITLE_CHARS] or "step"
    # A step name run twice in one run is two Atlas steps: "name (2)", ...
    base, n = title, 1
    while title in taken:
        n += 1
        suffix = f" ({n})"
        title = base[: MAX_STEP_TITLE_CHARS - len(suffix)] + suffix
    return title, card_title
