"""Non-finite and extreme values: what NaN, ±inf, 1e308, subnormals and overflowing differences mean to
every rule and to the lens path, and that no anomaly (nor its JSON summary) ever holds NaN or ±inf."""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.atlas.narrative import anomaly_summary
from edge_agent.config import LensSection, RuleSection
from edge_agent.detect import Anomaly, AnomalyEvent, AnomalyOpened, Detector
from edge_agent.frames import Frame
from edge_agent.lens.protocol import LensInference

MAX = sys.float_info.max
WALL0 = 1_700_000_000.0


def detector(*rules: dict[str, Any], lens: bool = False) -> Detector:
    numbers = itertools.count(1)
    section = LensSection(anomaly_labels=["fault"], min_score=0.5) if lens else None
    return Detector(
        [RuleSection.model_validate(r) for r in rules], section, new_id=lambda: f"a{next(numbers)}"
    )


def frame(t: float, **values: float) -> Frame:
    return Frame("bench", t, WALL0 + t, dict(values))


def feed(d: Detector, frames: Sequence[Frame]) -> list[AnomalyEvent]:
    return [event for f in frames for event in d.on_frame(f)]


def assert_json_safe(anomaly: Anomaly) -> None:
    for f in fields(anomaly):
        value = getattr(anomaly, f.name)
        if isinstance(value, float):
            assert math.isfinite(value), f"{f.name} = {value!r}"
    assert all(math.isfinite(x) for x in anomaly.scores.values())
    json.dumps(anomaly_summary(anomaly, "bench-1"), allow_nan=False)


def test_one_1e308_sample_on_a_rate_rule_is_the_largest_finite_rate() -> None:
    # The issue-12 reproduction: 12 -> 1e308 in 20 ms overflows (1e308 / 0.02) to inf.
    d = detector({"channel": "v", "kind": "rate", "max_rate": 5.0})
    events = feed(d, [frame(0.0, v=12.0), frame(0.02, v=1e308)])
    assert len(events) == 1 and isinstance(events[0], AnomalyOpened)
    anomaly = events[0].anomaly
    assert anomaly.peak_value == MAX and anomaly.peak_excursion == MAX
    assert_json_safe(anomaly)
    down = feed(d, [frame(0.04, v=-1e308)])  # the difference itself overflows (-2e308)
    assert down == []  # still the same open anomaly; its peak stays finite
    assert_json_safe(d.open_anomalies()[0])


def test_infinity_is_an_off_scale_reading_for_every_rule() -> None:
    d = detector(
        {"channel": "v", "kind": "limits", "min": 0, "max": 10},
        {"channel": "v", "kind": "stuck", "stuck_for": 1},
        {"channel": "v", "kind": "dropout", "dropout_after": 1},
    )
    events = feed(d, [frame(0.0, v=5.0), frame(0.1, v=math.inf)])
    assert [e.anomaly.kind for e in events] == ["rule:limits"]
    limits = events[0].anomaly
    assert limits.peak_value == MAX and limits.threshold == "max 10" and limits.peak_excursion == MAX - 10
    assert_json_safe(limits)
    # Pinned off-scale is a stuck reading, and the channel is alive (no dropout).
    events = feed(d, [frame(0.1 + 0.25 * i, v=math.inf) for i in range(1, 6)])
    assert [e.anomaly.kind for e in events] == ["rule:stuck"]
    assert d.tick(1.4, WALL0 + 1.4) == []
    assert feed(d, [frame(1.5, v=-math.inf)]) == []  # off-scale the other way: a change, still past a limit
    by_kind = {a.kind: a for a in d.open_anomalies()}
    assert set(by_kind) == {"rule:limits", "rule:stuck"} and by_kind["rule:limits"].peak_value == MAX
    for anomaly in by_kind.values():
        assert_json_safe(anomaly)


def test_nan_is_a_missing_sample_for_every_rule() -> None:
    d = detector(
        {"channel": "v", "kind": "limits", "min": 0, "max": 10},
        {"channel": "v", "kind": "rate", "max_rate": 1},
        {"channel": "v", "kind": "stuck", "stuck_for": 1},
        {
            "channel": "v",
            "kind": "baseline",
            "baseline_warmup": 0.2,
            "baseline_update": 0.1,
            "baseline_window": 1,
        },
        {"channel": "v", "kind": "dropout", "dropout_after": 1},
    )
    assert feed(d, [frame(0.0, v=5.0)] + [frame(0.1 * i, v=math.nan) for i in range(1, 15)]) == []
    # Only NaN for 1.4 s: the channel is in dropout, and nothing else happened.
    events = d.tick(1.5, WALL0 + 1.5)
    assert [e.anomaly.kind for e in events] == ["rule:dropout"]
    assert feed(d, [frame(1.6)]) == []  # a frame without the channel is not a sample of it either


def test_limit_excursion_that_overflows_is_clamped() -> None:
    d = detector({"channel": "v", "kind": "limits", "max": -1e308, "hold_samples": 1})
    events = feed(d, [frame(0.0, v=1e308)])
    anomaly = events[0].anomaly
    assert anomaly.peak_value == 1e308 and anomaly.peak_excursion == MAX  # 1e308 - (-1e308) overflows
    assert_json_safe(anomaly)


def test_subnormal_values_are_ordinary_numbers() -> None:
    tiny = 5e-324
    d = detector(
        {"channel": "v", "kind": "limits", "max": tiny},
        {"channel": "v", "kind": "rate", "max_rate": 1e-300},
    )
    events = feed(d, [frame(0.0, v=0.0), frame(1.0, v=tiny), frame(2.0, v=2 * tiny)])
    kinds = [e.anomaly.kind for e in events]
    assert kinds == ["rule:limits"]  # a rate of 5e-324/s is below 1e-300/s; 1e-323 is above max
    assert events[0].anomaly.peak_excursion == tiny


def test_lens_scores_that_are_not_finite_are_no_score() -> None:
    d = detector(lens=True)  # min_score 0.5
    inference = LensInference("fault", {"fault": math.nan, "normal": 0.1}, "bench", "s", None, None, WALL0)
    assert d.on_inference(inference, 1.0, WALL0 + 1) == []  # a NaN score does not meet min_score
    infinite = LensInference("fault", {"fault": math.inf}, "bench", "s", None, None, WALL0)
    assert d.on_inference(infinite, 2.0, WALL0 + 2) == []
    mixed = LensInference("fault", {"fault": 0.9, "normal": -math.inf}, "bench", "s", None, None, WALL0)
    events = d.on_inference(mixed, 3.0, WALL0 + 3)
    assert len(events) == 1 and events[0].anomaly.scores == {"fault": 0.9}
    assert_json_safe(events[0].anomaly)


EXTREMES = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    MAX,
    -MAX,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    0.0,
]
VALUES = st.one_of(st.sampled_from(EXTREMES), st.floats(), st.floats(-100.0, 100.0))
THRESHOLDS = st.one_of(st.sampled_from([1e308, -1e308, 5e-324, 0.0, MAX]), st.floats(-1e3, 1e3))
POSITIVE = st.one_of(st.sampled_from([5e-324, 1e-300, 1e308, MAX]), st.floats(1e-6, 1e3))
K = st.one_of(st.sampled_from([5e-324, 1e-300, 1000.0]), st.floats(1e-6, 1e3))  # config allows (0, 1000]
DT = st.sampled_from([0.0, 1e-9, 1e-3, 0.05, 0.5, 2.0, 700.0])


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    low, high = sorted((draw(THRESHOLDS), draw(THRESHOLDS)))
    bounds: dict[str, float] = {"min": low, "max": high} if low < high else {"max": high}
    return [
        {"channel": "v", "kind": "limits", **bounds, "hold_samples": draw(st.integers(1, 3))},
        {"channel": "v", "kind": "rate", "max_rate": draw(POSITIVE)},
        {"channel": "v", "kind": "stuck", "stuck_for": draw(st.sampled_from([0.001, 1.0]))},
        {"channel": "v", "kind": "dropout", "dropout_after": 1.0},
        {"channel": "v", "kind": "baseline", "baseline_k": draw(K), "baseline_warmup": 0.5,
         "baseline_update": 0.5, "baseline_window": 2.0, "baseline_relearn_after": 100.0,
         "hold_samples": draw(st.integers(1, 3))},
        {"channel": "*", "kind": "dropout", "dropout_after": 1.0},
    ]  # fmt: skip


STEP = st.one_of(
    st.tuples(st.just("frame"), DT, VALUES),
    st.tuples(st.just("tick"), DT, st.just(0.0)),
    st.tuples(st.just("lens"), DT, st.tuples(VALUES, VALUES, st.one_of(st.none(), VALUES), st.booleans())),
)


@settings(max_examples=300, deadline=None)
@given(rules=rule_sets(), steps=st.lists(STEP, max_size=120))
def test_any_floats_through_every_rule_give_finite_anomalies_and_json_safe_summaries(
    rules: list[dict[str, Any]], steps: list[tuple[str, float, Any]]
) -> None:
    numbers = itertools.count(1)
    d = Detector(
        [RuleSection.model_validate(r) for r in rules],
        LensSection(anomaly_labels=["fault"], min_score=0.5),
        new_id=lambda: f"a{next(numbers)}",
    )
    t = 0.0
    events: list[AnomalyEvent] = []
    for what, dt, value in steps:
        t += dt
        if what == "frame":
            events.extend(d.on_frame(frame(t, v=value)))
        elif what == "tick":
            events.extend(d.tick(t, WALL0 + t))
        else:
            fault, normal, odd_time, at_start = value
            scores = {"fault": fault, "normal": normal}
            window: list[float | None] = [WALL0 + t - 1.0, WALL0 + t]
            window[0 if at_start else 1] = odd_time  # a window time that is missing, absurd or not finite
            inference = LensInference("fault", scores, "bench", "s", window[0], window[1], WALL0 + t)
            events.extend(d.on_inference(inference, t, WALL0 + t))
    events.extend(d.close_all(t + 1.0, WALL0 + t + 1.0))
    for event in events:
        assert_json_safe(event.anomaly)
