"""The Detector on each source's own timeline: ticks judge every source on its own now, a gap seen only
in the frames' times is still a dropout, and lens windows land on the lens source's timeline."""

from __future__ import annotations

from collections.abc import Sequence

from detect_helpers import WALL0, detector, frame, rule

from edge_agent.config import LensSection, RuleSection
from edge_agent.detect import (
    AnomalyClosed,
    AnomalyEvent,
    AnomalyOpened,
    Debounce,
    Detector,
    LensAnomalyOptions,
)
from edge_agent.frames import LinkEvent, LinkState
from edge_agent.lens.protocol import LensInference


class Timelines:
    """A fake `source_now`: each source's timeline is host time plus an offset the test sets."""

    def __init__(self, **offsets: float) -> None:
        self.offsets = offsets
        self.calls: list[tuple[str, float]] = []

    def __call__(self, source: str, host_mono: float) -> float:
        self.calls.append((source, host_mono))
        return host_mono + self.offsets.get(source, 0.0)


def timed_detector(
    rules: Sequence[RuleSection], timelines: Timelines, lens: LensSection | None = None
) -> Detector:
    options = LensAnomalyOptions(severity="high", debounce=Debounce(clear_after=2.0))
    return detector(rules, lens, source_now=timelines, lens_options=options)


def summary(events: Sequence[AnomalyEvent]) -> list[tuple[str, str, str]]:
    return [(type(e).__name__, e.anomaly.source, e.anomaly.kind) for e in events]


def test_tick_judges_each_sources_dropout_on_that_sources_now() -> None:
    """Source `fast` runs 100 s ahead of the host (a replay), `slow` 100 s behind (a late anchor): a
    tick on host time would call `slow` silent for ever and `fast` never; on their own nows neither is."""
    timelines = Timelines(fast=100.0, slow=-100.0)
    d = timed_detector([rule(channel="*", kind="dropout", dropout_after=1.0)], timelines)
    assert d.on_frame(frame(110.0, "fast", v=1.0)) == ()
    assert d.on_frame(frame(-90.0, "slow", v=1.0)) == ()
    assert d.tick(10.5, WALL0) == []  # both sources' last frames are 0.5 s old on their own timelines
    assert ("fast", 10.5) in timelines.calls and ("slow", 10.5) in timelines.calls
    events = d.tick(11.2, WALL0)
    assert summary(events) == [
        ("AnomalyOpened", "fast", "rule:dropout"),
        ("AnomalyOpened", "slow", "rule:dropout"),
    ]
    assert {e.anomaly.source: e.anomaly.started_mono for e in events} == {"fast": 110.0, "slow": -90.0}


def test_an_anomaly_closes_by_tick_on_its_sources_now() -> None:
    timelines = Timelines(dev=50.0)
    d = timed_detector([rule(channel="v", kind="limits", max=1.0, clear_after=2.0)], timelines)
    assert summary(d.on_frame(frame(60.0, "dev", v=5.0))) == [("AnomalyOpened", "dev", "rule:limits")]
    assert d.on_frame(frame(61.0, "dev", v=0.0)) == ()  # clear from 61 on the device's timeline
    assert d.tick(12.9, WALL0) == []  # its now: 62.9, not yet 2 s clear
    (closed,) = d.tick(13.1, WALL0)
    assert isinstance(closed, AnomalyClosed)
    assert (closed.anomaly.ended_mono, closed.anomaly.closed_mono) == (61.0, 63.1)


def test_a_gap_between_frames_is_a_dropout_even_when_no_tick_saw_it() -> None:
    """A replay at 200x: the 5 s gap passes in 25 ms of host time, between two ticks."""
    d = timed_detector([rule(channel="v", kind="dropout", dropout_after=1.0, clear_after=0.5)], Timelines())
    events: list[AnomalyEvent] = []
    for t in (0.0, 0.1, 0.2, 5.2, 5.3, 5.8):
        events += d.on_frame(frame(t, v=1.0))
    assert summary(events) == [
        ("AnomalyOpened", "bench", "rule:dropout"),
        ("AnomalyClosed", "bench", "rule:dropout"),
    ]
    opened, closed = events
    assert isinstance(opened, AnomalyOpened) and isinstance(closed, AnomalyClosed)
    # The same anomaly a tick at 1x would have given: from the last frame before the gap to the first after.
    assert (opened.anomaly.started_mono, opened.anomaly.opened_mono) == (0.2, 1.2)
    assert (closed.anomaly.ended_mono, closed.anomaly.closed_mono) == (5.2, 5.8)
    assert closed.anomaly.peak_value == 5.0  # seconds without frames


def test_a_gap_a_tick_already_opened_is_not_opened_twice() -> None:
    d = timed_detector([rule(channel="v", kind="dropout", dropout_after=1.0, clear_after=0.0)], Timelines())
    d.on_frame(frame(0.0, v=1.0))
    assert summary(d.tick(1.5, WALL0)) == [("AnomalyOpened", "bench", "rule:dropout")]
    (closed,) = d.on_frame(frame(3.0, v=1.0))
    assert isinstance(closed, AnomalyClosed) and closed.anomaly.started_mono == 0.0
    assert closed.anomaly.ended_mono == 3.0


def test_a_gap_shorter_than_hold_is_no_dropout() -> None:
    d = timed_detector([rule(channel="v", kind="dropout", dropout_after=1.0, hold=2.0)], Timelines())
    for t in (0.0, 2.5, 2.6):  # condition held 1.5 s (from 1.0 to 2.5): less than the hold
        assert d.on_frame(frame(t, v=1.0)) == ()
    opened = [e for t in (10.0,) for e in d.on_frame(frame(t, v=1.0))]
    assert summary(opened) == [("AnomalyOpened", "bench", "rule:dropout")]  # held 6.4 s: opens


def test_link_events_on_the_timeline_and_the_unplug_path_is_unchanged() -> None:
    d = timed_detector([rule(channel="*", kind="dropout", dropout_after=1.0, clear_after=0.0)], Timelines())
    d.on_frame(frame(1.0, v=1.0))
    events = d.on_link(LinkEvent("bench", LinkState.DOWN, 1.2, WALL0, "unplugged"))
    assert summary(events) == [("AnomalyOpened", "bench", "rule:dropout")]
    (closed,) = d.on_link(LinkEvent("bench", LinkState.UP, 4.0, WALL0))
    assert isinstance(closed, AnomalyClosed) and closed.anomaly.threshold == "serial link down: unplugged"
    assert d.on_frame(frame(4.5, v=1.0)) == ()  # within dropout_after of the link coming up
    # No frame for 3.5 s after that: a dropout, as a tick would have seen it.
    assert [type(e).__name__ for e in d.on_frame(frame(8.0, v=1.0))] == ["AnomalyOpened", "AnomalyClosed"]


def test_close_all_closes_each_anomaly_at_its_sources_now() -> None:
    timelines = Timelines(a=1000.0)
    d = timed_detector([rule(channel="v", kind="limits", max=1.0)], timelines)
    d.on_frame(frame(1001.0, "a", v=5.0))
    d.on_frame(frame(2.0, "b", v=5.0))
    closed = {e.anomaly.source: e.anomaly.closed_mono for e in d.close_all(3.0, WALL0)}
    assert closed == {"a": 1003.0, "b": 3.0}


def test_lens_window_times_map_onto_the_lens_sources_timeline() -> None:
    timelines = Timelines(bench=500.0)
    d = timed_detector([], timelines, LensSection(anomaly_labels=["fault"]))
    inference = LensInference(
        label="fault", scores={"fault": 0.9}, source="bench", session_id="lsn-1",
        window_start=WALL0 + 8.0, window_end=WALL0 + 9.0, received_at=WALL0 + 10.0,
    )  # fmt: skip
    (opened,) = d.on_inference(inference, 10.0, WALL0 + 10.0)
    # The window ended 1 s before receipt: 1 s before the lens source's now (510), not the host's (10).
    assert (opened.anomaly.started_mono, opened.anomaly.opened_mono) == (508.0, 509.0)
