"""The live board: what the page shades (anomalies, incidents) on the traces' own time axis, bounded in
number whatever the rate of events, open ones kept over closed ones; recent lens labels bounded."""

from __future__ import annotations

import dataclasses
import math

from edge_agent.detect.anomaly import Anomaly, AnomalyClosed, AnomalyKey, AnomalyOpened
from edge_agent.frames import Frame
from edge_agent.incidents import Incident, IncidentOpened
from edge_agent.live.board import MAX_LABELS, MAX_MARKS, LiveBoard

OFFSET = 1_700_000_000.0  # host wall minus host monotonic


def anomaly(n: int, start: float, closed: bool = False) -> Anomaly:
    made = Anomaly(
        id=f"a{n}", key=AnomalyKey("rule0:limits", "bench", "supply_v"), kind="rule:limits",
        description="supply_v outside [11.4, 12.6]", severity="high", priority="high", measure="value",
        threshold="max 12.6", started_mono=start, started_wall=start + OFFSET, opened_mono=start,
        opened_wall=start + OFFSET, peak_value=13.5, peak_excursion=0.9, peak_mono=start,
        peak_wall=start + OFFSET, samples=3,
    )  # fmt: skip
    if closed:
        made = dataclasses.replace(made, ended_mono=start + 1, closed_mono=start + 2, close_reason="cleared")
    return made


def test_marks_are_on_the_trace_axis_and_follow_their_anomaly() -> None:
    board = LiveBoard(OFFSET)
    changes: list[int] = []
    board.listener = lambda: changes.append(board.version)
    board.on_frame(Frame("bench", 10.0, 10.0 + OFFSET, {"supply_v": 12.0}))
    board.on_anomaly_events([AnomalyOpened(anomaly(1, 10.0))])
    (mark,) = board.marks()["anomalies"]
    assert mark["x0"] == round((10.0 + OFFSET) * 1000, 1) and mark["open"] and mark["x1"] is None
    board.on_anomaly_events([AnomalyClosed(anomaly(1, 10.0, closed=True))])
    (mark,) = board.marks()["anomalies"]
    assert not mark["open"] and mark["x1"] == round((11.0 + OFFSET) * 1000, 1)
    assert changes == [1, 2]  # the page's push loops were told of each change
    # The traces' buckets sit on the same axis: bucket k starts at k * 0.1 s + offset.
    doc = board.traces(0)["bench"]
    assert doc["x0"] == round((doc["first"] * 0.1 + OFFSET) * 1000, 1)
    assert doc["hi"]["supply_v"][-1] == 12.0


def test_marks_are_bounded_keeping_the_open_ones() -> None:
    board = LiveBoard(OFFSET)
    board.on_anomaly_events([AnomalyOpened(anomaly(n, float(n))) for n in range(5)])
    board.on_anomaly_events(
        [AnomalyClosed(anomaly(n, float(n), closed=True)) for n in range(5, 5 + 3 * MAX_MARKS)]
    )
    kept = board.marks()["anomalies"]
    assert len(kept) == MAX_MARKS
    assert {m["id"] for m in kept if m["open"]} == {f"a{n}" for n in range(5)}
    # Of the closed ones, the newest stay.
    assert f"a{4 + 3 * MAX_MARKS}" in {m["id"] for m in kept}


def test_incidents_carry_their_title_and_every_source_and_channel() -> None:
    lead = anomaly(1, 10.0)
    other = dataclasses.replace(anomaly(2, 10.5), key=AnomalyKey("rule1:limits", "bench", "current_a"))
    incident = Incident(
        id="i1", group="bench", members=(lead, other), started_mono=10.0, started_wall=10.0 + OFFSET,
        opened_mono=10.0, opened_wall=10.0 + OFFSET,
    )  # fmt: skip
    board = LiveBoard(OFFSET, title=lambda i: f"[bench] {i.lead.channel} +1 more")
    board.on_incident_events([IncidentOpened(incident)])
    (doc,) = board.marks()["incidents"]
    assert doc["title"] == "[bench] supply_v +1 more"
    assert doc["channels"] == ["supply_v", "current_a"] and doc["sources"] == ["bench"]
    assert doc["members"] == ["a1", "a2"] and doc["open"]


def test_recent_lens_labels_are_bounded_and_non_finite_scores_are_null() -> None:
    board = LiveBoard(OFFSET)
    for n in range(3 * MAX_LABELS):
        board.on_inference("normal" if n % 2 else "fault", 0.5 if n % 3 else math.nan, OFFSET + n, n % 2 == 0)
    labels = board.labels()
    assert len(labels) == MAX_LABELS
    assert labels[-1]["at"] == round((OFFSET + 3 * MAX_LABELS - 1) * 1000)
    assert all(label["score"] in (0.5, None) for label in labels)
