"""The detector's batch path (`Detector.on_batch`, edge_agent/detect/batch.py) against the per-frame path
(`Detector.on_frame` of each frame the batch stands for): on random rule sets and random streams of
batches, ticks and link events, both give the same anomaly events, in the same order, handed on after
the same frames. The streams mix quiet stretches (the batch path's C-level passes), excursions, equal
and gapped times, and NaN, ±inf, 1e308 and subnormal values (which go frame by frame)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import RuleSection
from edge_agent.detect import AnomalyEvent, Detector
from edge_agent.frames import FrameBatch, LinkEvent, LinkState

WALL0 = 1_700_000_000.0
CHANNELS = ("a", "b", "c")
SPECIAL = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0]

debounce = st.fixed_dictionaries(
    {
        "hold_samples": st.integers(1, 3),
        "hold": st.sampled_from([0.0, 0.0, 0.004, 0.02]),
        "clear_after": st.sampled_from([0.0, 0.003, 0.02, 0.1]),
    }
)
channel = st.sampled_from(CHANNELS)
rule = st.one_of(
    st.fixed_dictionaries(
        {"kind": st.just("limits"), "channel": channel, "min": st.just(-3.0), "max": st.floats(1.0, 4.0)}
    ),
    st.fixed_dictionaries(
        {"kind": st.just("rate"), "channel": channel, "max_rate": st.sampled_from([50.0, 400.0, 5000.0])}
    ),
    st.fixed_dictionaries(
        {"kind": st.just("stuck"), "channel": channel, "stuck_for": st.sampled_from([0.005, 0.03, 0.2])}
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("dropout"),
            "channel": st.sampled_from([*CHANNELS, "*"]),
            "dropout_after": st.sampled_from([0.01, 0.05, 0.3]),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("baseline"),
            "channel": channel,
            "baseline_k": st.sampled_from([1.0, 3.0]),
            "baseline_warmup": st.sampled_from([0.02, 0.05]),
            "baseline_update": st.sampled_from([0.01, 0.03]),
            "baseline_window": st.sampled_from([0.0, 0.06]),
            "baseline_relearn_after": st.sampled_from([0.0, 0.03]),
        }
    ),
)
rules = st.lists(st.tuples(rule, debounce).map(lambda pair: {**pair[0], **pair[1]}), min_size=1, max_size=5)


@st.composite
def streams(draw: Any) -> list[tuple[str, Any]]:
    """Steps: ("batch", FrameBatch), ("tick", dt) or ("link", state), on one source's timeline."""
    steps: list[tuple[str, Any]] = []
    t = 0.0
    level = 0.0
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["batch"] * 6 + ["tick", "link"]))
        if kind == "tick":
            steps.append(("tick", draw(st.sampled_from([0.0, 0.01, 0.2, 1.0]))))
            continue
        if kind == "link":
            steps.append(("link", draw(st.sampled_from([LinkState.DOWN, LinkState.UP]))))
            continue
        names = draw(st.sampled_from([CHANNELS, ("a", "b"), ("c", "a", "b"), ("b",)]))
        rows = draw(st.integers(1, 12))
        t += draw(st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5]))
        monos = []
        values = []
        special = draw(st.integers(0, 4)) == 0  # one batch in five has an extreme value somewhere
        for _ in range(rows):
            t += draw(st.sampled_from([0.0, 0.001, 0.001, 0.001, 0.002, 0.005, 0.04]))
            monos.append(t)
            step = draw(
                st.sampled_from([0.0, 0.0, 0.01, -0.01, 0.3, -0.3, 5.0, -5.0])
                | st.floats(-0.5, 0.5)
                | st.floats(-6, 6)
            )
            level = max(-8.0, min(8.0, level + step))
            for _ in names:
                values.append(level + draw(st.sampled_from([0.0, 0.0, 0.001, -0.002])))
        if special:
            values[draw(st.integers(0, len(values) - 1))] = draw(st.sampled_from(SPECIAL))
        steps.append(("batch", FrameBatch("bench", WALL0 + t, names, monos, values)))
    return steps


def make(rule_set: Sequence[dict[str, Any]]) -> Detector:
    numbers = itertools.count(1)
    return Detector([RuleSection.model_validate(r) for r in rule_set], new_id=lambda: f"a{next(numbers)}")


Handed = list[tuple[str, list[AnomalyEvent]]]


def run(detector: Detector, steps: list[tuple[str, Any]], *, batched: bool) -> Handed:
    """What the detector hands on, in order, each group tagged with where it came from."""
    out: Handed = []
    t = 0.0
    for kind, item in steps:
        if kind == "batch":
            t = item.monos[-1]
            if batched:
                detector.on_batch(item, lambda events: out.append(("frame", list(events))))
            else:
                for frame in item.frames():
                    events = detector.on_frame(frame)
                    if events:
                        out.append(("frame", list(events)))
        elif kind == "tick":
            t += item
            out.append(("tick", detector.tick(t, WALL0 + t)))
        else:
            out.append(("link", detector.on_link(LinkEvent("bench", item, t, WALL0 + t, "unplugged"))))
    out.append(("close", list(detector.close_all(t + 10.0, WALL0 + t + 10.0))))
    return out


@settings(max_examples=100, deadline=None)
@given(rule_set=rules, steps=streams())
def test_batches_give_what_their_frames_give(rule_set: list[dict[str, Any]], steps: list[Any]) -> None:
    assert run(make(rule_set), steps, batched=True) == run(make(rule_set), steps, batched=False)


def test_a_quiet_batch_takes_the_batch_path() -> None:
    """Finite values inside every rule: no frame is made and no per-frame call happens."""
    detector = make(
        [
            {"kind": "limits", "channel": "a", "min": -1.0, "max": 1.0},
            {"kind": "rate", "channel": "b", "max_rate": 100.0},
            {"kind": "dropout", "channel": "*", "dropout_after": 1.0},
        ]
    )
    first = FrameBatch("bench", WALL0, CHANNELS, [0.0], [0.0, 0.0, 0.0])
    detector.on_batch(first, lambda events: None)  # a source's first frame goes frame by frame
    calls = []
    detector.on_frame = lambda frame: calls.append(frame) or ()  # type: ignore[method-assign]
    emitted: list[Sequence[AnomalyEvent]] = []
    monos = [0.001 * k for k in range(1, 41)]
    batch = FrameBatch("bench", WALL0, CHANNELS, monos, _rows(monos))
    detector.on_batch(batch, emitted.append)
    assert calls == [] and emitted == []
    assert detector.tick(0.05, WALL0) == []  # the dropout watch saw the last frame at 0.04


def _rows(monos: list[float]) -> list[float]:
    return [value for k in range(len(monos)) for value in (0.5, 0.01 * k, 7.0)]


def test_an_excursion_in_a_batch_opens_where_its_frame_would() -> None:
    detector = make([{"kind": "limits", "channel": "a", "max": 1.0, "clear_after": 0.0}])
    detector.on_batch(FrameBatch("bench", WALL0, ("a",), [0.0], [0.0]), lambda events: None)
    emitted: list[Sequence[AnomalyEvent]] = []
    batch = FrameBatch("bench", WALL0, ("a",), [0.1, 0.2, 0.3, 0.4], [0.0, 2.0, 3.0, 0.0])
    detector.on_batch(batch, emitted.append)
    assert [[type(e).__name__ for e in group] for group in emitted] == [["AnomalyOpened"], ["AnomalyClosed"]]
    opened, closed = emitted[0][0].anomaly, emitted[1][0].anomaly
    assert opened.started_mono == 0.2 and closed.peak_value == 3.0 and closed.closed_mono == 0.4


def _near(rng: random.Random, threshold: float) -> float:
    """A magnitude at, just inside or just past `threshold`, or well either side of it."""
    factor = rng.choice([1.0, 1.0 - 1e-12, 1.0 + 1e-12, 0.5, 0.9, 1.1, 1.9, 2.5])
    return threshold * factor * rng.choice([1.0, -1.0])


def _threshold_stream(rng: random.Random, rule_set: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Batches of strictly increasing times whose values sit at the rules' thresholds: what the
    C-level all-clear tests decide on."""
    limit = next((r["max"] for r in rule_set if r["kind"] == "limits"), 1.0)
    max_rate = next((r["max_rate"] for r in rule_set if r["kind"] == "rate"), 10.0)
    after = next((r["dropout_after"] for r in rule_set if r["kind"] == "dropout"), 0.1)
    steps: list[tuple[str, Any]] = []
    t, level = 0.0, 0.0
    for _ in range(12):
        monos, values = [], []
        for _ in range(rng.randint(1, 10)):
            dt = rng.choice([0.001, 0.002, after, after * (1 - 1e-12)])
            t += dt
            level = level + _near(rng, max_rate) * dt if rng.random() < 0.7 else _near(rng, limit)
            monos.append(t)
            values.append(level)
        steps.append(("batch", FrameBatch("bench", WALL0 + t, ("a",), monos, values)))
        if rng.random() < 0.2:
            steps.append(("tick", rng.choice([0.0, after])))
    return steps


def test_batches_at_the_thresholds_give_what_their_frames_give() -> None:
    for seed in range(120):
        rng = random.Random(seed)
        rule_set: list[dict[str, Any]] = [
            {"kind": "limits", "channel": "a", "min": -rng.choice([1.0, 3.0]), "max": rng.choice([1.0, 3.0])},
            {"kind": "rate", "channel": "a", "max_rate": rng.choice([10.0, 100.0])},
            {"kind": "dropout", "channel": rng.choice(["a", "*"]),
             "dropout_after": rng.choice([0.003, 0.01])},
            {"kind": "baseline", "channel": "a", "baseline_warmup": 0.01, "baseline_update": 0.005,
             "baseline_window": rng.choice([0.0, 0.02]), "baseline_relearn_after": rng.choice([0.0, 0.004])},
        ]  # fmt: skip
        rng.shuffle(rule_set)
        steps = _threshold_stream(rng, rule_set)
        assert run(make(rule_set), steps, batched=True) == run(make(rule_set), steps, batched=False), seed


def test_baseline_batches_give_what_their_frames_give() -> None:
    """A baseline band learned and kept (static) or rolling, relearned after gaps: quiet batches skip
    whole stretches at once (`BaselineCheck.skip`), outliers and block ends go sample by sample."""
    for seed in range(60):
        rng = random.Random(seed)
        rule_set: list[dict[str, Any]] = [
            {"kind": "baseline", "channel": "a", "baseline_k": 4.0, "baseline_warmup": 0.02,
             "baseline_update": 0.01, "baseline_window": rng.choice([0.0, 0.03]),
             "baseline_relearn_after": rng.choice([0.0, 0.005]), "hold_samples": 1},
        ]  # fmt: skip
        steps: list[tuple[str, Any]] = []
        t = 0.0
        for _ in range(40):
            monos, values = [], []
            t += rng.choice([0.0005, 0.0005, 0.0005, 0.004, 0.006])
            for _ in range(rng.randint(1, 8)):
                t += 0.0005
                monos.append(t)
                values.append(rng.gauss(0.0, 1.0) if rng.random() > 0.03 else rng.choice([-30.0, 30.0]))
            steps.append(("batch", FrameBatch("bench", WALL0 + t, ("a",), monos, values)))
        assert run(make(rule_set), steps, batched=True) == run(make(rule_set), steps, batched=False), seed
