"""AnomalyTracker: unit cases and hypothesis properties (debounce, clear, one open anomaly per key)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.detect.anomaly import AnomalyClosed, AnomalyEvent, AnomalyKey, AnomalyOpened, AnomalyUpdated
from edge_agent.detect.tracker import AnomalySpec, AnomalyTracker, Debounce

KEYS = [
    AnomalyKey("rule0:limits", "bench", "v"),
    AnomalyKey("rule0:limits", "bench", "i"),
    AnomalyKey("lens", "bench", ""),
]


def spec(
    hold: float = 0.0, hold_samples: int = 1, clear_after: float = 0.0, severity: str = "high"
) -> AnomalySpec:
    return AnomalySpec(
        kind="rule:limits", description="v outside [0, 10]", severity=severity,  # type: ignore[arg-type]
        measure="value", debounce=Debounce(hold, hold_samples, clear_after),
    )  # fmt: skip


def counter_ids() -> AnomalyTracker:
    numbers = itertools.count(1)
    return AnomalyTracker(new_id=lambda: f"id-{next(numbers)}")


def test_opens_at_once_with_default_debounce() -> None:
    tracker = counter_ids()
    event = tracker.observe(KEYS[0], spec(), True, 11.0, 1.0, 1001.0, excursion=1.0, threshold="max 10")
    assert isinstance(event, AnomalyOpened)
    anomaly = event.anomaly
    assert (anomaly.id, anomaly.started_mono, anomaly.opened_mono, anomaly.samples) == ("id-1", 1.0, 1.0, 1)
    assert (anomaly.peak_value, anomaly.threshold, anomaly.priority, anomaly.kind) == (
        11.0,
        "max 10",
        "high",
        "rule:limits",
    )
    assert anomaly.is_open and anomaly.ended_mono is None
    assert tracker.is_open(KEYS[0]) and [a.id for a in tracker.open_anomalies()] == ["id-1"]


def test_hold_samples_need_consecutive_active_samples() -> None:
    tracker = counter_ids()
    s = spec(hold_samples=3)
    assert tracker.observe(KEYS[0], s, True, 11.0, 0.0, 0.0) is None
    assert tracker.observe(KEYS[0], s, True, 11.0, 0.1, 0.1) is None
    assert tracker.observe(KEYS[0], s, False, 5.0, 0.2, 0.2) is None  # breaks the streak
    assert tracker.observe(KEYS[0], s, True, 11.0, 0.3, 0.3) is None
    assert tracker.observe(KEYS[0], s, True, 11.0, 0.4, 0.4) is None
    event = tracker.observe(KEYS[0], s, True, 11.0, 0.5, 0.5)
    assert isinstance(event, AnomalyOpened)
    assert event.anomaly.started_mono == 0.3 and event.anomaly.samples == 3


def test_hold_seconds_counts_from_first_sample_of_streak() -> None:
    tracker = counter_ids()
    s = spec(hold=1.0)
    assert tracker.observe(KEYS[0], s, True, 11.0, 10.0, 10.0) is None
    assert tracker.observe(KEYS[0], s, True, 11.0, 10.99, 10.99) is None
    event = tracker.observe(KEYS[0], s, True, 11.0, 11.0, 11.0)
    assert isinstance(event, AnomalyOpened) and event.anomaly.started_mono == 10.0


def test_peak_is_the_worst_excursion_and_samples_count() -> None:
    tracker = counter_ids()
    s = spec(clear_after=1.0)
    for t, value in enumerate([11.0, 15.0, 12.0]):
        tracker.observe(KEYS[0], s, True, value, float(t), 100.0 + t, excursion=value - 10.0)
    tracker.observe(KEYS[0], s, False, 5.0, 3.0, 103.0)
    event = tracker.observe(KEYS[0], s, False, 5.0, 4.0, 104.0)
    assert isinstance(event, AnomalyClosed)
    a = event.anomaly
    assert (a.peak_value, a.peak_excursion, a.peak_mono, a.peak_wall, a.samples) == (15.0, 5.0, 1.0, 101.0, 3)
    assert (a.ended_mono, a.ended_wall, a.closed_mono, a.closed_wall, a.close_reason) == (
        3.0,
        103.0,
        4.0,
        104.0,
        "cleared",
    )


def test_active_sample_while_clearing_restarts_the_clear_timer() -> None:
    tracker = counter_ids()
    s = spec(clear_after=2.0)
    tracker.observe(KEYS[0], s, True, 11.0, 0.0, 0.0)
    tracker.observe(KEYS[0], s, False, 5.0, 1.0, 1.0)
    tracker.observe(KEYS[0], s, True, 11.0, 2.0, 2.0)
    tracker.observe(KEYS[0], s, False, 5.0, 2.5, 2.5)
    assert tracker.tick(4.0, 4.0) == []  # 1.5 s clear only
    events = tracker.tick(4.5, 4.5)
    assert len(events) == 1 and isinstance(events[0], AnomalyClosed)
    assert events[0].anomaly.ended_mono == 2.5 and events[0].anomaly.samples == 2


def test_tick_closes_a_quiet_anomaly_and_nothing_else() -> None:
    tracker = counter_ids()
    tracker.observe(KEYS[0], spec(clear_after=1.0), True, 11.0, 0.0, 0.0)
    tracker.observe(KEYS[1], spec(clear_after=1.0), True, 11.0, 0.0, 0.0)  # stays active
    tracker.observe(KEYS[0], spec(clear_after=1.0), False, 5.0, 0.5, 0.5)
    assert tracker.tick(1.0, 1.0) == []
    events = tracker.tick(1.5, 1.5)
    assert [type(e) for e in events] == [AnomalyClosed] and events[0].anomaly.key == KEYS[0]
    assert tracker.is_open(KEYS[1]) and not tracker.is_open(KEYS[0])


def test_close_all_closes_open_and_forgets_streaks() -> None:
    tracker = counter_ids()
    tracker.observe(KEYS[0], spec(), True, 11.0, 0.0, 0.0)
    tracker.observe(KEYS[1], spec(hold_samples=2), True, 11.0, 0.0, 0.0)
    closed = tracker.close_all(5.0, 105.0)
    assert [c.anomaly.key for c in closed] == [KEYS[0]]
    assert (closed[0].anomaly.ended_mono, closed[0].anomaly.close_reason) == (5.0, "shutdown")
    assert tracker.open_anomalies() == []
    # The half-done streak of KEYS[1] was forgotten: one more active sample does not open it.
    assert tracker.observe(KEYS[1], spec(hold_samples=2), True, 11.0, 6.0, 106.0) is None


def test_times_never_run_backwards_per_key() -> None:
    tracker = counter_ids()
    s = spec(hold=1.0, clear_after=1.0)
    tracker.observe(KEYS[0], s, True, 11.0, 5.0, 5.0)
    # An out-of-order sample at t=3 is taken as t=5: it cannot satisfy the hold.
    assert tracker.observe(KEYS[0], s, True, 11.0, 3.0, 3.0) is None
    assert isinstance(tracker.observe(KEYS[0], s, True, 11.0, 6.0, 6.0), AnomalyOpened)


def test_update_every_reports_progress_from_tick() -> None:
    numbers = itertools.count(1)
    tracker = AnomalyTracker(new_id=lambda: f"id-{next(numbers)}", update_every=10.0)
    tracker.observe(KEYS[0], spec(), True, 11.0, 0.0, 0.0)
    assert tracker.tick(9.0, 9.0) == []
    events = tracker.tick(10.0, 10.0)
    assert len(events) == 1 and isinstance(events[0], AnomalyUpdated) and events[0].anomaly.id == "id-1"
    assert tracker.tick(15.0, 15.0) == []
    assert isinstance(tracker.tick(20.0, 20.0)[0], AnomalyUpdated)


def test_snapshots_do_not_change_after_the_event() -> None:
    tracker = counter_ids()
    opened = tracker.observe(KEYS[0], spec(), True, 11.0, 0.0, 0.0, excursion=1.0)
    tracker.observe(KEYS[0], spec(), True, 50.0, 1.0, 1.0, excursion=40.0)
    assert isinstance(opened, AnomalyOpened) and opened.anomaly.peak_value == 11.0
    assert tracker.open_anomalies()[0].peak_value == 50.0


def test_default_ids_are_uuid4() -> None:
    import uuid

    event = AnomalyTracker().observe(KEYS[0], spec(), True, 11.0, 0.0, 0.0)
    assert isinstance(event, AnomalyOpened) and uuid.UUID(event.anomaly.id).version == 4


@pytest.mark.parametrize(
    "kwargs", [{"hold": -1.0}, {"hold": math.nan}, {"clear_after": math.inf}, {"hold_samples": 0}]
)
def test_debounce_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Debounce(**kwargs)  # type: ignore[arg-type]


def test_update_every_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AnomalyTracker(update_every=0.0)


# -- properties ---------------------------------------------------------------------------------------

_DT = st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0])
_OP = st.one_of(
    st.tuples(st.just("obs"), st.integers(0, len(KEYS) - 1), st.booleans(), _DT),
    st.tuples(st.just("tick"), st.just(0), st.just(False), _DT),
)
_DEBOUNCE = st.builds(
    Debounce,
    hold=st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5]),
    hold_samples=st.integers(1, 5),
    clear_after=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]),
)


@dataclass
class _Model:
    """What the tracker must have seen for a key, kept as plain history (not as the tracker's state)."""

    open_id: str | None = None
    streak: list[float] = field(default_factory=list)  # times of consecutive active samples, not open
    clear_since: float | None = None  # first clear sample since the last active one, while open
    active_after_open: int = 0


def _debounced(model: _Model, debounce: Debounce) -> bool:
    s = model.streak
    return len(s) >= debounce.hold_samples and s[-1] - s[0] >= debounce.hold


def _cleared(model: _Model, debounce: Debounce, now: float) -> bool:
    return model.clear_since is not None and now - model.clear_since >= debounce.clear_after


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(_OP, max_size=120), debounces=st.lists(_DEBOUNCE, min_size=len(KEYS), max_size=len(KEYS)))
def test_tracker_matches_debounce_and_clear_rules(
    ops: list[tuple[str, int, bool, float]], debounces: list[Debounce]
) -> None:
    tracker = counter_ids()
    specs = [AnomalySpec("rule:limits", "d", "medium", "value", d) for d in debounces]
    models = [_Model() for _ in KEYS]
    seen_ids: set[str] = set()
    now = 0.0
    for op, index, active, dt in ops:
        now += dt
        if op == "obs":
            key, model, debounce = KEYS[index], models[index], debounces[index]
            event = tracker.observe(key, specs[index], active, 1.0, now, 1000.0 + now, excursion=1.0)
            if model.open_id is None:
                model.streak = [*model.streak, now] if active else []
                if active and _debounced(model, debounce):
                    # Opens exactly when both hold and hold_samples are met, never before.
                    assert isinstance(event, AnomalyOpened), (model, debounce)
                    anomaly = event.anomaly
                    assert anomaly.id not in seen_ids
                    seen_ids.add(anomaly.id)
                    assert anomaly.started_mono == model.streak[0] and anomaly.opened_mono == now
                    assert anomaly.samples == len(model.streak) >= debounce.hold_samples
                    assert anomaly.opened_mono - anomaly.started_mono >= debounce.hold
                    model.open_id, model.streak, model.clear_since = anomaly.id, [], None
                else:
                    assert event is None
            else:
                if active:
                    model.clear_since = None
                    assert event is None
                else:
                    if model.clear_since is None:
                        model.clear_since = now
                    if _cleared(model, debounce, now):
                        _check_closed(event, model, debounce, now)
                    else:
                        assert event is None
        else:
            events = tracker.tick(now, 1000.0 + now)
            closed_keys = []
            for event in events:
                assert isinstance(event, AnomalyClosed)
                closed_keys.append(event.anomaly.key)
                index = KEYS.index(event.anomaly.key)
                _check_closed(event, models[index], debounces[index], now)
            assert len(closed_keys) == len(set(closed_keys))
            for index, model in enumerate(models):
                # Closes exactly when clear for clear_after (tick catches quiet keys), never before.
                if model.open_id is not None:
                    assert not _cleared(model, debounces[index], now), "tick left a cleared anomaly open"
        # At most one open anomaly per key, and the tracker agrees with the model about which.
        open_now = tracker.open_anomalies()
        assert len({a.key for a in open_now}) == len(open_now)
        assert {a.key: a.id for a in open_now} == {
            KEYS[i]: m.open_id for i, m in enumerate(models) if m.open_id is not None
        }


def _check_closed(event: object, model: _Model, debounce: Debounce, now: float) -> None:
    assert isinstance(event, AnomalyClosed)
    anomaly = event.anomaly
    assert anomaly.id == model.open_id  # closes the anomaly that was open: opened/closed alternate
    assert model.clear_since is not None and anomaly.ended_mono == model.clear_since
    assert anomaly.closed_mono == now and now - model.clear_since >= debounce.clear_after
    assert anomaly.started_mono <= anomaly.opened_mono <= anomaly.ended_mono <= anomaly.closed_mono
    assert anomaly.close_reason == "cleared"
    model.open_id, model.clear_since, model.streak = None, None, []


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.booleans(), _DT, st.booleans()), max_size=150),
    debounce=_DEBOUNCE,
)
def test_events_alternate_per_key_and_ids_are_unique(
    ops: list[tuple[int, bool, float, bool]], debounce: Debounce
) -> None:
    tracker = AnomalyTracker()  # real uuid4 ids
    s = AnomalySpec("rule:limits", "d", "low", "value", debounce)
    history: dict[AnomalyKey, list[AnomalyEvent]] = {key: [] for key in KEYS}
    ids: list[str] = []
    now = 0.0
    for index, active, dt, tick in ops:
        now += dt
        events = tracker.tick(now, now) if tick else []
        event = tracker.observe(KEYS[index], s, active, 1.0, now, now)
        for e in [*events, *([event] if event else [])]:
            assert isinstance(e, AnomalyOpened | AnomalyClosed)
            history[e.anomaly.key].append(e)
            if isinstance(e, AnomalyOpened):
                ids.append(e.anomaly.id)
    for e in tracker.close_all(now + 1.0, now + 1.0):
        history[e.anomaly.key].append(e)
    assert len(ids) == len(set(ids))
    for events in history.values():
        # Opened, Closed, Opened, Closed, ... each Closed naming the id its Opened gave.
        assert [type(e) for e in events] == [AnomalyOpened, AnomalyClosed] * (len(events) // 2)
        for opened, closed in zip(events[::2], events[1::2], strict=True):
            assert isinstance(opened, AnomalyOpened) and isinstance(closed, AnomalyClosed)
            assert opened.anomaly.id == closed.anomaly.id
    assert tracker.open_anomalies() == []
