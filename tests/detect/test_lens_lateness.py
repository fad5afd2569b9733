"""How late the lens reports its anomalies, as the detector measures it for the incident grouper."""

from __future__ import annotations

from detect_helpers import WALL0, detector

from edge_agent.config import LensSection
from edge_agent.detect.lens_lateness import MEMORY
from edge_agent.lens.protocol import LensInference


def verdict(label: str, start: float, end: float, received: float, source: str = "bench") -> LensInference:
    return LensInference(
        label=label, scores={}, source=source, session_id="lsn-1",
        window_start=WALL0 + start, window_end=WALL0 + end, received_at=WALL0 + received,
    )  # fmt: skip


def test_every_verdict_measures_how_late_a_lens_anomaly_can_be_reported() -> None:
    """A window of 19.0-19.98 s answered at 21.5: an anomaly starting with it is reported 2.5 s after
    its start, on the source's timeline; normal verdicts count too (known before the first fault)."""
    d = detector([], LensSection(anomaly_labels=["fault"]))
    assert d.report_lateness() == {}
    assert d.on_inference(verdict("normal", 19.0, 19.98, 21.5), 121.5, WALL0 + 21.5) == []
    assert d.report_lateness() == {"bench": 2.5}
    # The bound is the largest of the recent verdicts, per source.
    d.on_inference(verdict("normal", 20.0, 20.98, 21.8), 121.8, WALL0 + 21.8)
    d.on_inference(verdict("normal", 5.0, 5.5, 6.0, source="other"), 106.0, WALL0 + 6.0)
    assert d.report_lateness() == {"bench": 2.5, "other": 1.0}
    # ... and comes back down once the slow ones are past.
    for k in range(MEMORY):
        d.on_inference(verdict("normal", 30.0 + k, 30.98 + k, 31.5 + k), 131.5 + k, WALL0 + 31.5 + k)
    assert d.report_lateness()["bench"] == 1.5


def test_a_lens_that_needs_several_windows_in_a_row_reports_the_streak_start_that_much_later() -> None:
    """anomaly_hold_windows = 3: the anomaly starts with the first window and opens with the third's
    verdict, two steps (here a window's span each: step = window) later."""
    lens = LensSection(anomaly_labels=["fault"], window_size=51, step_size=50, anomaly_hold_windows=3)
    d = detector([], lens)
    d.on_inference(verdict("normal", 10.0, 11.0, 12.5), 112.5, WALL0 + 12.5)
    assert d.report_lateness() == {"bench": 2.5 + 2 * 1.0}


def test_no_lens_nothing_is_reported_late() -> None:
    d = detector([])
    d.on_inference(verdict("fault", 19.0, 19.98, 21.5), 121.5, WALL0 + 21.5)
    assert d.report_lateness() == {}
