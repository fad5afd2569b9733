"""The live page's decimating tap: every bucket's min/max equals a naive grouping of the same frames, at
every level, gaps and the running bucket included; memory per channel is fixed whatever the rate."""

from __future__ import annotations

import math
import tracemalloc
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.frames import Frame
from edge_agent.live.decimator import (
    BASE_PER_SECOND,
    BUCKETS,
    CHANNEL_BYTES,
    LEVELS,
    RATIOS,
    SOURCE_BYTES,
    SPANS,
    Decimator,
    level_for_span,
)


def bucket_of(t: float, level: int) -> int:
    """The documented bucket numbers: k0 = floor(t * 10), each coarser level an integer division."""
    key = math.floor(t * BASE_PER_SECOND)
    for ratio in RATIOS[1 : level + 1]:
        key //= ratio
    return key


def naive(frames: list[Frame], level: int) -> dict[tuple[str, str, int], tuple[float, float]]:
    """(source, channel, bucket) -> (min, max) of the finite values, by grouping every frame."""
    grouped: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for frame in frames:
        key = bucket_of(frame.mono, level)
        for channel, value in frame.values.items():
            if math.isfinite(value):
                grouped[(frame.source, channel, key)].append(value)
    return {k: (min(v), max(v)) for k, v in grouped.items()}


values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
# Steps between frames: bursts (0), ordinary sample periods, and gaps past a bucket, a level, the rings.
steps = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-4, max_value=0.5),
    st.floats(min_value=0.5, max_value=30.0),
    st.floats(min_value=30.0, max_value=5000.0),
)
frame_rows = st.lists(
    st.tuples(
        st.sampled_from(["bench", "dut"]),
        steps,
        st.dictionaries(st.sampled_from(["v", "i", "t"]), values, max_size=3),
    ),
    min_size=1,
    max_size=400,
)


def build_frames(rows: list[tuple[str, float, dict[str, float]]], start: float) -> list[Frame]:
    """Frames whose times never go back per source (what SourceClock guarantees)."""
    now: dict[str, float] = {}
    frames = []
    for source, step, vals in rows:
        t = now.get(source, start) + step
        now[source] = t
        frames.append(Frame(source, t, t + 1.7e9, vals))
    return frames


@given(frame_rows, st.floats(min_value=0.0, max_value=1e6))
def test_every_bucket_is_the_min_and_max_of_its_frames(
    rows: list[tuple[str, float, dict[str, float]]], start: float
) -> None:
    frames = build_frames(rows, start)
    tap = Decimator()
    for frame in frames:
        tap.on_frame(frame)
    for level in range(LEVELS):
        expected = naive(frames, level)
        for source in tap.sources():
            found = tap.buckets(source, level)
            assert found is not None
            last = bucket_of(max(f.mono for f in frames if f.source == source), level)
            assert found.first + found.count - 1 == last
            assert found.count == min(BUCKETS, last - found.first + 1) <= BUCKETS
            for channel in tap.channels(source):
                for i in range(found.count):
                    want = expected.get((source, channel, found.first + i))
                    got_lo, got_hi = found.lo[channel][i], found.hi[channel][i]
                    if want is None:
                        assert (got_lo, got_hi) == (None, None), (level, channel, found.first + i)
                    else:
                        assert (got_lo, got_hi) == want, (level, channel, found.first + i)


@given(frame_rows, st.integers(min_value=0, max_value=BUCKETS))
def test_buckets_from_a_cursor_are_the_tail_of_all_of_them(
    rows: list[tuple[str, float, dict[str, float]]], back: int
) -> None:
    """What the page gets after its first push (from its running bucket on) is the same as the tail of
    a full read, however far back its cursor is (clipped to what is kept)."""
    frames = build_frames(rows, 100.0)
    tap = Decimator()
    for frame in frames:
        tap.on_frame(frame)
    for level in range(LEVELS):
        for source in tap.sources():
            full = tap.buckets(source, level)
            assert full is not None
            last = full.first + full.count - 1
            part = tap.buckets(source, level, last - back)
            assert part is not None
            offset = part.first - full.first
            assert offset >= 0 and part.first + part.count - 1 == last
            for channel in tap.channels(source):
                assert part.lo[channel] == full.lo[channel][offset:]
                assert part.hi[channel] == full.hi[channel][offset:]


def _feed(tap: Decimator, rate: float, seconds: float, start: float, channels: int) -> float:
    n = int(rate * seconds)
    names = [f"ch{i}" for i in range(channels)]
    t = start
    for k in range(n):
        t = start + k / rate
        tap.on_frame(Frame("bench", t, t, {name: float(k % 97) for name in names}))
    return t


@given(st.sampled_from([10.0, 1_000.0, 50_000.0]), st.integers(min_value=1, max_value=8))
def test_memory_per_channel_is_fixed_whatever_the_rate(rate: float, channels: int) -> None:
    tap = Decimator()
    end = _feed(tap, rate, 2.0, 0.0, channels)
    assert tap.nbytes() == SOURCE_BYTES + channels * CHANNEL_BYTES
    _feed(tap, rate, 2.0, end + 1.0, channels)
    assert tap.nbytes() == SOURCE_BYTES + channels * CHANNEL_BYTES


def test_allocated_memory_does_not_grow_with_frames() -> None:
    """After the first frames made the channel's rings, a further 200,000 frames over 4,000 s of timeline
    (every ring wrapped) allocate nothing that stays."""
    tap = Decimator()
    end = _feed(tap, 1_000.0, 5.0, 0.0, 4)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        _feed(tap, 50.0, 4000.0, end + 0.5, 4)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename") if "decimator" in str(stat))
    assert grown < 4096, f"the tap grew by {grown} bytes"


def test_channels_beyond_the_cap_are_counted_and_not_kept() -> None:
    tap = Decimator(max_channels=2)
    for k in range(20):
        tap.on_frame(Frame("bench", k * 0.05, 0.0, {"a": 1.0, "b": 2.0, "c": 3.0, "d": float(k)}))
    assert tap.channels("bench") == ["a", "b"]
    assert tap.channel_count == 2 and tap.channels_refused == 2
    assert tap.nbytes() == SOURCE_BYTES + 2 * CHANNEL_BYTES
    found = tap.buckets("bench", 0)
    assert found is not None and set(found.lo) == {"a", "b"}


def test_a_source_not_seen_has_no_buckets() -> None:
    tap = Decimator()
    assert tap.buckets("bench", 0) is None and tap.latest_key("bench", 0) is None
    assert tap.channels("bench") == []


def test_span_picks_the_finest_level_that_covers_it() -> None:
    assert SPANS == (60.0, 600.0, 3600.0)
    assert [level_for_span(s) for s in (1, 60, 61, 600, 601, 3600, 86400)] == [0, 0, 1, 1, 2, 2, 2]
