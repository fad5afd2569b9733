"""An incident closes its close margin after its end: the join window plus the wait for a late lens
verdict (measured, ~10 s with the defaults) or a rule's late report (its hold). Its final evidence part
is only written then, so the ring must still hold that part's oldest frame: the planner sizes its parts
by the grouper's own margin, as it stands. The real detector, grouper, planner and ring, wired as the
agent and its reporter wire them."""

from __future__ import annotations

from edge_agent.config import EvidenceSection, IncidentsSection, RuleSection
from edge_agent.detect.detector import Detector
from edge_agent.evidence import EvidencePlanner, EvidenceRings, EvidenceWindow
from edge_agent.frames import Frame
from edge_agent.incidents import IncidentClosed, IncidentEvent, IncidentGrew, IncidentGrouper, IncidentOpened

WALL0 = 1_700_000_000.0
RATE = 10  # frames a second
LENS_LATENESS = 10.0  # a lens verdict received 10 s after its window's first sample


def test_the_evidence_of_an_incident_closed_late_covers_its_span_and_margins() -> None:
    """v is over its limit from 10 s to 40 s. With a 2 s join window alone the ring (40 s) would allow
    parts of 31 s: one part from 5 s to 42 s, written at the close. But the lens answers 10 s late, so
    the incident closes at 40 + 2 + 10 = 52 s, when the ring no longer holds the frames before 12 s: the
    evidence would start 7 s late. Sized by the grouper's margin, the parts are 21 s, and every frame
    from start - pre to end + post is in the evidence."""
    evidence = EvidenceSection(ring_seconds=40.0, pre=5.0, post=2.0, max_duration=300.0)
    detector = Detector([RuleSection(channel="v", kind="limits", max=1.0)])
    grouper = IncidentGrouper.from_section(
        IncidentsSection(join_window=2.0, update_after=1.0),
        clearing_since=detector.clearing_since,
        lateness=detector.report_lateness,
    )
    planner = EvidencePlanner.from_config(evidence, grouper.close_margin)
    rings = EvidenceRings(evidence.ring_seconds, block_bytes=2048)  # small blocks: eviction to ~1 s
    detector.lens_lateness.observe("bench", 0.0, 1.0, LENS_LATENESS)  # one verdict, measured

    def to_planner(events: list[IncidentEvent]) -> None:
        for event in events:
            incident = event.incident
            if isinstance(event, IncidentOpened):
                planner.open(incident.id, incident.sources, incident.started_mono)
            elif isinstance(event, IncidentGrew):
                planner.add_sources(incident.id, incident.sources)
            elif isinstance(event, IncidentClosed):
                assert incident.ended_mono is not None
                planner.close(incident.id, incident.ended_mono)

    written: list[tuple[EvidenceWindow, list[float]]] = []
    for n in range(70 * RATE):
        t = n / RATE
        frame = Frame("bench", t, WALL0 + t, {"v": 5.0 if 10.0 <= t < 40.0 else 0.0})
        rings.add(frame)
        to_planner(grouper.on_events(list(detector.on_frame(frame))))
        to_planner(grouper.on_events(detector.tick(t, WALL0 + t)))
        to_planner(grouper.tick(lambda source, t=t: t, WALL0 + t))  # type: ignore[misc]
        for window in planner.due(lambda source, t=t: t):  # type: ignore[misc]
            frames = rings.slice("bench", window.start, window.end)
            written.append((window, [f.mono for f in frames]))

    assert [window.final for window, _ in written][-1] and len(planner) == 0
    final = written[-1][0]
    assert final.due == 40.0 + 2.0  # due at end + post, but only written at the close (t = 52)
    expected = {round(n / RATE, 6) for n in range(int(5.0 * RATE), int(42.0 * RATE) + 1)}  # 5 s .. 42 s
    got = {round(mono, 6) for _, monos in written for mono in monos}
    assert expected <= got, f"missing from the evidence: {sorted(expected - got)[:3]}..."
    assert len(written) > 1  # the incident needed more than one part to stay within the ring
