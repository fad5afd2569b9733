"""Value checks (limits, rate, stuck): cases and properties. The baseline band: test_baseline.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge_agent.detect.checks import LimitsCheck, RateCheck, StuckCheck

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)

# -- limits -------------------------------------------------------------------------------------------


def test_limits_bounds_are_inside() -> None:
    check = LimitsCheck(11.4, 12.6)
    assert check.observe(11.4, 0.0, 0.0) is False
    assert check.observe(12.6, 0.0, 0.0) is False
    assert check.observe(12.7, 0.0, 0.0) is True
    assert check.threshold == "max 12.6" and check.value == 12.7 and check.excursion == pytest.approx(0.1)
    assert check.observe(11.0, 0.0, 0.0) is True
    assert check.threshold == "min 11.4" and check.excursion == pytest.approx(0.4)


def test_limits_one_sided() -> None:
    upper = LimitsCheck(None, 80.0)
    assert upper.observe(-1e300, 0.0, 0.0) is False and upper.observe(80.5, 0.0, 0.0) is True
    assert upper.describe("temp_c") == "temp_c above 80"
    lower = LimitsCheck(0.0, None)
    assert lower.observe(1e300, 0.0, 0.0) is False and lower.observe(-0.5, 0.0, 0.0) is True
    assert lower.describe("flow") == "flow below 0"


@pytest.mark.parametrize(("low", "high"), [(None, None), (2.0, 1.0), (1.0, 1.0)])
def test_limits_reject_bad_bounds(low: float | None, high: float | None) -> None:
    with pytest.raises(ValueError):
        LimitsCheck(low, high)


@given(low=FINITE, width=st.floats(min_value=1e-3, max_value=1e6), value=FINITE)
def test_limits_verdict_is_the_predicate(low: float, width: float, value: float) -> None:
    high = low + width
    assume(low < high)
    check = LimitsCheck(low, high)
    verdict = check.observe(value, 0.0, 0.0)
    assert verdict is (value < low or value > high)
    if verdict:
        assert check.excursion > 0
        assert check.excursion == (value - high if value > high else low - value)


# -- rate ---------------------------------------------------------------------------------------------


def test_rate_first_sample_and_zero_dt_give_no_verdict() -> None:
    check = RateCheck(max_rate=10.0)
    assert check.observe(0.0, 1.0, 1.0) is None  # first sample
    assert check.observe(100.0, 1.0, 1.0) is None  # same receive time: no rate
    assert check.observe(5.0, 0.5, 0.5) is None  # time ran backwards: no rate
    # The reference stayed at (0.0, t=1.0): 5 units over 1 s.
    assert check.observe(5.0, 2.0, 2.0) is False
    assert check.observe(30.0, 3.0, 3.0) is True
    assert check.value == 25.0 and check.excursion == 15.0 and check.threshold == "max_rate 10/s"
    assert check.observe(0.0, 4.0, 4.0) is True and check.value == -30.0  # falling counts too


def test_rate_rejects_nonpositive_limit() -> None:
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            RateCheck(bad)


@settings(max_examples=300)
@given(
    samples=st.lists(st.tuples(FINITE, st.sampled_from([-0.5, 0.0, 0.0, 0.001, 0.1, 1.0, 7.0])), max_size=60),
    max_rate=st.floats(min_value=1e-3, max_value=1e4),
)
def test_rate_matches_a_reference(samples: list[tuple[float, float]], max_rate: float) -> None:
    check = RateCheck(max_rate)
    reference: tuple[float, float] | None = None
    t = 0.0
    for value, dt in samples:
        t += dt
        verdict = check.observe(value, t, t)
        if reference is None:
            assert verdict is None
            reference = (value, t)
            continue
        if t - reference[1] <= 0:
            assert verdict is None
            continue
        rate = (value - reference[0]) / (t - reference[1])
        reference = (value, t)
        assert verdict is (abs(rate) > max_rate)
        if verdict:
            assert check.value == rate and check.excursion == abs(rate) - max_rate >= 0


# -- stuck --------------------------------------------------------------------------------------------


def test_stuck_needs_the_full_duration_and_backdates_its_onset() -> None:
    check = StuckCheck(stuck_for=5.0)
    assert check.observe(3.3, 0.0, 100.0) is False  # first sample is a change
    assert check.observe(3.3, 4.9, 104.9) is False
    assert check.observe(3.3, 5.0, 105.0) is True
    assert (check.value, check.excursion, check.onset_mono, check.onset_wall) == (3.3, 0.0, 0.0, 100.0)
    assert check.observe(3.4, 6.0, 106.0) is False  # a change resets
    assert check.observe(3.4, 10.0, 110.0) is False
    assert check.observe(3.4, 11.0, 111.0) is True and check.onset_mono == 6.0


def test_stuck_epsilon_compares_to_the_value_at_the_last_change() -> None:
    check = StuckCheck(stuck_for=1.0, epsilon=0.05)
    check.observe(1.00, 0.0, 0.0)
    assert check.observe(1.04, 0.5, 0.5) is False
    assert check.observe(1.02, 1.0, 1.0) is True  # within 0.05 of 1.00 for 1 s
    # A slow drift in 0.04 steps escapes: 1.08 is 0.08 from the reference 1.00.
    assert check.observe(1.08, 1.5, 1.5) is False
    assert check.observe(1.12, 2.0, 2.0) is False
    assert check.observe(1.16, 2.6, 2.6) is False


def test_stuck_a_repeat_after_a_gap_is_not_stuck() -> None:
    """The sample before an unplug and the first one after it may print the same value by chance."""
    check = StuckCheck(stuck_for=1.0)
    assert check.observe(35.12, 0.0, 0.0) is False
    assert check.observe(35.12, 2.5, 2.5) is False  # 2.5 s without samples: not evidence of "stuck"
    assert check.observe(35.12, 3.0, 3.0) is False
    assert check.observe(35.12, 3.5, 3.5) is True  # unchanged for 1 s of samples since the gap


def test_stuck_rejects_zero_duration() -> None:
    with pytest.raises(ValueError):
        StuckCheck(0.0)


@settings(max_examples=300)
@given(
    samples=st.lists(
        st.tuples(st.sampled_from([0.0, 1.0, 1.5]), st.sampled_from([0.0, 0.1, 0.5, 2.0])), max_size=80
    ),
    stuck_for=st.sampled_from([0.1, 0.5, 1.0, 3.0]),
)
def test_stuck_matches_a_reference(samples: list[tuple[float, float]], stuck_for: float) -> None:
    check = StuckCheck(stuck_for)
    since: float | None = None
    last: float | None = None
    previous_t: float | None = None
    t = 0.0
    for value, dt in samples:
        t += dt
        # A gap of stuck_for without samples restarts the clock: it shows nothing about the value.
        gap = math.inf if previous_t is None else t - previous_t
        previous_t = t
        if last is None or value != last or gap >= stuck_for:
            last, since = value, t
        assert since is not None
        assert check.observe(value, t, t) is (t - since >= stuck_for)
