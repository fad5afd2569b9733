"""A rule reports late only a condition already in progress: a `hold` excursion `hold` after it started,
a stuck channel `stuck_for` after its last change, a silent source `dropout_after` after its last
frame. The incident of the fault it belongs to waits for such a condition while it is in progress (and
could join it), so one physical event stays one incident (one Atlas issue), as it does for the lens's
late verdicts; with none in progress it closes when its join window is over, whatever the rules'
longest configured delay. The real detector feeds the real grouper, wired as the agent wires them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from edge_agent.config import IncidentsSection, RuleSection, load_config
from edge_agent.detect.detector import Detector
from edge_agent.frames import Frame
from edge_agent.incidents import Incident, IncidentClosed, IncidentEvent, IncidentGrouper, IncidentOpened

WALL0 = 1_700_000_000.0
RATE = 10  # frames a second
JOIN_WINDOW = 2.0
STUCK_5MIN = RuleSection(channel="flow", kind="stuck", stuck_for=300.0)
SUPPLY = RuleSection(channel="supply_v", kind="limits", max=1.0)
Values = Callable[[float], dict[str, float] | None]


def over(spans: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """5.0 in the (start, end) spans, else 0.0: over a limit of 1.0 there."""
    return lambda t: 5.0 if any(start <= t < end for start, end in spans) else 0.0


def changing(t: float) -> float:
    """A channel that changes at every frame (a flow meter's noise): never stuck."""
    return round(t * RATE) % 7 / 10


def run_bench(
    rules: list[RuleSection],
    values: Values | Mapping[str, Values],
    seconds: float = 20.0,
    section: IncidentsSection | None = None,
) -> tuple[list[IncidentEvent], IncidentGrouper]:
    """`seconds` of frames at RATE on source "bench" (`values(t)`, None: no frame then; or per source,
    {source: values}); the detector's and the grouper's ticks between frames, as the agent runs them;
    then shutdown."""
    sources = values if isinstance(values, Mapping) else {"bench": values}
    detector = Detector(rules)
    grouper = IncidentGrouper.from_section(
        section or IncidentsSection(join_window=JOIN_WINDOW, update_after=1.0),
        rules,
        clearing_since=detector.clearing_since,
        lateness=detector.report_lateness,
        pending_reports=detector.pending_reports,
    )
    events: list[IncidentEvent] = []
    for n in range(round(seconds * RATE)):
        t = n / RATE
        for source, values_of in sources.items():
            frame = values_of(t)
            if frame is not None:
                events += grouper.on_events(detector.on_frame(Frame(source, t, WALL0 + t, frame)))
        events += grouper.on_events(detector.tick(t, WALL0 + t))
        events += grouper.tick(lambda source, t=t: t, WALL0 + t)  # type: ignore[misc]
    events += grouper.on_events(detector.close_all(seconds, WALL0 + seconds))
    events += grouper.close_all(seconds, WALL0 + seconds)
    return events, grouper


def closed_incidents(events: list[IncidentEvent]) -> list[Incident]:
    return [e.incident for e in events if isinstance(e, IncidentClosed)]


def channels(incidents: list[Incident]) -> list[list[str]]:
    return [[m.channel for m in incident.members] for incident in incidents]


def one_incident_joined_late(
    events: list[IncidentEvent], channels: list[str], started: float, reported: float
) -> None:
    """One incident opened and closed, of `channels`; its last member started at `started` and its
    rule reported it at `reported`."""
    assert len([e for e in events if isinstance(e, IncidentOpened)]) == 1
    (done,) = closed_incidents(events)
    assert [m.channel for m in done.members] == channels
    late = done.members[-1]
    assert abs(late.started_mono - started) < 1e-6 and abs(late.opened_mono - reported) < 1e-6


def close_delay(incident: Incident) -> float:
    """Seconds from the incident's end (its last member's) to its close."""
    assert incident.ended_mono is not None and incident.closed_mono is not None
    return incident.closed_mono - incident.ended_mono


def test_a_fast_rule_fault_and_a_hold_rule_on_another_channel_are_one_incident() -> None:
    """The supply dips for half a second (supply_v, no hold: reported at once, ended at 0.5); the pump's
    temperature crosses its limit at the same moment and stays over it for 6 s, but its rule holds 4 s
    before it reports (at 4.3, started at 0.3). Without waiting for it, the supply's incident closes at
    0.5 + join_window (2 s) and the temperature files a second issue for the same event."""
    rules = [SUPPLY, RuleSection(channel="temp_c", kind="limits", max=1.0, hold=4.0)]
    values = {"supply_v": over([(0.0, 0.5)]), "temp_c": over([(0.3, 6.3)])}
    events, _ = run_bench(rules, lambda t: {channel: value(t) for channel, value in values.items()})
    opened = [e for e in events if isinstance(e, IncidentOpened)]
    (done,) = closed_incidents(events)
    assert len(opened) == 1 and done.close_reason == "quiet"
    assert [m.channel for m in done.members] == ["supply_v", "temp_c"]
    assert done.ended_mono is not None and abs(done.ended_mono - 6.3) < 1e-6
    # After the temperature ended nothing is in progress: closed when its join window is over, not the
    # rules' 4 s later.
    assert JOIN_WINDOW - 1e-6 <= close_delay(done) < JOIN_WINDOW + 0.2


def test_a_hold_rule_fault_after_the_window_is_still_an_incident_of_its_own() -> None:
    """The wait is for members that started within the window: a temperature that crosses its limit
    3 s after the supply's dip ended (past the 2 s window) is another event, though it reports while
    the supply's incident could still be waiting for it."""
    rules = [SUPPLY, RuleSection(channel="temp_c", kind="limits", max=1.0, hold=4.0)]
    values = {"supply_v": over([(0.0, 0.5)]), "temp_c": over([(3.5, 9.0)])}
    events, _ = run_bench(rules, lambda t: {channel: value(t) for channel, value in values.items()})
    assert channels(closed_incidents(events)) == [["supply_v"], ["temp_c"]]


def test_a_long_stuck_rule_on_a_changing_channel_does_not_hold_the_incident_open() -> None:
    """The known complaint: one rule with `stuck_for = 5min` kept every incident of the bench open 5
    minutes past its join window. The flow meter keeps changing, so no stuck condition is in progress
    that started within the window: the supply's incident closes at its end + join_window (a frame
    later at most: the flow's last sample is a stuck run that started at it), not 300 s later."""
    supply = over([(0.0, 0.5)])
    events, grouper = run_bench([SUPPLY, STUCK_5MIN], lambda t: {"supply_v": supply(t), "flow": changing(t)})
    (done,) = closed_incidents(events)
    assert done.close_reason == "quiet" and [m.channel for m in done.members] == ["supply_v"]
    assert JOIN_WINDOW - 1e-6 <= close_delay(done) <= JOIN_WINDOW + 1 / RATE + 1e-6
    assert grouper.close_margin() == JOIN_WINDOW + 300.0  # the bound the evidence planner sizes by


def test_a_pending_hold_that_clears_unreported_stops_the_wait() -> None:
    """The temperature goes over its limit within the window but falls back at 3.0 s, before its 4 s
    hold: never reported. The incident waits for it while it is over (past its window's end at 2.5),
    and closes at the first tick after it cleared, not at the window's end + 4 s."""
    rules = [SUPPLY, RuleSection(channel="temp_c", kind="limits", max=1.0, hold=4.0)]
    values = {"supply_v": over([(0.0, 0.5)]), "temp_c": over([(1.0, 3.0)])}
    events, _ = run_bench(rules, lambda t: {channel: value(t) for channel, value in values.items()})
    (done,) = closed_incidents(events)
    assert [m.channel for m in done.members] == ["supply_v"]
    assert done.closed_mono is not None and abs(done.closed_mono - 3.0) < 1e-6


def test_a_channel_that_freezes_during_the_incident_joins_it_when_its_5min_stuck_rule_reports() -> None:
    """One issue per event with a long stuck_for: the flow meter freezes at 1.0 s, during the supply's
    incident (its window ends at 2.5 s); its stuck rule reports at 301 s, started at 1.0 s. The
    incident waits for that condition in progress (and only for it), so the flow joins it."""
    supply = over([(0.0, 0.5)])
    events, _ = run_bench(
        [SUPPLY, STUCK_5MIN],
        lambda t: {"supply_v": supply(t), "flow": changing(min(t, 1.0))},
        seconds=310.0,
    )
    one_incident_joined_late(events, ["supply_v", "flow"], started=1.0, reported=301.0)


def test_a_stuck_run_that_began_before_the_incident_joins_it_as_the_join_rule_says() -> None:
    """The flow meter has been frozen since 0 s (its 10 s stuck rule reports at 10 s); the supply dips
    at 4.0-4.5 s. The stuck anomaly starts before the incident: it starts within the window (before its
    end at 6.5 s, like any member that overlaps it), so it joins, and the incident waits for it. The
    meter moves again from 12 s: the incident closes at 12 s + join window."""
    supply = over([(4.0, 4.5)])
    rules = [SUPPLY, RuleSection(channel="flow", kind="stuck", stuck_for=10.0)]
    events, _ = run_bench(
        rules, lambda t: {"supply_v": supply(t), "flow": changing(t) if t >= 12.0 else 0.5}, seconds=30.0
    )
    (done,) = closed_incidents(events)
    assert [m.channel for m in done.members] == ["supply_v", "flow"]
    assert done.started_mono == 0.0 and done.ended_mono == 12.0
    assert JOIN_WINDOW - 1e-6 <= close_delay(done) <= JOIN_WINDOW + 1 / RATE + 1e-6


def test_a_source_that_goes_silent_during_the_incident_joins_it_as_a_dropout() -> None:
    """The device stops sending at 1.0 s, right after the supply's dip; the dropout rule (5 s) reports
    at 6.0 s a silence that started at its last frame, within the window: the incident waits for it."""
    supply = over([(0.0, 0.5)])
    rules = [SUPPLY, RuleSection(channel="*", kind="dropout", dropout_after=5.0)]
    events, _ = run_bench(rules, lambda t: {"supply_v": supply(t)} if t < 1.0 else None)
    assert channels(closed_incidents(events)) == [["supply_v", "*"]]


def test_under_channel_groups_only_a_condition_that_could_join_holds_the_incident() -> None:
    """`group_by = "channels"`: a temperature held over its limit keeps the supply's incident open
    when both are one group, and not when the temperature is a group of its own (it would open its own
    incident): that incident closes at its window's end."""
    rules = [SUPPLY, RuleSection(channel="temp_c", kind="limits", max=1.0, hold=4.0)]
    values = {"supply_v": over([(0.0, 0.5)]), "temp_c": over([(1.0, 3.0)])}

    def supply_closed(groups: list[list[str]]) -> float:
        section = IncidentsSection(
            join_window=JOIN_WINDOW, update_after=1.0, group_by="channels", channel_groups=groups
        )
        events, _ = run_bench(
            rules, lambda t: {ch: value(t) for ch, value in values.items()}, section=section
        )
        (done,) = closed_incidents(events)
        assert done.closed_mono is not None
        return done.closed_mono

    assert abs(supply_closed([["supply_v", "temp_c"]]) - 3.0) < 1e-6  # waited for the temperature
    assert abs(supply_closed([["supply_v", "current_a"]]) - 2.5) < 1e-6


def test_under_group_by_source_a_condition_of_another_source_does_not_hold_the_incident() -> None:
    """`group_by = "source"`, two devices: the supply dips on "a" while the flow meter of "b" freezes
    (its 30 s stuck rule would report at 31 s). That would be an incident of "b", so "a"'s incident
    closes when its window is over; with `group_by = "bench"` it waits for it and the flow joins."""
    supply = over([(0.0, 0.5)])
    values = {
        "a": lambda t: {"supply_v": supply(t), "flow": changing(t)},
        "b": lambda t: {"supply_v": 0.0, "flow": changing(min(t, 1.0))},
    }
    rules = [SUPPLY, RuleSection(channel="flow", kind="stuck", stuck_for=30.0)]
    by_source = IncidentsSection(join_window=JOIN_WINDOW, update_after=1.0, group_by="source")
    events, _ = run_bench(rules, values, seconds=40.0, section=by_source)
    first, second = closed_incidents(events)
    assert channels([first, second]) == [["supply_v"], ["flow"]]
    assert JOIN_WINDOW - 1e-6 <= close_delay(first) <= JOIN_WINDOW + 1 / RATE + 1e-6
    events, _ = run_bench(rules, values, seconds=40.0)
    (done,) = closed_incidents(events)
    assert [(m.source, m.channel) for m in done.members] == [("a", "supply_v"), ("b", "flow")]


# A rule counting 30 samples in a row: 2.9 s at this bench's 10 frames a second (at a baseline rule's
# default of 3, the same wait is 2 samples of a device sampling every 1.45 s).
TEMP_30_SAMPLES = RuleSection(channel="temp_c", kind="limits", max=1.0, hold_samples=30)
WAIT_5S = IncidentsSection(join_window=JOIN_WINDOW, update_after=1.0, hold_samples_wait=5.0)


def test_a_streak_counting_its_hold_samples_at_the_windows_end_joins_the_incident() -> None:
    """The temperature crosses its limit at 2.4 s, just inside the supply incident's window (it ends at
    2.5 s); its rule needs 30 samples in a row, so it reports at 5.3 s. The incident waits for the
    streak (the samples' interval is the device's, not in the configuration): one incident, where the
    old grouper closed at 2.5 s and the temperature filed a second issue for the same event."""
    values = {"supply_v": over([(0.0, 0.5)]), "temp_c": over([(2.4, 8.0)])}
    events, _ = run_bench(
        [SUPPLY, TEMP_30_SAMPLES], lambda t: {ch: value(t) for ch, value in values.items()}, section=WAIT_5S
    )
    one_incident_joined_late(events, ["supply_v", "temp_c"], started=2.4, reported=5.3)


def test_a_streak_that_breaks_before_its_hold_samples_ends_the_wait() -> None:
    """The temperature is over its limit from 2.4 s to 3.0 s: 6 samples, never the 30 its rule needs.
    The incident waits while the streak lasts and closes at the first tick after it broke, not at
    the window's end + hold_samples_wait."""
    values = {"supply_v": over([(0.0, 0.5)]), "temp_c": over([(2.4, 3.0)])}
    events, _ = run_bench(
        [SUPPLY, TEMP_30_SAMPLES], lambda t: {ch: value(t) for ch, value in values.items()}, section=WAIT_5S
    )
    (done,) = closed_incidents(events)
    assert [m.channel for m in done.members] == ["supply_v"]
    assert done.closed_mono is not None and abs(done.closed_mono - 3.0) < 1e-6


def test_a_streak_whose_samples_stop_is_waited_for_at_most_hold_samples_wait() -> None:
    """The device stops sending at 3.0 s while the temperature's streak counts (no dropout rule): the
    streak never ends, and the incident closes at its window's end (2.5 s) + hold_samples_wait (5 s),
    the bound its close margin (the evidence planner's) includes."""
    supply, temp = over([(0.0, 0.5)]), over([(2.4, 8.0)])
    events, grouper = run_bench(
        [SUPPLY, TEMP_30_SAMPLES],
        lambda t: {"supply_v": supply(t), "temp_c": temp(t)} if t < 3.0 else None,
        section=WAIT_5S,
    )
    (done,) = closed_incidents(events)
    assert [m.channel for m in done.members] == ["supply_v"] and done.close_reason == "quiet"
    assert done.closed_mono is not None and abs(done.closed_mono - 7.5) < 1e-6
    assert grouper.close_margin() == JOIN_WINDOW + 5.0


def test_the_wait_for_samples_is_in_the_close_margin_only_when_a_rule_counts_samples(tmp_path: Path) -> None:
    """A baseline rule counts 3 samples by default; `hold_samples = 1` on it, or only rules that open
    on their first sample, leave the close margin at the window (the config's, as `run` loads it)."""
    supply = '[[rules]]\nchannel = "supply_v"\nkind = "limits"\nmax = 1.0\n'
    baseline = '[[rules]]\nchannel = "temp_c"\nkind = "baseline"\n'
    margins = []
    for rules in (supply + baseline, supply + baseline + "hold_samples = 1\n", supply):
        path = tmp_path / "edge-agent.toml"
        path.write_text('[incidents]\njoin_window = "20s"\nhold_samples_wait = "7s"\n' + rules)
        margins.append(IncidentGrouper.from_config(load_config(path, environ={})).close_margin())
    assert margins == [27.0, 20.0, 20.0]
