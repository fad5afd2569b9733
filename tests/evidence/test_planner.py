"""The evidence planner's timing: pre/post edges, max-duration parts, tiling, shutdown flush, sources."""

from __future__ import annotations

import pytest

from edge_agent.config import EvidenceSection
from edge_agent.evidence import SCHEDULING_SLACK, EvidencePlanner, EvidenceWindow


def at(now: float):
    return lambda source: now


def test_short_anomaly_due_post_seconds_after_its_end() -> None:
    planner = EvidencePlanner(pre=10.0, post=5.0, max_duration=300.0)
    planner.open("a1", ("bench",), started=100.0)
    assert planner.next_due() == 400.0  # while open: the max-duration boundary
    assert planner.due(at(150.0)) == []
    planner.close("a1", ended=112.5)
    assert planner.next_due() == 117.5
    assert planner.due(at(117.4)) == []
    (window,) = planner.due(at(117.5))
    assert window == EvidenceWindow("a1", ("bench",), 1, 90.0, 117.5, 117.5, True)
    assert len(planner) == 0 and planner.due(at(1000.0)) == [] and planner.next_due() is None


def test_long_anomaly_written_in_parts_that_tile() -> None:
    planner = EvidencePlanner(pre=10.0, post=5.0, max_duration=60.0)
    planner.open("long", ("bench",), started=0.0)
    (p1,) = planner.due(at(60.0))
    assert (p1.part, p1.start, p1.end, p1.due, p1.final) == (1, -10.0, 60.0, 60.0, False)
    assert planner.due(at(100.0)) == []
    (p2,) = planner.due(at(120.0))
    assert (p2.part, p2.start, p2.end, p2.final) == (2, 60.0, 120.0, False)
    planner.close("long", ended=150.0)
    (p3,) = planner.due(at(155.0))
    assert (p3.part, p3.start, p3.end, p3.due, p3.final) == (3, 120.0, 155.0, 155.0, True)
    assert len(planner) == 0


def test_late_poll_returns_every_missed_part_in_order() -> None:
    planner = EvidencePlanner(pre=1.0, post=1.0, max_duration=10.0)
    planner.open("x", ("s",), started=0.0)
    planner.close("x", ended=25.0)
    windows = planner.due(at(1000.0))
    assert [(w.part, w.start, w.end, w.final) for w in windows] == [
        (1, -1.0, 10.0, False),
        (2, 10.0, 20.0, False),
        (3, 20.0, 26.0, True),
    ]


def test_end_on_a_boundary_is_the_final_part() -> None:
    planner = EvidencePlanner(pre=0.0, post=2.0, max_duration=10.0)
    planner.open("b", ("s",), started=0.0)
    planner.close("b", ended=10.0)
    (window,) = planner.due(at(12.0))
    assert (window.part, window.end, window.final) == (1, 12.0, True)


def test_part_span_shortened_to_what_the_ring_holds() -> None:
    section = EvidenceSection()  # ring 120 s, pre 10, post 5, max 300
    planner = EvidencePlanner.from_config(section)
    assert planner.part_span() == pytest.approx(120.0 - 10.0 - 5.0 - SCHEDULING_SLACK)
    # Every part, written when due, needs at most ring_seconds - slack of history.
    planner.open("a", ("s",), started=0.0)
    planner.close("a", ended=500.0)
    for window in planner.due(at(10_000.0)):
        assert window.due - window.start <= section.ring_seconds - SCHEDULING_SLACK + 1e-9
    assert EvidencePlanner(1.0, 1.0, 30.0, ring_seconds=600.0).part_span() == 30.0
    with pytest.raises(ValueError, match="ring_seconds"):
        EvidencePlanner(pre=10.0, post=5.0, max_duration=60.0, ring_seconds=16.0)
    with pytest.raises(ValueError):
        EvidencePlanner(pre=-1.0, post=0.0, max_duration=1.0)


def test_several_anomalies_sorted_by_due_and_duplicates_ignored() -> None:
    planner = EvidencePlanner(pre=2.0, post=3.0, max_duration=100.0)
    planner.open("late", ("a",), started=0.0)
    planner.open("early", ("b",), started=5.0)
    planner.open("early", ("b",), started=99.0)  # a repeat open does not move the start
    planner.close("late", ended=20.0)
    planner.close("early", ended=10.0)
    planner.close("early", ended=50.0)  # a second close does not move the end
    planner.close("unknown", ended=1.0)
    windows = planner.due(at(30.0))
    assert [(w.incident_id, w.start, w.end) for w in windows] == [("early", 3.0, 13.0), ("late", -2.0, 23.0)]


def test_flush_on_shutdown() -> None:
    planner = EvidencePlanner(pre=5.0, post=5.0, max_duration=50.0)
    planner.open("open", ("s",), started=10.0)
    planner.open("closing", ("s",), started=0.0)
    planner.close("closing", ended=30.0)
    assert planner.due(at(32.0)) == []
    windows = {w.incident_id: w for w in planner.flush(at(32.0))}
    assert windows["open"] == EvidenceWindow("open", ("s",), 1, 5.0, 32.0, 32.0, True)
    assert windows["closing"] == EvidenceWindow("closing", ("s",), 1, -5.0, 32.0, 32.0, True)
    assert len(planner) == 0


def test_sources_that_join_are_in_the_next_parts_and_the_lead_sources_clock_decides() -> None:
    planner = EvidencePlanner(pre=1.0, post=1.0, max_duration=10.0)
    planner.open("i", ("lead",), started=0.0)
    (p1,) = planner.due(lambda source: 10.0 if source == "lead" else 0.0)
    assert p1.sources == ("lead",)
    planner.add_sources("i", ("other", "lead"))
    planner.close("i", ended=12.0)
    assert planner.due(lambda source: 12.9 if source == "lead" else 99.0) == []  # the lead's clock
    (p2,) = planner.due(lambda source: 13.0 if source == "lead" else 0.0)
    assert (p2.sources, p2.start, p2.end, p2.final) == (("lead", "other"), 10.0, 13.0, True)
    planner.add_sources("gone", ("x",))  # an unknown incident: ignored


def test_the_incidents_close_margin_shortens_parts_so_the_ring_still_holds_them() -> None:
    margin = {"s": 30.0}
    planner = EvidencePlanner(
        pre=10.0, post=5.0, max_duration=300.0, ring_seconds=120.0, close_margin=lambda sources: margin["s"]
    )
    assert planner.part_span(("s",)) == pytest.approx(120.0 - 10.0 - 30.0 - SCHEDULING_SLACK)
    margin["s"] = 40.0  # the margin is asked again: the lens's lateness is measured, and moves
    assert planner.part_span(("s",)) == pytest.approx(120.0 - 10.0 - 40.0 - SCHEDULING_SLACK)
    margin["s"] = 200.0  # more than the ring holds: parts of the shortest span, not none
    assert planner.part_span(("s",)) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="join_window"):
        EvidencePlanner(pre=10.0, post=5.0, max_duration=60.0, ring_seconds=40.0, close_margin=lambda s: 30.0)
