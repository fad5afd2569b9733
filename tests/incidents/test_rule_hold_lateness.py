"""A rule with `hold` reports its anomaly `hold` seconds after it started: the incident of the fault it
belongs to waits that long past its quiet period, so one physical event stays one incident (one Atlas
issue), as it does for the lens's late verdicts. The real detector feeds the real grouper, wired as the
agent wires them."""

from __future__ import annotations

from edge_agent.config import IncidentsSection, RuleSection
from edge_agent.detect.detector import Detector
from edge_agent.detect.rules import longest_report_delay
from edge_agent.frames import Frame
from edge_agent.incidents import IncidentClosed, IncidentEvent, IncidentGrouper, IncidentOpened

WALL0 = 1_700_000_000.0
RATE = 10  # frames a second


def run_bench(
    rules: list[RuleSection], values_at: dict[str, list[tuple[float, float]]]
) -> list[IncidentEvent]:
    """20 s of frames at RATE on source "bench": each channel is 0.0, or 5.0 in its (start, end) spans;
    the detector's and the grouper's ticks between frames, as the agent runs them."""
    detector = Detector(rules)
    grouper = IncidentGrouper.from_section(
        IncidentsSection(join_window=2.0, update_after=1.0),
        clearing_since=detector.clearing_since,
        lateness=detector.report_lateness,
        rule_delay=longest_report_delay(rules),
    )
    events: list[IncidentEvent] = []
    for n in range(20 * RATE):
        t = n / RATE
        values = {
            channel: 5.0 if any(start <= t < end for start, end in spans) else 0.0
            for channel, spans in values_at.items()
        }
        events += grouper.on_events(detector.on_frame(Frame("bench", t, WALL0 + t, values)))
        events += grouper.on_events(detector.tick(t, WALL0 + t))
        events += grouper.tick(lambda source, t=t: t, WALL0 + t)  # type: ignore[misc]
    events += grouper.close_all(20.0, WALL0 + 20.0)
    return events


def test_a_fast_rule_fault_and_a_hold_rule_on_another_channel_are_one_incident() -> None:
    """The supply dips for half a second (supply_v, no hold: reported at once, ended at 0.5); the pump's
    temperature crosses its limit at the same moment and stays over it for 6 s, but its rule holds 4 s
    before it reports (at 4.3, started at 0.3). Without waiting for it, the supply's incident closes at
    0.5 + join_window (2 s) and the temperature files a second issue for the same event."""
    rules = [
        RuleSection(channel="supply_v", kind="limits", max=1.0),
        RuleSection(channel="temp_c", kind="limits", max=1.0, hold=4.0),
    ]
    events = run_bench(rules, {"supply_v": [(0.0, 0.5)], "temp_c": [(0.3, 6.3)]})
    opened = [e for e in events if isinstance(e, IncidentOpened)]
    (done,) = [e.incident for e in events if isinstance(e, IncidentClosed)]
    assert len(opened) == 1 and done.close_reason == "quiet"
    assert [m.channel for m in done.members] == ["supply_v", "temp_c"]
    assert done.ended_mono is not None and abs(done.ended_mono - 6.3) < 1e-6
    # Closed when the temperature's quiet period and the rules' delay (4 s) are over, not before.
    assert done.closed_mono is not None and 6.3 + 2.0 + 4.0 - 1e-6 <= done.closed_mono < 6.3 + 6.0 + 0.2


def test_a_hold_rule_fault_after_the_window_is_still_an_incident_of_its_own() -> None:
    """The wait is for members that started within the window: a temperature that crosses its limit
    3 s after the supply's dip ended (past the 2 s window) is another event, though it reports while
    the supply's incident still waits out the rules' delay."""
    rules = [
        RuleSection(channel="supply_v", kind="limits", max=1.0),
        RuleSection(channel="temp_c", kind="limits", max=1.0, hold=4.0),
    ]
    events = run_bench(rules, {"supply_v": [(0.0, 0.5)], "temp_c": [(3.5, 9.0)]})
    closed = [e.incident for e in events if isinstance(e, IncidentClosed)]
    assert [[m.channel for m in incident.members] for incident in closed] == [["supply_v"], ["temp_c"]]
