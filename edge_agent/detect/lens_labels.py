"""Lens inferences -> anomaly condition (sans-I/O).

A label is anomalous when it is one of the configured `anomaly_labels` (compared case-insensitively,
surrounding blanks ignored: lenses are configured by hand and "Fault" vs "fault" must not hide a
fault); `unknown` never is, even if listed, since it is what a lens says when it cannot tell. With
`min_score` set, an anomalous label also needs a score >= min_score, and a label without a score does
not pass (a threshold that cannot be checked is not met). A NaN or infinite score is no score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Protocol

NEVER_ANOMALOUS = "unknown"


class InferenceLike(Protocol):
    """What detection needs of a lens inference (`edge_agent.lens.protocol.LensInference` fits)."""

    @property
    def label(self) -> str: ...
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def source(self) -> str: ...
    @property
    def window_start(self) -> float | None: ...  # Unix seconds, when known
    @property
    def window_end(self) -> float | None: ...


def _norm(label: str) -> str:
    return label.strip().casefold()


class LensLabelCheck:
    measure = "score"

    def __init__(self, anomaly_labels: Iterable[str], min_score: float | None = None) -> None:
        self.labels = frozenset(_norm(x) for x in anomaly_labels if _norm(x) and _norm(x) != NEVER_ANOMALOUS)
        self.min_score = min_score
        shown = ", ".join(sorted(self.labels)) or "(none)"
        floor = f", score >= {min_score:g}" if min_score is not None else ""
        self.threshold = f"label in {{{shown}}}{floor}"

    def describe(self) -> str:
        return f"lens says {self.threshold}"

    def score_of(self, inference: InferenceLike) -> float | None:
        """The label's score; None when there is none, or when it is NaN or ±inf (not a score)."""
        scores = inference.scores
        score = scores.get(inference.label)
        if score is None:
            wanted = _norm(inference.label)
            for name, value in scores.items():
                if _norm(name) == wanted:
                    score = value
                    break
        return score if score is not None and math.isfinite(score) else None

    def is_anomalous(self, inference: InferenceLike) -> bool:
        if _norm(inference.label) not in self.labels:
            return False
        if self.min_score is None:
            return True
        score = self.score_of(inference)
        return score is not None and score >= self.min_score
