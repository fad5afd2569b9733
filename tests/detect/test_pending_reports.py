"""`Detector.pending_reports`: the rules' conditions in progress that the rule has not reported (yet),
each with its key, its start (what the anomaly's `started_mono` will be) and its rule's delay - what the
incident grouper waits for instead of the rules' longest configured delay."""

from __future__ import annotations

from detect_helpers import detector, frame, rule

from edge_agent.detect import AnomalyOpened, Detector
from edge_agent.detect.anomaly import AnomalyKey, PendingReport
from edge_agent.frames import LinkEvent, LinkState


def starts(d: Detector) -> dict[str, tuple[float, float]]:
    """channel -> (start, delay) of each condition in progress (one per channel in these tests)."""
    return {r.key.channel: (r.started_mono, r.delay) for r in d.pending_reports()}


def test_nothing_is_in_progress_before_the_first_frame_nor_on_quiet_limits() -> None:
    d = detector([rule(channel="v", kind="limits", max=1.0, hold=4.0)])
    assert d.pending_reports() == []
    for n in range(10):
        assert not d.on_frame(frame(n * 0.1, v=0.5))
    assert d.pending_reports() == []


def test_a_held_excursion_is_in_progress_from_its_first_sample_until_it_opens_or_clears() -> None:
    d = detector([rule(channel="v", kind="limits", max=1.0, hold=4.0)])
    d.on_frame(frame(0.0, v=0.5))
    d.on_frame(frame(1.0, v=2.0))
    d.on_frame(frame(2.0, v=2.0))
    assert d.pending_reports() == [PendingReport(AnomalyKey("rule0:limits", "bench", "v"), 1.0, 4.0)]
    d.on_frame(frame(2.5, v=0.5))  # cleared before its hold: never reported
    assert d.pending_reports() == []
    d.on_frame(frame(3.0, v=2.0))
    assert starts(d) == {"v": (3.0, 4.0)}
    (opened,) = d.on_frame(frame(7.0, v=2.0))
    assert isinstance(opened, AnomalyOpened) and opened.anomaly.started_mono == 3.0
    assert d.pending_reports() == []  # reported: an open anomaly is a member, not a wait


def test_a_stuck_run_is_in_progress_from_the_last_change() -> None:
    """Every channel a stuck rule watches is "unchanged since its last change": a changing one since its
    last sample, a frozen one since it froze (its anomaly is backdated there when it reports)."""
    d = detector([rule(channel="flow", kind="stuck", stuck_for=300.0, hold=1.0)])
    for n in range(5):
        d.on_frame(frame(float(n), flow=float(n)))
    assert starts(d) == {"flow": (4.0, 301.0)}
    for n in range(5, 10):
        d.on_frame(frame(float(n), flow=4.0))
    assert starts(d) == {"flow": (4.0, 301.0)}
    d.on_frame(frame(304.0, flow=4.0))  # stuck now, held 1 s before it opens: a streak from the change
    assert starts(d) == {"flow": (4.0, 301.0)}
    (opened,) = d.on_frame(frame(305.0, flow=4.0))
    assert isinstance(opened, AnomalyOpened) and opened.anomaly.started_mono == 4.0
    assert d.pending_reports() == []


def test_a_silence_is_in_progress_from_the_last_frame_until_its_dropout_opens() -> None:
    d = detector([rule(channel="*", kind="dropout", dropout_after=5.0)])
    assert d.pending_reports() == []  # no gap clock yet
    d.on_frame(frame(0.0, v=1.0))
    d.on_frame(frame(1.0, v=1.0))
    assert d.pending_reports() == [PendingReport(AnomalyKey("rule0:dropout", "bench", "*"), 1.0, 5.0)]
    (opened,) = d.tick(6.0, 6.0)
    assert isinstance(opened, AnomalyOpened) and opened.anomaly.started_mono == 1.0
    assert d.pending_reports() == []


def test_an_unplug_reports_at_once_and_leaves_nothing_in_progress() -> None:
    d = detector([rule(channel="*", kind="dropout", dropout_after=5.0)])
    d.on_frame(frame(1.0, v=1.0))
    d.on_link(LinkEvent("bench", LinkState.DOWN, 2.0, 2.0, "unplugged"))
    assert d.pending_reports() == []


def test_each_source_and_rule_has_its_own() -> None:
    d = detector(
        [
            rule(channel="v", kind="limits", max=1.0, hold=2.0),
            rule(channel="w", kind="stuck", stuck_for=60.0, source="b"),
        ]
    )
    d.on_frame(frame(0.0, "a", v=2.0, w=1.0))
    d.on_frame(frame(0.5, "b", v=0.0, w=1.0))
    reports = sorted(d.pending_reports())
    assert reports == [
        PendingReport(AnomalyKey("rule0:limits", "a", "v"), 0.0, 2.0),
        PendingReport(AnomalyKey("rule1:stuck", "b", "w"), 0.5, 60.0),
    ]
