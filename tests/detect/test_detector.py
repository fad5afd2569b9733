"""Detector facade: rules from config, dropout and link events, lens inferences, shutdown."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from detect_helpers import WALL0, detector, frame, rule
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import LensSection
from edge_agent.detect import (
    AnomalyClosed,
    AnomalyEvent,
    AnomalyOpened,
    Debounce,
    Detector,
    LensAnomalyOptions,
    RobustStats,
    RuleConfigError,
    dump_baselines,
)
from edge_agent.frames import Frame, LinkEvent, LinkState
from edge_agent.lens.protocol import LensInference


def feed(d: Detector, frames: Sequence[Frame]) -> list[AnomalyEvent]:
    events: list[AnomalyEvent] = []
    for f in frames:
        events.extend(d.on_frame(f))
    return events


def kinds(events: Sequence[AnomalyEvent]) -> list[tuple[str, str, str]]:
    return [(type(e).__name__, e.anomaly.kind, e.anomaly.channel) for e in events]


def test_limits_rule_from_toml_shaped_config() -> None:
    d = detector([rule(channel="supply_v", kind="limits", min=11.4, max=12.6, hold="200ms", severity="high")])
    events = feed(d, [frame(i * 0.1, supply_v=v) for i, v in enumerate([12.0, 13.0, 13.1, 13.2, 12.0])])
    assert kinds(events) == [("AnomalyOpened", "rule:limits", "supply_v")]
    a = events[0].anomaly
    assert (a.started_mono, a.peak_value, a.priority) == (0.1, 13.2, "high")
    assert a.opened_mono == pytest.approx(0.3)
    assert (
        a.description == "supply_v outside [11.4, 12.6]"
        and a.rule_id == "rule0:limits"
        and a.source == "bench"
    )
    # clear_after defaults to 2 s: still open 1.9 s after the first clear sample, closed at 2 s.
    assert d.tick(0.4 + 1.9, WALL0 + 2.3) == []
    closed = d.tick(0.4 + 2.0, WALL0 + 2.4)
    assert kinds(closed) == [("AnomalyClosed", "rule:limits", "supply_v")] and closed[0].anomaly.id == a.id
    assert closed[0].anomaly.ended_mono == 0.4 and closed[0].anomaly.ended_wall == WALL0 + 0.4


def test_quiet_frames_allocate_no_event_list() -> None:
    d = detector([rule(channel="v", kind="limits", max=10)])
    assert d.on_frame(frame(0.0, v=1.0)) is d.on_frame(frame(0.1, v=2.0))  # the shared empty tuple


def test_rate_and_stuck_rules() -> None:
    d = detector(
        [
            rule(channel="temp_c", kind="rate", max_rate=5.0),
            rule(channel="temp_c", kind="stuck", stuck_for="3s", severity="low"),
        ]
    )
    events = feed(d, [frame(0.0, temp_c=25.0), frame(1.0, temp_c=26.0), frame(2.0, temp_c=40.0)])
    assert kinds(events) == [("AnomalyOpened", "rule:rate", "temp_c")]
    assert events[0].anomaly.peak_value == 14.0 and events[0].anomaly.measure == "rate (units/s)"
    events = feed(d, [frame(2.0 + i, temp_c=40.0) for i in range(1, 5)])
    assert kinds(events) == [
        ("AnomalyClosed", "rule:rate", "temp_c"),
        ("AnomalyOpened", "rule:stuck", "temp_c"),
    ]
    stuck = events[1].anomaly
    assert (stuck.started_mono, stuck.opened_mono, stuck.peak_value, stuck.priority) == (
        2.0,
        5.0,
        40.0,
        "low",
    )


def test_rules_are_per_source_unless_pinned() -> None:
    d = detector(
        [
            rule(channel="v", kind="limits", max=10, clear_after=0),
            rule(channel="v", kind="limits", max=5, source="b", clear_after=0),
        ]
    )
    events = feed(d, [frame(0.0, "a", v=11.0), frame(0.0, "b", v=11.0)])
    keys = sorted((e.anomaly.rule_id, e.anomaly.source) for e in events)
    assert keys == [("rule0:limits", "a"), ("rule0:limits", "b"), ("rule1:limits", "b")]
    # A clear sample on source a does not clear source b.
    events = feed(d, [frame(1.0, "a", v=1.0)])
    assert [(type(e).__name__, e.anomaly.source) for e in events] == [("AnomalyClosed", "a")]
    assert {(a.rule_id, a.source) for a in d.open_anomalies()} == {
        ("rule0:limits", "b"),
        ("rule1:limits", "b"),
    }


def test_dropout_by_time_and_recovery() -> None:
    d = detector([rule(channel="v", kind="dropout", dropout_after="1s", clear_after=0.5, source="bench")])
    assert d.tick(0.0, WALL0) == []  # starts the gap clock before any frame
    feed(d, [frame(0.1, v=1.0), frame(0.2, v=2.0)])
    assert d.tick(1.1, WALL0 + 1.1) == []
    # Frames that carry only other channels (or NaN) do not count for channel v.
    feed(d, [frame(1.15, w=1.0), frame(1.18, v=math.nan)])
    events = d.tick(1.25, WALL0 + 1.25)
    assert kinds(events) == [("AnomalyOpened", "rule:dropout", "v")]
    a = events[0].anomaly
    assert (a.started_mono, a.started_wall, a.threshold) == (0.2, WALL0 + 0.2, "no frame for >= 1s")
    assert a.peak_value == pytest.approx(1.05)
    assert d.tick(2.0, WALL0 + 2.0) == []  # still out: same anomaly
    assert feed(d, [frame(2.5, v=3.0)]) == []
    closed = d.tick(3.0, WALL0 + 3.0)
    assert kinds(closed) == [("AnomalyClosed", "rule:dropout", "v")] and closed[0].anomaly.ended_mono == 2.5


def test_source_that_never_sends_is_a_dropout() -> None:
    d = detector([rule(channel="*", kind="dropout", dropout_after=2)])
    assert d.tick(10.0, WALL0 + 10) == []
    events = d.tick(12.0, WALL0 + 12)
    assert [(e.anomaly.source, e.anomaly.channel) for e in events] == [("", "*")]
    # The first frame of a source retires the stand-in; the source gets a watch of its own.
    events = feed(d, [frame(12.5, "bench", v=1.0)])
    assert events == []
    feed(d, [frame(14.0, "bench", v=1.0)])
    closed = d.tick(14.5, WALL0 + 14.5)  # clear_after (2 s) since the first frame
    assert [(type(e).__name__, e.anomaly.source) for e in closed] == [("AnomalyClosed", "")]
    opened = d.tick(16.0, WALL0 + 16)
    assert [(type(e).__name__, e.anomaly.source) for e in opened] == [("AnomalyOpened", "bench")]


def test_unplug_opens_at_once_past_the_debounce_and_replug_clears() -> None:
    d = detector([rule(channel="*", kind="dropout", dropout_after=5, hold=3, hold_samples=4, clear_after=1)])
    feed(d, [frame(0.0, "bench", v=1.0), frame(0.0, "other", v=1.0)])
    events = d.on_link(LinkEvent("bench", LinkState.DOWN, 0.5, WALL0 + 0.5, reason="device disconnected"))
    assert kinds(events) == [("AnomalyOpened", "rule:dropout", "*")]
    a = events[0].anomaly
    assert (a.source, a.threshold, a.started_mono, a.opened_mono) == (
        "bench", "serial link down: device disconnected", 0.0, 0.5,
    )  # fmt: skip
    assert d.tick(1.0, WALL0 + 1) == []  # still down; "other" is fine
    assert d.on_link(LinkEvent("bench", LinkState.UP, 2.0, WALL0 + 2)) == []
    feed(d, [frame(2.2, "bench", v=1.0), frame(2.2, "other", v=1.0)])
    closed = d.tick(3.0, WALL0 + 3)
    assert kinds(closed) == [("AnomalyClosed", "rule:dropout", "*")] and closed[0].anomaly.ended_mono == 2.0


def test_link_up_without_frames_becomes_a_timed_dropout_again() -> None:
    d = detector([rule(channel="*", kind="dropout", dropout_after=1, clear_after=0.2)])
    feed(d, [frame(0.0, v=1.0)])
    d.on_link(LinkEvent("bench", LinkState.DOWN, 0.1, WALL0 + 0.1))
    d.on_link(LinkEvent("bench", LinkState.UP, 0.2, WALL0 + 0.2))
    assert kinds(d.tick(0.5, WALL0 + 0.5)) == [("AnomalyClosed", "rule:dropout", "*")]
    assert kinds(d.tick(1.2, WALL0 + 1.2)) == [("AnomalyOpened", "rule:dropout", "*")]


def test_link_events_without_dropout_rules_do_nothing() -> None:
    d = detector([rule(channel="v", kind="limits", max=1)])
    assert d.on_link(LinkEvent("bench", LinkState.DOWN, 0.0, WALL0)) == []


def test_baseline_warmup_then_sustained_departure() -> None:
    d = detector(
        [
            rule(channel="i", kind="baseline", baseline_warmup="5s", baseline_update="1s",
                 baseline_window="10s", baseline_k=6, hold="1s"),
        ]
    )  # fmt: skip
    noise = itertools.cycle([0.0, 0.01, -0.01, 0.02, -0.02])
    events = feed(d, [frame(i * 0.05, i=1.0 + next(noise)) for i in range(101)])  # 5 s at 20 Hz
    assert events == [] and d.learned_baselines()["bench"]["i"].median == pytest.approx(1.0)
    # A departure shorter than the hold does not open; a sustained one does.
    assert feed(d, [frame(5.1 + i * 0.05, i=2.0) for i in range(10)]) == []  # 0.45 s
    assert feed(d, [frame(5.7, i=1.0)]) == []
    events = feed(d, [frame(6.0 + i * 0.05, i=2.0) for i in range(21)])
    assert kinds(events) == [("AnomalyOpened", "rule:baseline", "i")]
    assert events[0].anomaly.opened_mono - events[0].anomaly.started_mono >= 1.0
    assert events[0].anomaly.threshold.startswith("above baseline band")


def test_baseline_rules_hold_three_samples_unless_told() -> None:
    stats = {"i": RobustStats(median=1.0, mad=0.01)}
    default, told = (
        detector([rule(channel="i", kind="baseline", baseline_file="b.json", **extra)],
                 load_baseline=lambda _path: stats)
        for extra in ({}, {"hold_samples": 1})
    )  # fmt: skip
    assert [len(feed(default, [frame(t, i=2.0)])) for t in (0.0, 0.1, 0.2)] == [0, 0, 1]
    assert len(feed(told, [frame(0.0, i=2.0)])) == 1
    limits = detector([rule(channel="i", kind="limits", max=1.5)])
    assert len(feed(limits, [frame(0.0, i=2.0)])) == 1  # other kinds still open on their first sample


def test_baseline_from_file(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dump_baselines({"i": RobustStats(median=1.0, mad=0.01)}))
    d = detector([rule(channel="i", kind="baseline", baseline_file=str(path), baseline_k=5, hold_samples=1)])
    assert feed(d, [frame(0.0, i=1.05)]) == []  # band 1 ± 0.074, no warm-up
    assert kinds(feed(d, [frame(0.1, i=1.1)])) == [("AnomalyOpened", "rule:baseline", "i")]


def test_bad_baseline_file_is_a_clear_config_error(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text('{"other": {"median": 1, "mad": 0.1}}')
    with pytest.raises(RuleConfigError, match=r"rules\[1\] \(baseline on i\): .*no entry for channel 'i'"):
        detector(
            [
                rule(channel="v", kind="limits", max=1),
                rule(channel="i", kind="baseline", baseline_file=str(path)),
            ]
        )
    with pytest.raises(RuleConfigError, match=r"rules\[0\].*cannot be read"):
        detector([rule(channel="i", kind="baseline", baseline_file=str(tmp_path / "missing.json"))])


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"channel": "v", "kind": "stuck", "stuck_for": 0}, "stuck_for must be > 0"),
        ({"channel": "v", "kind": "dropout", "dropout_after": 0}, "dropout_after must be > 0"),
    ],
)
def test_degenerate_rules_are_rejected(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(RuleConfigError, match=reason):
        detector([rule(**kwargs)])


def test_close_all_at_shutdown() -> None:
    d = detector(
        [rule(channel="v", kind="limits", max=1), rule(channel="*", kind="dropout", dropout_after=1)]
    )
    feed(d, [frame(0.0, v=5.0)])
    d.tick(2.0, WALL0 + 2)
    assert len(d.open_anomalies()) == 2
    closed = d.close_all(3.0, WALL0 + 3)
    assert all(isinstance(e, AnomalyClosed) and e.anomaly.close_reason == "shutdown" for e in closed)
    assert {e.anomaly.kind for e in closed} == {"rule:limits", "rule:dropout"} and d.open_anomalies() == []


# -- lens ---------------------------------------------------------------------------------------------


def inference(
    label: str, received: float, scores: dict[str, float] | None = None, source: str = "bench"
) -> LensInference:
    return LensInference(
        label=label, scores=scores or {}, source=source, session_id="lsn-1",
        window_start=WALL0 + received - 2.0, window_end=WALL0 + received - 1.0, received_at=WALL0 + received,
    )  # fmt: skip


def lens_detector(labels: list[str], min_score: float | None = None, clear_after: float = 2.0) -> Detector:
    options = LensAnomalyOptions(severity="medium", debounce=Debounce(clear_after=clear_after))
    return detector([], LensSection(anomaly_labels=labels, min_score=min_score), lens_options=options)


def test_lens_anomalous_label_opens_with_window_times() -> None:
    d = lens_detector(["fault", "ATTACK"])
    assert d.on_inference(inference("normal", 10.0), 110.0, WALL0 + 10.0) == []
    events = d.on_inference(inference("attack", 11.0, {"attack": 0.9, "normal": 0.1}), 111.0, WALL0 + 11.0)
    assert kinds(events) == [("AnomalyOpened", "lens", "")]
    a = events[0].anomaly
    assert (a.label, a.scores, a.peak_value, a.priority) == (
        "attack",
        {"attack": 0.9, "normal": 0.1},
        0.9,
        "medium",
    )
    assert (a.started_wall, a.started_mono) == (WALL0 + 9.0, 109.0)  # the window's start, on the mono clock
    assert (a.opened_wall, a.opened_mono) == (WALL0 + 10.0, 110.0)  # the window's end
    # A fault label continues the same anomaly (one per source), and the peak follows the score.
    assert d.on_inference(inference("FAULT", 12.0, {"FAULT": 0.95}), 112.0, WALL0 + 12.0) == []
    assert d.open_anomalies()[0].label == "FAULT"
    assert d.on_inference(inference("normal", 13.0), 113.0, WALL0 + 13.0) == []
    closed = d.tick(114.0, WALL0 + 14.0)
    assert kinds(closed) == [("AnomalyClosed", "lens", "")] and closed[0].anomaly.ended_wall == WALL0 + 12.0


@pytest.mark.parametrize("label", ["unknown", "Unknown", "normal", "", "faulty"])
def test_lens_unknown_and_other_labels_are_never_anomalous(label: str) -> None:
    d = lens_detector(["fault", "unknown"])
    assert d.on_inference(inference(label, 1.0, {label: 1.0}), 1.0, WALL0 + 1.0) == []


def test_lens_min_score() -> None:
    d = lens_detector(["fault"], min_score=0.8)
    assert d.on_inference(inference("fault", 1.0, {"fault": 0.79}), 1.0, WALL0 + 1) == []
    assert d.on_inference(inference("fault", 2.0), 2.0, WALL0 + 2) == []  # no score: cannot pass
    assert kinds(d.on_inference(inference("fault", 3.0, {"Fault": 0.8}), 3.0, WALL0 + 3)) == [
        ("AnomalyOpened", "lens", "")
    ]


def test_lens_without_scores_or_times_still_works() -> None:
    d = lens_detector(["fault"], clear_after=0.0)
    bare = LensInference("fault", {}, "bench", "lsn", None, None, WALL0)
    events = d.on_inference(bare, 50.0, WALL0 + 50)
    assert kinds(events) == [("AnomalyOpened", "lens", "")] and events[0].anomaly.peak_value == 1.0
    assert events[0].anomaly.started_mono == 50.0
    closed = d.on_inference(LensInference("normal", {}, "bench", "lsn", None, None, WALL0), 51.0, WALL0 + 51)
    assert kinds(closed) == [("AnomalyClosed", "lens", "")]


def test_no_lens_section_means_no_lens_anomalies() -> None:
    d = detector([])
    assert d.on_inference(inference("fault", 1.0), 1.0, WALL0 + 1) == []


# -- whole-detector property ----------------------------------------------------------------------------

_VALUE = st.one_of(
    st.floats(min_value=-20, max_value=40, allow_nan=False),
    st.just(math.nan),
    st.just(math.inf),
    st.just(12.0),
)
_STEP: st.SearchStrategy[tuple[str, str, dict[str, float]]] = st.one_of(
    st.tuples(
        st.just("frame"),
        st.sampled_from(["a", "b"]),
        st.dictionaries(st.sampled_from(["v", "i"]), _VALUE, max_size=2),
    ),
    st.tuples(st.just("tick"), st.just(""), st.just({})),
    st.tuples(st.just("down"), st.sampled_from(["a", "b"]), st.just({})),
    st.tuples(st.just("up"), st.sampled_from(["a", "b"]), st.just({})),
    st.tuples(
        st.just("lens"), st.sampled_from(["a", "b"]), st.sampled_from([{"fault": 0.9}, {"normal": 0.9}])
    ),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(_STEP, st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5])), max_size=150))
def test_any_input_sequence_keeps_one_open_anomaly_per_key(
    steps: list[tuple[tuple[str, str, dict[str, float]], float]],
) -> None:
    d = detector(
        [
            rule(channel="v", kind="limits", min=0, max=24, hold_samples=2, clear_after=0.5),
            rule(channel="v", kind="rate", max_rate=30, clear_after=0.2),
            rule(channel="v", kind="stuck", stuck_for=1),
            rule(
                channel="i",
                kind="baseline",
                baseline_warmup=1,
                baseline_update=0.5,
                baseline_window=5,
                hold=0.3,
            ),
            rule(channel="*", kind="dropout", dropout_after=1.5, clear_after=0.5),
            rule(channel="i", kind="dropout", dropout_after=2, source="a"),
        ],
        LensSection(anomaly_labels=["fault"]),
    )
    open_ids: dict[object, str] = {}
    all_ids: set[str] = set()
    t = 0.0
    for (what, source, payload), dt in steps:
        t += dt
        if what == "frame":
            events: Sequence[AnomalyEvent] = d.on_frame(Frame(source, t, WALL0 + t, dict(payload)))
        elif what == "tick":
            events = d.tick(t, WALL0 + t)
        elif what in ("down", "up"):
            state = LinkState.DOWN if what == "down" else LinkState.UP
            events = d.on_link(LinkEvent(source, state, t, WALL0 + t))
        else:
            label = next(iter(payload))
            events = d.on_inference(
                LensInference(label, payload, source, "lsn", WALL0 + t - 1, WALL0 + t, WALL0 + t),
                t,
                WALL0 + t,
            )
        for event in events:
            key = event.anomaly.key
            if isinstance(event, AnomalyOpened):
                assert key not in open_ids and event.anomaly.id not in all_ids
                open_ids[key] = event.anomaly.id
                all_ids.add(event.anomaly.id)
            elif isinstance(event, AnomalyClosed):
                assert open_ids.pop(key) == event.anomaly.id
        assert {a.key: a.id for a in d.open_anomalies()} == open_ids
    for event in d.close_all(t + 1, WALL0 + t + 1):
        assert open_ids.pop(event.anomaly.key) == event.anomaly.id
    assert open_ids == {}
