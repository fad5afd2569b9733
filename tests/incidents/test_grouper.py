"""The incident grouper: one incident per physical event, whatever order the anomalies arrive in."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_agent.atlas.headline import NO_PORTS
from edge_agent.atlas.incident_text import incident_title
from edge_agent.detect.anomaly import (
    Anomaly,
    AnomalyClosed,
    AnomalyKey,
    AnomalyOpened,
    AnomalyUpdated,
    PendingReport,
)
from edge_agent.incidents import (
    IncidentClosed,
    IncidentEvent,
    IncidentGrew,
    IncidentGrouper,
    IncidentOpened,
    signature_of,
)

T0 = 1_000.0
WALL0 = 1_700_000_000.0


def anomaly(
    channel: str,
    start: float,
    *,
    source: str = "bench",
    kind: str = "rule:limits",
    severity: str = "medium",
    hold: float = 0.0,
    ident: str | None = None,
) -> Anomaly:
    rule = "lens" if kind == "lens" else f"rule:{kind}"
    return Anomaly(
        id=ident or f"{source}-{channel or 'lens'}-{start:g}",
        key=AnomalyKey(rule, source, channel),
        kind=kind,
        description=f"{channel} misbehaving",
        severity=severity,  # type: ignore[arg-type]
        priority=severity,  # type: ignore[arg-type]
        measure="value",
        threshold="max 1",
        started_mono=T0 + start,
        started_wall=WALL0 + start,
        opened_mono=T0 + start + hold,
        opened_wall=WALL0 + start + hold,
        peak_value=2.0,
        peak_excursion=1.0,
        peak_mono=T0 + start,
        peak_wall=WALL0 + start,
        samples=1,
    )


def closed(a: Anomaly, end: float, clear_after: float = 1.0) -> AnomalyClosed:
    return AnomalyClosed(
        replace(
            a,
            ended_mono=T0 + end,
            ended_wall=WALL0 + end,
            closed_mono=T0 + end + clear_after,
            closed_wall=WALL0 + end + clear_after,
            close_reason="cleared",
        )
    )


def at(t: float):
    return lambda source: T0 + t


def ids() -> itertools.count[int]:
    return itertools.count(1)


def replay(g: IncidentGrouper, timeline: list[tuple[float, int, object]]) -> list[object]:
    """Feed `g` the (time, order, event) items in time order (at one time, order 0 before 1), ticking
    it at each time, and tick it once far later so every incident closes; the incident events."""
    timeline = sorted(timeline, key=lambda item: (item[0], item[1]))
    events: list[object] = []
    for t, batch in itertools.groupby(timeline, key=lambda item: item[0]):
        events += g.tick(at(t), WALL0 + t)
        events += g.on_events([event for _, _, event in batch])  # type: ignore[misc]
    events += g.tick(at(1e9), WALL0)
    return events


def grouper(**kwargs: object) -> IncidentGrouper:
    counter = ids()
    options = {"join_window": 10.0, "update_after": 5.0, **kwargs}
    return IncidentGrouper(new_id=lambda: f"inc{next(counter)}", **options)  # type: ignore[arg-type]


def test_one_fault_on_six_channels_and_the_lens_is_one_incident_reported_in_one_batch() -> None:
    g = grouper()
    lead = anomaly("supply_v", 0.0, severity="high")
    others = [anomaly(ch, 0.2 + 0.1 * i) for i, ch in enumerate(["current_a", "temp_c", "p1", "p2", "p3"])]
    lens = anomaly("", 0.8, kind="lens", severity="high")
    events = g.on_events([AnomalyOpened(lead)])
    assert [type(e) for e in events] == [IncidentOpened]
    opened = events[0]
    assert isinstance(opened, IncidentOpened)
    assert opened.incident.lead == lead and opened.incident.severity == "high"
    assert g.on_events([AnomalyOpened(a) for a in others]) == []
    assert g.on_events([AnomalyOpened(lens)]) == []
    assert g.tick(at(4.0), WALL0 + 4.0) == []  # the batch waits update_after after its first join
    grew = g.tick(at(5.3), WALL0 + 5.3)
    assert len(grew) == 1 and isinstance(grew[0], IncidentGrew)
    assert [a.channel for a in grew[0].joined] == ["current_a", "temp_c", "p1", "p2", "p3", ""]
    assert grew[0].severity_raised is False
    assert grew[0].incident.channels == ("supply_v", "current_a", "temp_c", "p1", "p2", "p3")
    # Every member ends; the incident closes join_window after the last end, not before.
    ends = [closed(a, 6.0 + i) for i, a in enumerate([lead, *others, lens])]
    assert g.on_events(ends) == []
    last_end = 6.0 + len(ends) - 1
    assert g.tick(at(last_end + 9.9), WALL0 + last_end + 9.9) == []
    done = g.tick(at(last_end + 10.0), WALL0 + last_end + 10.0)
    assert len(done) == 1 and isinstance(done[0], IncidentClosed)
    incident = done[0].incident
    assert incident.close_reason == "quiet" and done[0].joined == ()
    assert incident.ended_mono == T0 + last_end
    assert all(m.closed_mono is not None for m in incident.members)
    assert len(g) == 0


def test_anomalies_further_apart_than_the_join_window_are_two_incidents() -> None:
    g = grouper()
    first = anomaly("supply_v", 0.0)
    g.on_events([AnomalyOpened(first), closed(first, 2.0)])
    second = anomaly("supply_v", 12.5)
    events = g.on_events([AnomalyOpened(second)])
    # The first incident's quiet period ended at 12.0: it closes before the second opens.
    assert [type(e) for e in events] == [IncidentClosed, IncidentOpened]
    assert events[0].incident.members == (closed(first, 2.0).anomaly,)
    assert events[1].incident.lead == second


def test_an_anomaly_within_the_join_window_after_the_last_end_joins() -> None:
    g = grouper()
    first = anomaly("supply_v", 0.0)
    g.on_events([AnomalyOpened(first), closed(first, 2.0)])
    late = anomaly("temp_c", 11.5, hold=3.0)  # started within the window, confirmed after it
    assert g.on_events([AnomalyOpened(late)]) == []
    assert g.tick(at(11.9), WALL0) == []  # a member is open again: no close
    (only,) = g.open_incidents()
    assert only.channels == ("supply_v", "temp_c")


def test_a_member_waiting_out_its_clear_after_has_ended_for_the_join_decision() -> None:
    """The tracker closes an anomaly `clear_after` after its first clear sample; the anomaly's span
    ended at that sample. A fault starting after it plus the join window is a new incident, even while
    the first one is still open in the tracker; one starting within the window joins."""
    clearing: dict[str, float] = {}
    g = grouper(join_window=0.2, clearing_since=clearing.get)
    first = anomaly("supply_v", 0.0)
    g.on_events([AnomalyOpened(first)])
    clearing[first.id] = T0 + 0.3  # held 0.3 s, now waiting out clear_after
    assert g.on_events([AnomalyOpened(anomaly("current_a", 0.45))]) == []  # within 0.2 s of the end
    clearing["bench-current_a-0.45"] = T0 + 0.5
    (opened,) = g.on_events([AnomalyOpened(anomaly("vibration_g", 0.75))])  # 0.25 s after: its own
    assert isinstance(opened, IncidentOpened) and len(g) == 2
    assert [i.channels for i in g.open_incidents()] == [("supply_v", "current_a"), ("vibration_g",)]


def test_a_close_and_an_open_in_one_batch_the_close_counts_first() -> None:
    """One frame both closes current_a (its clear_after ran out) and opens supply_v: the tracker has
    already forgotten current_a, so the grouper must take the close before it decides the join."""
    g = grouper(join_window=0.2)  # no clearing_since: open members count as holding
    first = anomaly("current_a", 0.0)
    g.on_events([AnomalyOpened(first)])
    second = anomaly("supply_v", 0.6)
    events = g.on_events([AnomalyOpened(second), closed(first, 0.3, clear_after=0.3)])
    # current_a ended at 0.3: its quiet period was over at 0.5, before supply_v started.
    assert [type(e) for e in events] == [IncidentClosed, IncidentOpened]
    assert [i.channels for i in g.open_incidents()] == [("supply_v",)]


def test_a_member_that_started_before_the_lead_moves_the_incident_start() -> None:
    g = grouper()
    g.on_events([AnomalyOpened(anomaly("supply_v", 5.0))])
    g.on_events([AnomalyOpened(anomaly("temp_c", 1.0, hold=5.0, kind="rule:stuck"))])
    (only,) = g.open_incidents()
    assert only.started_mono == T0 + 1.0 and only.lead.channel == "supply_v"


def test_a_more_severe_member_raises_the_severity_and_says_so_once() -> None:
    g = grouper()
    g.on_events([AnomalyOpened(anomaly("temp_c", 0.0, severity="low"))])
    g.on_events([AnomalyOpened(anomaly("supply_v", 1.0, severity="high"))])
    (grew,) = g.tick(at(6.0), WALL0)
    assert isinstance(grew, IncidentGrew) and grew.severity_raised and grew.incident.severity == "high"
    assert grew.incident.priority == "high"
    g.on_events([AnomalyOpened(anomaly("current_a", 7.0, severity="medium"))])
    (again,) = g.tick(at(12.0), WALL0)
    assert isinstance(again, IncidentGrew) and not again.severity_raised


def test_joins_not_yet_reported_are_folded_into_the_close() -> None:
    g = grouper(update_after=30.0)
    a = anomaly("supply_v", 0.0)
    b = anomaly("temp_c", 0.5, severity="high")
    g.on_events([AnomalyOpened(a), AnomalyOpened(b), closed(a, 1.0), closed(b, 1.5)])
    (done,) = g.tick(at(11.5), WALL0)
    assert isinstance(done, IncidentClosed)
    assert [m.channel for m in done.joined] == ["temp_c"] and done.severity_raised


def test_updates_refresh_the_member_snapshot() -> None:
    g = grouper()
    a = anomaly("supply_v", 0.0)
    g.on_events([AnomalyOpened(a)])
    g.on_events([AnomalyUpdated(replace(a, peak_value=9.0, samples=40))])
    (only,) = g.open_incidents()
    assert only.lead.peak_value == 9.0 and only.lead.samples == 40


def test_shutdown_closes_every_incident_with_its_pending_joins() -> None:
    g = grouper()
    a, b = anomaly("supply_v", 0.0), anomaly("temp_c", 0.1)
    g.on_events([AnomalyOpened(a), AnomalyOpened(b)])
    (done,) = g.close_all(T0 + 1.0, WALL0 + 1.0)
    assert isinstance(done, IncidentClosed) and done.incident.close_reason == "shutdown"
    assert [m.channel for m in done.joined] == ["temp_c"]
    assert g.open_incidents() == []


def test_group_by_source_keeps_two_ports_apart() -> None:
    g = grouper(group_by="source")
    g.on_events([AnomalyOpened(anomaly("supply_v", 0.0, source="a"))])
    events = g.on_events([AnomalyOpened(anomaly("supply_v", 0.1, source="b"))])
    assert [type(e) for e in events] == [IncidentOpened]
    assert {i.group for i in g.open_incidents()} == {"a", "b"}


def test_channel_groups_and_whole_source_members() -> None:
    g = grouper(group_by="channels", channel_groups=[["supply_v", "current_a"], ["temp_c"]])
    # The lens sees the fault first: its incident is joined by the next channel of the source.
    g.on_events([AnomalyOpened(anomaly("", 0.0, kind="lens"))])
    assert g.on_events([AnomalyOpened(anomaly("supply_v", 0.3))]) == []
    assert g.on_events([AnomalyOpened(anomaly("current_a", 0.4))]) == []
    # temp_c is another group: its own incident; a later whole-source dropout joins the latest one.
    (opened,) = g.on_events([AnomalyOpened(anomaly("temp_c", 0.5))])
    assert isinstance(opened, IncidentOpened)
    assert g.on_events([AnomalyOpened(anomaly("*", 0.6, kind="rule:dropout"))]) == []
    incidents = {i.group: i for i in g.open_incidents()}
    assert set(incidents) == {"bench|g0", "bench|g1"}
    assert incidents["bench|g0"].channels == ("supply_v", "current_a")
    assert incidents["bench|g1"].channels == ("temp_c", "*")
    # An ungrouped channel is a group of its own.
    (own,) = g.on_events([AnomalyOpened(anomaly("vibration_g", 0.7))])
    assert isinstance(own, IncidentOpened) and own.incident.group == "bench|c:vibration_g"


def test_the_signature_is_the_leads_kind_source_and_channel() -> None:
    a = anomaly("supply_v", 0.0)
    assert signature_of(a) == "rule:limits|bench|supply_v"
    assert signature_of(replace(a, key=AnomalyKey("rule7:limits", "bench", "supply_v"))) == signature_of(a)


# -- properties -------------------------------------------------------------------------------------

spans = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", ""]),  # channel ("" = lens)
        st.integers(0, 400).map(lambda x: x * 0.5),  # start: on a grid, so events coincide in batches
        st.integers(0, 40).map(lambda x: x * 0.5),  # duration
        st.sampled_from(["low", "medium", "high"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200)
@given(spans, st.sampled_from([0.0, 0.5, 2.0, 10.0]), st.sampled_from(["bench", "source", "channels"]))
def test_every_anomaly_is_in_exactly_one_incident_and_incidents_of_a_group_never_touch(
    raw: list[tuple[str, float, float, str]], window: float, group_by: str
) -> None:
    """Fed like the tracker feeds it (opens and closes in time order, ticks between), the grouper
    puts every anomaly in exactly one incident, closes every incident once, and two incidents of the
    same group are never closer than the join window (else they would be one)."""
    g = grouper(join_window=window, update_after=2.0, group_by=group_by, channel_groups=[["a", "b"]])
    made = [
        anomaly(ch, start, severity=sev, ident=f"x{i}", source="s", kind="rule:limits" if ch else "lens")
        for i, (ch, start, _, sev) in enumerate(raw)
    ]
    timeline: list[tuple[float, int, object]] = []
    for a, (_, start, duration, _) in zip(made, raw, strict=True):
        timeline.append((start, 0, AnomalyOpened(a)))
        timeline.append((start + duration, 1, closed(a, start + duration, clear_after=0.0)))
    events = replay(g, timeline)
    assert len(g) == 0
    opened = [e.incident.id for e in events if isinstance(e, IncidentOpened)]
    finals = [e.incident for e in events if isinstance(e, IncidentClosed)]
    assert sorted(opened) == sorted(i.id for i in finals)  # every incident opened once, closed once
    membership = [m.id for i in finals for m in i.members]
    assert sorted(membership) == sorted(a.id for a in made)  # every anomaly in exactly one incident
    for i in finals:
        assert i.ended_mono is not None and i.closed_mono is not None
        assert i.closed_mono >= i.ended_mono + window - 1e-9
    by_group: dict[str, list] = {}
    for i in finals:
        by_group.setdefault(i.group, []).append(i)
    for group in by_group.values():
        group.sort(key=lambda i: i.started_mono)
        for earlier, later in itertools.pairwise(group):
            assert later.lead.started_mono >= earlier.ended_mono + window - 1e-9


def test_an_incident_the_lens_saw_first_is_titled_by_its_first_channel() -> None:
    g = grouper()
    lens = anomaly("", 0.0, kind="lens")
    lens = replace(
        lens,
        label="fault",
        peak_value=0.93,
        scores={"fault": 0.93, "normal": 0.07},
        lens_channels=("supply_v", "temp_c"),
    )
    (opened,) = g.on_events([AnomalyOpened(lens)])
    assert isinstance(opened, IncidentOpened)
    # Filed at once, as the lens saw: its label, the channels it reads, the label's score
    assert (
        incident_title(opened.incident, "b1", NO_PORTS) == "[b1] lens: fault on supply_v, temp_c (score 0.93)"
    )
    g.on_events([AnomalyOpened(anomaly("supply_v", 0.3)), AnomalyOpened(anomaly("temp_c", 0.4))])
    (incident,) = g.open_incidents()
    assert incident.lead.kind == "lens"  # still the first member: the timeline and signature keep it
    assert incident_title(incident, "b1", NO_PORTS) == "[b1] supply_v above max 1 (peak 2) +2 more"


# -- members reported late (the lens) ---------------------------------------------------------------


def lens_late(lateness: float, **kwargs: object) -> IncidentGrouper:
    """A grouper told that the lens on source "bench" reports its anomalies up to `lateness` s late."""
    return grouper(join_window=2.0, lateness=lambda: {"bench": lateness}, **kwargs)


def test_a_lens_anomaly_that_started_in_the_window_but_came_after_it_joins_the_local_incident() -> None:
    """The demo's spike: vibration_g holds 20 ms, the lens's window saw it start 6 ms in, and its
    verdict came 2.5 s later: after the local anomaly's quiet period (end + 2 s), within the lateness.
    One physical event, one incident: the tick waits for the lens before it closes."""
    g = lens_late(3.0)
    spike = anomaly("vibration_g", 0.0)
    assert [type(e) for e in g.on_events([AnomalyOpened(spike)])] == [IncidentOpened]
    g.on_events([closed(spike, 0.02, clear_after=0.0)])
    assert g.tick(at(2.02), WALL0 + 2.02) == []  # the quiet period is over; the lens may still speak
    assert g.tick(at(2.5), WALL0 + 2.5) == []
    lens = anomaly("", 0.006, kind="lens", hold=0.994)  # its window ended at 1.0; the verdict came at 2.52
    assert g.on_events([AnomalyOpened(lens)]) == []
    g.on_events([closed(lens, 1.0, clear_after=2.0)])
    assert g.tick(at(3.0), WALL0 + 3.0) == []  # lens ended at 1.0: closes at 1.0 + 2 + 3
    (done,) = g.tick(at(6.0), WALL0 + 6.0)
    assert isinstance(done, IncidentClosed) and done.incident.close_reason == "quiet"
    assert [m.channel for m in done.incident.members] == ["vibration_g", ""]
    # The incident's timeline is its members': started at the spike, ended at the lens window's end.
    assert done.incident.started_mono == T0 and done.incident.ended_mono == T0 + 1.0
    assert done.incident.closed_mono == T0 + 6.0
    assert len(g) == 0


def test_without_a_late_source_the_incident_closes_at_the_end_of_its_quiet_period() -> None:
    """What the lateness buys, and that nothing waits without it: the same spike closes at end + 2 s,
    and the lens's late verdict is an incident (an issue) of its own."""
    g = lens_late(0.0)
    spike = anomaly("vibration_g", 0.0)
    g.on_events([AnomalyOpened(spike), closed(spike, 0.02, clear_after=0.0)])
    (done,) = g.tick(at(2.02), WALL0 + 2.02)
    assert isinstance(done, IncidentClosed) and done.incident.closed_mono == T0 + 2.02
    (opened,) = g.on_events([AnomalyOpened(anomaly("", 0.006, kind="lens", hold=0.994))])
    assert isinstance(opened, IncidentOpened)


def test_a_member_reported_later_than_the_lateness_bound_opens_its_own_incident() -> None:
    g = lens_late(1.0)
    spike = anomaly("vibration_g", 0.0)
    g.on_events([AnomalyOpened(spike), closed(spike, 0.02, clear_after=0.0)])
    assert g.tick(at(2.9), WALL0 + 2.9) == []
    (done,) = g.tick(at(3.02), WALL0 + 3.02)  # end + join_window + lateness
    assert isinstance(done, IncidentClosed) and done.incident.ended_mono == T0 + 0.02
    (opened,) = g.on_events([AnomalyOpened(anomaly("", 0.006, kind="lens", hold=0.994))])
    assert isinstance(opened, IncidentOpened) and opened.incident.lead.kind == "lens"


def test_an_anomaly_starting_after_the_quiet_period_does_not_join_while_the_incident_waits() -> None:
    """The wait is for members that started within the window; a new fault after it is a new incident,
    and the waiting one closes on its own time (not taken over)."""
    g = lens_late(3.0)
    spike = anomaly("vibration_g", 0.0)
    g.on_events([AnomalyOpened(spike), closed(spike, 0.02, clear_after=0.0)])
    (opened,) = g.on_events([AnomalyOpened(anomaly("supply_v", 2.5))])
    assert isinstance(opened, IncidentOpened) and len(g) == 2
    (done,) = g.tick(at(5.02), WALL0 + 5.02)
    assert isinstance(done, IncidentClosed) and done.incident.channels == ("vibration_g",)
    # Once a new anomaly starts after end + window + lateness, the old incident is closed first.
    g2 = lens_late(3.0)
    g2.on_events([AnomalyOpened(spike), closed(spike, 0.02, clear_after=0.0)])
    events = g2.on_events([AnomalyOpened(anomaly("supply_v", 5.5))])
    assert [type(e) for e in events] == [IncidentClosed, IncidentOpened]
    assert events[0].incident.closed_mono == T0 + 5.02


def test_under_group_by_source_only_the_lens_source_waits() -> None:
    g = lens_late(3.0, group_by="source")
    here, there = anomaly("vibration_g", 0.0), anomaly("vibration_g", 0.0, source="other")
    g.on_events([AnomalyOpened(here), AnomalyOpened(there)])
    g.on_events([closed(here, 0.02, clear_after=0.0), closed(there, 0.02, clear_after=0.0)])
    (done,) = g.tick(at(2.02), WALL0 + 2.02)
    assert isinstance(done, IncidentClosed) and done.incident.group == "other"
    (done,) = g.tick(at(5.02), WALL0 + 5.02)
    assert isinstance(done, IncidentClosed) and done.incident.group == "bench"


@pytest.mark.parametrize("late_by", ["lens", "hold", "pending"])
@settings(max_examples=200)
@given(spans, st.sampled_from([0.5, 1.0, 2.0, 2.5]), st.sampled_from([0.5, 2.0, 10.0]))
# A fault of one sample on "a", and the late one starting within the window after it: found every run.
@example([("a", 0.0, 0.0, "low"), ("", 0.5, 2.5, "low")], 2.5, 0.5)
def test_an_anomaly_reported_late_never_leads_an_incident_it_could_have_joined(
    late_by: str, raw: list[tuple[str, float, float, str]], delay: float, window: float
) -> None:
    """Some anomalies reach the grouper `delay` after they started, the others at once; the grouper knows
    the bound (3 s). `lens`: the lens's (measured lateness; its whole span shifted, in its order);
    `hold`: a rule with `hold = delay` on channel "held" (configured rule delay; it opens `delay` after
    its start, if it lasts that long, and ends when it ends); `pending`: the same rule, with the detector
    telling the grouper which of its conditions are in progress (`pending_reports`: from its start until
    it is reported). Whatever the order that makes, an incident led by a late anomaly never has another
    incident that it started within the join window of (it would have been reported into that one):
    late reports split no physical event."""
    bound = 3.0
    held: list[Anomaly] = []
    clock = [-math.inf]  # the grouper's last tick

    def in_progress() -> list[PendingReport]:
        now = clock[0]  # a report at the tick's own time is not in yet: replay ticks, then reports
        return [
            PendingReport(a.key, a.started_mono, bound)
            for a in held
            if a.started_mono <= now <= a.opened_mono
        ]

    if late_by == "lens":
        g = grouper(join_window=window, update_after=2.0, lateness=lambda: {"s": bound})
    elif late_by == "hold":
        g = grouper(join_window=window, update_after=2.0, rule_delay=bound)
    else:
        g = grouper(join_window=window, update_after=2.0, rule_delay=bound, pending_reports=in_progress)
        tick = g.tick

        def clocked(now_of: Callable[[str], float], now_wall: float) -> list[IncidentEvent]:
            clock[0] = now_of("s")
            return tick(now_of, now_wall)

        g.tick = clocked  # type: ignore[method-assign]
    made, timeline, late_ids = [], [], set()
    last_late_end = -1.0
    for i, (ch, start, duration, sev) in enumerate(raw):
        if not ch and (start < last_late_end or (late_by != "lens" and duration < delay)):
            continue  # one anomaly of a key at a time; a hold rule opens only on a condition that lasts
        if ch:
            a = anomaly(ch, start, severity=sev, ident=f"x{i}", source="s", kind="rule:limits")
        elif late_by == "lens":
            a = anomaly("", start, severity=sev, ident=f"x{i}", source="s", kind="lens")
        else:
            a = anomaly("held", start, severity=sev, ident=f"x{i}", source="s", hold=delay)
            held.append(a)
        made.append(a)
        late = 0.0 if ch else delay
        if not ch:
            late_ids.add(a.id)
            last_late_end = start + duration + 0.5
        timeline.append((start + late, 0, AnomalyOpened(a)))
        end_seen = start + duration + (late if late_by == "lens" else 0.0)
        timeline.append((end_seen, 1, closed(a, start + duration, clear_after=0.0)))
    events = replay(g, timeline)
    finals = [e.incident for e in events if isinstance(e, IncidentClosed)]
    assert sorted(m.id for i in finals for m in i.members) == sorted(a.id for a in made)
    for led in (i for i in finals if i.lead.id in late_ids):
        start = led.lead.started_mono
        for other in finals:
            if other.id != led.id and other.started_mono <= start:
                assert other.ended_mono is not None and start > other.ended_mono + window, (led, other)
