"""Helpers shared by the Detector tests: rules as the config gives them, a Detector with numbered
anomaly ids, and frames on a host timeline starting at 0 (wall time WALL0 + t)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from edge_agent.config import LensSection, RuleSection
from edge_agent.detect import Detector
from edge_agent.frames import Frame

WALL0 = 1_700_000_000.0


def rule(**kwargs: Any) -> RuleSection:
    return RuleSection.model_validate(kwargs)


def detector(rules: Sequence[RuleSection], lens: LensSection | None = None, **kwargs: Any) -> Detector:
    """A Detector whose anomalies are numbered a1, a2, ...; `kwargs` go to the Detector."""
    numbers = itertools.count(1)
    return Detector(rules, lens, new_id=lambda: f"a{next(numbers)}", **kwargs)


def frame(t: float, source: str = "bench", **values: float) -> Frame:
    return Frame(source=source, mono=t, wall=WALL0 + t, values=dict(values))
