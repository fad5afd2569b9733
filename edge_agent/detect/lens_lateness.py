"""How late a lens anomaly is reported after it started (sans-I/O), for the incident grouper.

A rule's anomaly reaches the grouper with the sample that confirms it; a lens anomaly only when the
lens's verdict on its window comes back: the window's whole span after its first sample, plus the
queue, the inference round trip and the read. Its start is that window's first sample, so it can
arrive well after a local anomaly of the same fault has ended: the grouper keeps an incident open
that long past its quiet period, so that such a member still joins it (one issue per physical event).

The lateness is measured on every verdict, anomalous or not (so it is known before the first lens
anomaly): the age of the window's first sample when the verdict is received, on the source's timeline,
plus, when `anomaly_hold_windows` > 1, the steps to the last window of the streak that confirms the
anomaly (its start is the first window's). The bound is the largest of the last `MEMORY` verdicts: a
lens that answers slowly for a while raises it at once, and it comes back down a minute or so after.
"""

from __future__ import annotations

from collections import deque

MEMORY = 60  # verdicts (about a minute at the lens's pace of one window a second)


class LensLateness:
    def __init__(self, *, hold_windows: int = 1, step_fraction: float = 1.0) -> None:
        """`hold_windows`: anomalous verdicts in a row before a lens anomaly opens; `step_fraction`:
        a window's step as a fraction of its span (step_size over the window's sample intervals)."""
        self.extra_steps = max(hold_windows - 1, 0) * step_fraction
        self._seen: dict[str, deque[float]] = {}

    def observe(self, source: str, start_mono: float, end_mono: float, now_mono: float) -> None:
        """A verdict on a window of `source` from `start_mono` to `end_mono`, received at `now_mono`
        (all on that source's timeline)."""
        span = max(end_mono - start_mono, 0.0)
        lateness = max(now_mono - start_mono, 0.0) + self.extra_steps * span
        self._seen.setdefault(source, deque(maxlen=MEMORY)).append(lateness)

    def by_source(self) -> dict[str, float]:
        """source -> how long after its start a lens anomaly of that source can be reported."""
        return {source: max(seen) for source, seen in self._seen.items()}
