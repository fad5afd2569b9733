"""The baseline band: its arithmetic, its exact update rule (against a batch form written from the
docstring), and the plant conditions it must not cry wolf on (quantised, drifting, heavy-tailed,
a level step after a maintenance stop), each as a focused case."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.detect.baseline import (
    BaselineFileError,
    BlockSummary,
    BlockWindow,
    RobustStats,
    dump_baselines,
    load_baselines,
    median_distance,
    midpoint,
    parse_baselines,
    printed_resolution,
    sorted_median,
    summarise,
    window_band,
)
from edge_agent.detect.baseline_check import MAX_BLOCKS, BaselineCheck

MAX = sys.float_info.max


def feed(check: BaselineCheck, samples: Sequence[tuple[float, float]]) -> list[bool | None]:
    return [check.observe(v, t, t) for t, v in samples]


# -- arithmetic ---------------------------------------------------------------------------------------


def test_median_and_midpoint_never_overflow() -> None:
    assert midpoint(1e308, 1e308) == 1e308 and midpoint(-MAX, MAX) == 0.0
    assert sorted_median([1e308, 1.5e308]) == 1.25e308
    assert sorted_median([1.0, 2.0, 10.0]) == 2.0 and sorted_median([1.0, 3.0]) == 2.0


@given(
    values=st.lists(
        st.floats(-1e6, 1e6) | st.sampled_from([0.0, 1.0, 2.5, -MAX, MAX]), min_size=1, max_size=60
    ),
    centre=st.floats(-1e6, 1e6) | st.sampled_from([0.0, 1.0, 2.5]),
)
def test_median_distance_is_the_median_of_the_distances(values: list[float], centre: float) -> None:
    ordered = sorted(values)
    distances = sorted(abs(x - centre) for x in ordered)
    assert median_distance(ordered, centre) == sorted_median(distances)


def test_block_window_keeps_the_last_blocks_sorted() -> None:
    window = BlockWindow(3)
    for i, m in enumerate([5.0, 1.0, 3.0, 2.0, 9.0]):
        window.add(BlockSummary(m, float(i), 0.1 * (i + 1), 10))
    assert window.medians == [2.0, 3.0, 9.0] and window.mads == [2.0, 3.0, 4.0]
    assert list(window.steps) == pytest.approx([0.3, 0.4, 0.5]) and len(window) == 3
    window.clear()
    assert len(window) == 0 and window.medians == [] and not window.steps


def test_block_summary_ignores_a_spike_and_finds_the_grid() -> None:
    summary = summarise([10.0, 10.5, 10.0, 9.5, 10.0, 1000.0, 10.0])
    assert (summary.median, summary.mad, summary.step, summary.samples) == (10.0, 0.0, 0.5, 7)
    assert summarise([3.0, 3.0]).step == math.inf
    extreme = summarise([-MAX, MAX, MAX])
    assert extreme.median == MAX and extreme.mad == 0.0  # |-MAX - MAX| overflows to inf: never NaN


@pytest.mark.parametrize(
    ("value", "resolution"),
    [(82.0, 1.0), (55.5, 0.1), (24.01, 0.01), (-3.25, 0.01), (1e-05, 1e-05), (1.5e-07, 1e-08), (0.0, 1.0),
     (1e22, 1e22), (5e-324, 0.0)],
)  # fmt: skip
def test_printed_resolution(value: float, resolution: float) -> None:
    assert printed_resolution(value) == pytest.approx(resolution, rel=1e-9)


def test_window_band_combines_noise_and_wander() -> None:
    # Three blocks: medians 10, 11, 12 (wander), MADs 0.1 each (noise).
    band = window_band([10.0, 11.0, 12.0], [0.1, 0.1, 0.1], [0.01, 0.01, 0.01], k=4.0)
    sigma = math.hypot(1.4826 * 0.1, 1.4826 * 1.0)
    assert band.centre == 11.0 and band.sigma == pytest.approx(sigma)
    assert (band.low, band.high) == pytest.approx((11.0 - 4 * sigma, 11.0 + 4 * sigma))


def test_window_band_floor_is_half_a_grid_step_or_the_printed_resolution() -> None:
    quantised = window_band([55.0, 55.0, 55.0], [0.0, 0.0, 0.0], [0.5, math.inf, 0.5], k=6.0)
    assert quantised.sigma == 0.25 and (quantised.low, quantised.high) == (53.5, 56.5)
    never_moved = window_band([82.0, 82.0], [0.0, 0.0], [math.inf, math.inf], k=6.0)
    assert never_moved.sigma == 0.5 and (never_moved.low, never_moved.high) == (79.0, 85.0)


def test_window_band_with_an_overflowing_spread_is_the_whole_line_not_nan() -> None:
    band = window_band([-MAX, -MAX, MAX, MAX], [0.0] * 4, [math.inf] * 4, k=6.0)
    assert band.centre == 0.0 and band.sigma == math.inf  # 1.4826 * MAX overflows
    assert (band.low, band.high) == (-math.inf, math.inf)
    pinned = window_band([-MAX, MAX, MAX], [0.0] * 3, [math.inf] * 3, k=6.0)
    assert pinned.centre == MAX and pinned.high == math.inf and math.isfinite(pinned.low)


# -- the exact update rule, against a batch form written from BaselineCheck's docstring --------------


def _power_of_two_stride(n: int, capacity: int) -> int:
    stride = 1
    while math.ceil(n / stride) >= capacity:
        stride *= 2
    return stride


def _band(summaries: list[tuple[float, float, float]], k: float) -> tuple[float, float]:
    medians = [s[0] for s in summaries]
    centre = statistics.median(medians)
    within = 1.4826 * statistics.median(s[1] for s in summaries)
    between = 1.4826 * statistics.median(abs(m - centre) for m in medians)
    grid = min(s[2] for s in summaries)
    if math.isinf(grid):
        grid = printed_resolution(centre)
    sigma = max(math.hypot(within, between), 0.5 * grid)
    return centre - k * sigma, centre + k * sigma


def _summary(values: list[float]) -> tuple[float, float, float]:
    m = statistics.median(values)
    distinct = sorted(set(values))
    step = min((b - a for a, b in itertools.pairwise(distinct)), default=math.inf)
    return m, statistics.median(abs(x - m) for x in values), step


def batch_verdicts(
    samples: Sequence[tuple[float, float]],
    k: float,
    warmup: float,
    window: float,
    update: float,
    relearn_after: float,
    capacity: int,
) -> list[bool]:
    """The rule as a batch computation: segments, then blocks, then the band in force per block."""
    verdicts: list[bool] = []
    learn = max(1, math.ceil(warmup / update))
    keep = learn if window == 0 else max(1, math.ceil(window / update))
    segments: list[list[tuple[float, float]]] = []
    for i, (t, v) in enumerate(samples):
        if i == 0 or (relearn_after and t - samples[i - 1][0] > relearn_after):
            segments.append([])
        segments[-1].append((t, v))
    for segment in segments:
        t0 = segment[0][0]
        blocks: dict[int, list[float]] = {}
        index_of: list[int] = []
        for t, v in segment:
            j = math.floor((t - t0) / update)
            while j > 0 and t0 + j * update > t:
                j -= 1
            while t0 + (j + 1) * update <= t:
                j += 1
            blocks.setdefault(j, []).append(v)
            index_of.append(j)
        summaries: dict[int, tuple[float, float, float]] = {}
        for j, values in blocks.items():
            stride = _power_of_two_stride(len(values), capacity)
            summaries[j] = _summary(values[::stride])
        static_band: tuple[float, float] | None = None
        for (_, v), j in zip(segment, index_of, strict=True):
            if j < learn:
                verdicts.append(False)
                continue
            if window == 0:
                if static_band is None:
                    static_band = _band([summaries[i] for i in sorted(summaries) if i < j][-keep:], k)
                low, high = static_band
            else:
                low, high = _band([summaries[i] for i in sorted(summaries) if i < j][-keep:], k)
            verdicts.append(v > high or v < low)
    return verdicts


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.05, 0.25, 0.5, 1.0, 3.0, 12.0]),
            st.one_of(
                st.integers(-40, 40).map(lambda n: 20.0 + n * 0.25),  # a quantised sensor
                st.floats(-50.0, 90.0, allow_nan=False),
            ),
        ),
        min_size=1,
        max_size=400,
    ),
    k=st.sampled_from([0.5, 2.0, 6.0]),
    warmup=st.sampled_from([0.0, 1.0, 2.5, 6.0]),
    window=st.sampled_from([0.0, 1.0, 4.0, 10.0]),
    update=st.sampled_from([0.5, 1.0, 2.0]),
    relearn_after=st.sampled_from([0.0, 2.0, 10.0]),
    capacity=st.sampled_from([2, 4, 8, 256]),
)
def test_the_check_is_the_documented_batch_rule(
    steps: list[tuple[float, float]],
    k: float,
    warmup: float,
    window: float,
    update: float,
    relearn_after: float,
    capacity: int,
) -> None:
    samples: list[tuple[float, float]] = []
    t = 100.0
    for dt, value in steps:
        t += dt
        samples.append((t, value))
    check = BaselineCheck(
        k, warmup, window=window, update=update, relearn_after=relearn_after, capacity=capacity
    )
    online = [bool(verdict) for verdict in feed(check, samples)]
    assert online == batch_verdicts(samples, k, warmup, window, update, relearn_after, capacity)


def test_kept_samples_are_every_s_th_with_s_a_power_of_two() -> None:
    check = BaselineCheck(1.0, 0.0, window=10.0, update=100.0, capacity=8)
    for i in range(21):
        check.observe(float(i), i * 0.1, 0.0)
    # 21 samples, capacity 8: stride 4 keeps positions 0, 4, 8, 12, 16, 20 (ceil(21 / 4) = 6 < 8).
    assert check._block == [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]


def test_band_changes_only_when_a_block_closes() -> None:
    check = BaselineCheck(3.0, warmup=2.0, window=4.0, update=1.0)
    feed(check, [(i * 0.1, 10.0 + (i % 3) * 0.1) for i in range(20)])  # blocks 0 and 1: learning
    assert check.learning
    assert check.observe(10.1, 2.0, 0.0) is False  # closes block 1: the band is learned now
    band = check.band
    assert band is not None and band.blocks == 2 and band.centre == pytest.approx(10.1)
    assert check.observe(50.0, 2.5, 0.0) is True  # judged by that band, and not learned from yet
    assert check.band is band


def test_static_band_is_learned_once_from_the_warmup() -> None:
    check = BaselineCheck(4.0, warmup=2.0, window=0.0, update=1.0)
    feed(check, [(i * 0.1, 10.0 + (i % 2) * 0.2) for i in range(21)])
    learned = check.band
    assert learned is not None and learned.blocks == 2
    feed(check, [(2.1 + i * 0.1, 10.1) for i in range(100)])  # 10 more blocks of another shape
    assert check.band is learned and check._block == []  # nothing kept any more


def test_a_baseline_file_is_a_fixed_band_from_the_first_sample() -> None:
    check = BaselineCheck(3.0, warmup=30.0, stats=RobustStats(median=5.0, mad=0.1))
    assert not check.learning
    assert check.observe(5.2, 0.0, 0.0) is False
    assert check.observe(5.5, 0.0, 0.0) is True and check.threshold.endswith("from file)")
    assert check.observe(5.5, 1e6, 0.0) is True  # no relearning, no blocks


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"k": 0.0}, "baseline_k must be > 0"),
        ({"k": math.inf}, "baseline_k must be > 0"),
        ({"warmup": math.nan}, "baseline_warmup must be a finite"),
        ({"window": -1.0}, "baseline_window must be a finite"),
        ({"relearn_after": math.inf}, "baseline_relearn_after must be a finite"),
        ({"update": 0.0}, "baseline_update must be > 0"),
        ({"window": 3600.0, "update": 1.0}, f"at most {MAX_BLOCKS} x baseline_update"),
        ({"capacity": 7}, "capacity must be an even number"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], reason: str) -> None:
    arguments: dict[str, float] = {"k": 6.0, "warmup": 10.0, "window": 60.0, "update": 5.0, **kwargs}
    k, warmup = arguments.pop("k"), arguments.pop("warmup")
    with pytest.raises(ValueError, match=reason):
        BaselineCheck(k, warmup, **arguments)  # type: ignore[arg-type]


# -- what the plant does, as focused cases (hold 3 samples, the default, emulated on the verdicts) ----


def opened(verdicts: Sequence[bool | None], hold: int = 3) -> int:
    """Anomalies a tracker with `hold_samples` would open (and keep open while the streak lasts)."""
    count, streak = 0, 0
    for verdict in verdicts:
        streak = streak + 1 if verdict else 0
        if streak == hold:
            count += 1
    return count


def rolling(**overrides: float) -> BaselineCheck:
    params = {"warmup": 600.0, "window": 1800.0, "update": 60.0, "relearn_after": 300.0, **overrides}
    k = params.pop("k", 10.0)
    return BaselineCheck(k, **params)


def test_quantised_sensor_flipping_between_grid_steps_is_normal() -> None:
    rng = random.Random(1)
    # 0.5-degree grid, noise far below it: an hour of one value, then it dithers to the next step
    # (every block's MAD is 0), then an hour of that step.
    check = rolling()
    steady = [(float(i), 55.0) for i in range(3600)]
    dither = [(3600.0 + i, 55.0 + 0.5 * (rng.random() < 0.3)) for i in range(1800)]
    assert opened(feed(check, steady + dither)) == 0
    assert check.band is not None and check.band.sigma == 0.25  # half the grid step it has seen
    assert opened(feed(check, [(5400.0 + i, 55.5) for i in range(3600)])) == 0
    # A real departure of 10 grid steps is still seen.
    assert opened(feed(check, [(9000.0 + i, 60.5) for i in range(5)])) == 1


def test_sensor_that_never_changed_uses_its_printed_resolution() -> None:
    check = rolling()
    assert opened(feed(check, [(float(i), 82.0) for i in range(3600)])) == 0
    assert check.band is not None and check.band.sigma == 0.5  # 82 printed: resolution 1
    assert opened(feed(check, [(3600.0 + i, 83.0) for i in range(60)])) == 0  # one count: normal
    assert opened(feed(check, [(3660.0 + i, 90.0) for i in range(5)])) == 1


def test_slow_drift_is_followed_and_a_step_on_top_is_seen() -> None:
    rng = random.Random(2)
    # 4 units per hour of drift (20 noise sigmas an hour) for 6 hours: a static band would trip.
    drift = [(float(i), 100.0 + 4.0 * i / 3600.0 + rng.gauss(0.0, 0.2)) for i in range(6 * 3600)]
    check = rolling()
    assert opened(feed(check, drift)) == 0
    static = BaselineCheck(10.0, warmup=600.0, window=0.0, update=60.0)
    assert opened(feed(static, drift)) >= 1
    # The drift widens the band (its spread across blocks): a step of 15 (75 noise sigmas) is seen.
    step = [(6 * 3600.0 + i, 124.0 + 15.0 + rng.gauss(0.0, 0.2)) for i in range(10)]
    assert opened(feed(check, step)) == 1


def test_heavy_tails_and_single_sample_spikes_need_three_in_a_row() -> None:
    rng = random.Random(3)

    def student_t3() -> float:
        return rng.gauss(0.0, 1.0) / math.sqrt(rng.gammavariate(1.5, 2.0) / 3.0)

    values = [20.0 + 0.1 * student_t3() for _ in range(6 * 3600)]
    for i in range(100, len(values), 900):  # a spike of 50-150 noise scales every 15 min
        values[i] += rng.choice((-1.0, 1.0)) * rng.uniform(5.0, 15.0)
    check = rolling()
    verdicts = feed(check, [(float(i), v) for i, v in enumerate(values)])
    assert opened(verdicts, hold=1) > 0  # the heavy tails and spikes do cross the band ...
    assert opened(verdicts, hold=3) == 0  # ... but never three samples in a row


def test_a_level_step_after_a_maintenance_stop_is_learned_again() -> None:
    rng = random.Random(4)
    before = [(float(i), 50.0 + rng.gauss(0.0, 0.1)) for i in range(3600)]
    resume = 3600.0 + 1800.0  # a 30 min stop, then the level is 3 units (30 sigma) lower
    after = [(resume + i, 47.0 + rng.gauss(0.0, 0.1)) for i in range(3600)]
    check = rolling()
    assert opened(feed(check, before + after)) == 0
    assert (
        check.segments == 2 and check.band is not None and check.band.centre == pytest.approx(47.0, abs=0.05)
    )
    # The same step without the stop is a departure.
    no_gap = rolling()
    shifted = [(3600.0 + i, v) for i, (_, v) in enumerate(after)]
    assert opened(feed(no_gap, before + shifted)) == 1


# -- baseline files -------------------------------------------------------------------------------


def test_baseline_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(dump_baselines({"temp_c": RobustStats(25.0, 0.2), "supply_v": RobustStats(12.0, 0.01)}))
    assert load_baselines(path) == {"temp_c": RobustStats(25.0, 0.2), "supply_v": RobustStats(12.0, 0.01)}


def test_a_learned_band_saves_as_a_file_entry_and_an_overflowed_one_is_left_out() -> None:
    check = rolling(warmup=60.0)
    feed(check, [(float(i), 7.0 + (i % 3) * 0.1) for i in range(121)])
    learned = check.stats
    assert learned is not None and learned.median == pytest.approx(7.1)
    text = dump_baselines({"v": learned, "w": RobustStats(1.0, math.inf)})
    assert set(parse_baselines(__import__("json").loads(text))) == {"v"}


def test_file_band_sigma_floor() -> None:
    assert RobustStats(12.0, 0.0).sigma() == pytest.approx(12e-6)
    assert RobustStats(0.0, 0.0).sigma() > 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('{"v": 3}', "is not an object"),
        ('{"v": {"median": 1}}', "v.mad must be a finite number"),
        ('{"v": {"median": "x", "mad": 1}}', "v.median must be a finite number"),
        ('{"v": {"median": 1, "mad": -1}}', "v.mad must be >= 0"),
        ('{"v": {"median": true, "mad": 1}}', "v.median must be a finite number"),
        ('{"v": {"median": NaN, "mad": 1}}', "v.median must be a finite number"),
    ],
)
def test_baseline_file_errors_name_file_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(text)
    with pytest.raises(BaselineFileError) as info:
        load_baselines(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_baseline_file_missing_or_binary(tmp_path: Path) -> None:
    with pytest.raises(BaselineFileError, match="cannot be read"):
        load_baselines(tmp_path / "nope.json")
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BaselineFileError, match="not UTF-8"):
        load_baselines(binary)


def test_parse_baselines_accepts_ints() -> None:
    assert parse_baselines({"v": {"median": 1, "mad": 0}}) == {"v": RobustStats(1.0, 0.0)}
