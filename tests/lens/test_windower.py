"""Windower: shapes, stepping, missing values, scaling, dropouts; any chunking gives the same windows."""

from __future__ import annotations

import math
import sys
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import LensSection
from edge_agent.frames import Frame, LinkEvent, LinkState, SerialEvent, StepEdge, StepMarker
from edge_agent.lens.service import LensService
from edge_agent.lens.windower import Scale, Window, Windower, window_bytes

CHANNELS = ("a", "b", "c")


def frame(i: int, values: dict[str, float], source: str = "bench") -> Frame:
    return Frame(source=source, mono=100.0 + i * 0.01, wall=1_700_000_000.0 + i * 0.01, values=values)


def ramp(n: int, start: int = 0) -> list[Frame]:
    return [frame(i, {"a": float(i), "b": 10.0 * i, "c": -float(i)}) for i in range(start, start + n)]


def test_windows_are_channel_first_in_configured_order() -> None:
    w = Windower("bench", ["c", "a"], window_size=4, step_size=4)
    windows = w.feed(ramp(9))
    assert len(windows) == 2
    first = windows[0]
    assert first.channels == ("c", "a")
    assert lists(first) == [[0.0, -1.0, -2.0, -3.0], [0.0, 1.0, 2.0, 3.0]]
    assert list(windows[1].data[1]) == [4.0, 5.0, 6.0, 7.0]
    assert (first.seq, windows[1].seq) == (0, 1)
    assert first.start_wall == pytest.approx(1_700_000_000.0)
    assert first.end_mono == pytest.approx(100.03)


def test_overlapping_and_gapped_steps() -> None:
    overlap = Windower("bench", ["a"], window_size=4, step_size=2).feed(ramp(8))
    assert [list(w.data[0]) for w in overlap] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    sparse = Windower("bench", ["a"], window_size=2, step_size=5).feed(ramp(13))
    assert [list(w.data[0]) for w in sparse] == [[0, 1], [5, 6], [10, 11]]


def test_missing_values_hold_zero_skip() -> None:
    frames = [
        frame(0, {"a": 1.0}),
        frame(1, {"a": math.nan}),
        frame(2, {}),
        frame(3, {"a": 4.0}),
    ]
    hold = Windower("bench", ["a"], window_size=4, step_size=4, missing="hold")
    assert lists(hold.feed(frames)[0]) == [[1.0, 1.0, 1.0, 4.0]]
    assert hold.stats.held == 2
    zero = Windower("bench", ["a"], window_size=4, step_size=4, missing="zero")
    assert lists(zero.feed(frames)[0]) == [[1.0, 0.0, 0.0, 4.0]]
    skip = Windower("bench", ["a"], window_size=2, step_size=2, missing="skip")
    assert lists(skip.feed(frames)[0]) == [[1.0, 4.0]]
    assert skip.stats.skipped == 2


def test_hold_with_nothing_to_hold_drops_the_sample() -> None:
    w = Windower("bench", ["a", "b"], window_size=2, step_size=2, missing="hold")
    out = w.feed([frame(0, {"a": 1.0}), frame(1, {"a": 2.0, "b": 3.0}), frame(2, {"a": 5.0})])
    assert lists(out[0]) == [[2.0, 5.0], [3.0, 3.0]]
    assert w.stats.skipped == 1


def test_fixed_z_score_scaling() -> None:
    w = Windower("bench", ["a", "b"], window_size=2, step_size=2, scaling={"a": Scale(mean=1.0, std=2.0)})
    out = w.feed([frame(0, {"a": 1.0, "b": 7.0}), frame(1, {"a": 5.0, "b": 8.0})])
    assert lists(out[0]) == [[0.0, 2.0], [7.0, 8.0]]


def test_link_dropout_resets_the_partial_window() -> None:
    w = Windower("bench", ["a"], window_size=3, step_size=3)
    events: list[SerialEvent] = [
        *ramp(2),
        LinkEvent("bench", LinkState.DOWN, 1.0, 1.0),
        *ramp(4, start=10),
    ]
    out = w.feed(events)
    assert [list(x.data[0]) for x in out] == [[10.0, 11.0, 12.0]]
    assert w.stats.resets == 1


def test_time_gap_resets_and_other_sources_are_ignored() -> None:
    w = Windower("bench", ["a"], window_size=2, step_size=2, max_gap=0.5)
    late = Frame(source="bench", mono=200.0, wall=1.0, values={"a": 99.0})
    out = w.feed([frame(0, {"a": 1.0}), frame(1, {"a": 2.0}, source="other"), late, frame(20000, {"a": 3.0})])
    assert [list(x.data[0]) for x in out] == []  # 1.0 was cut off by the gap; 99.0 by the next gap
    out = w.feed([frame(20001, {"a": 4.0})])
    assert [list(x.data[0]) for x in out] == [[3.0, 4.0]]


@pytest.mark.parametrize(("configured", "expected"), [("500ms", 0.5), ("0s", None)])
def test_lens_max_gap_comes_from_the_config(tmp_path: Path, configured: str, expected: float | None) -> None:
    section = LensSection.model_validate(
        {"api_key": "k", "lens_id": "lns-x", "channels": ["a"], "max_gap": configured}
    )
    service = LensService(section, tmp_path, lambda _: None, source="bench")
    assert service.windower.max_gap == expected


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        Windower("bench", [], 4, 4)
    with pytest.raises(ValueError):
        Windower("bench", ["a", "a"], 4, 4)
    with pytest.raises(ValueError):
        Windower("bench", ["a"], 4, 4, scaling={"z": Scale(0.0, 1.0)})


# -- properties ------------------------------------------------------------------------------------

values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.just(math.nan),
    st.just(math.inf),
)


@st.composite
def event_streams(draw: st.DrawFn) -> list[SerialEvent]:
    n = draw(st.integers(min_value=0, max_value=120))
    events: list[SerialEvent] = []
    mono = 0.0
    for i in range(n):
        roll = draw(st.integers(min_value=0, max_value=30))
        mono += draw(st.sampled_from([0.01, 0.01, 0.02, 2.0]))
        if roll == 0:
            events.append(LinkEvent("bench", LinkState.DOWN, mono, mono))
        elif roll == 1:
            events.append(StepMarker("bench", StepEdge.START, "s", mono, mono))
        else:
            chans = draw(st.lists(st.sampled_from(CHANNELS), unique=True, max_size=3))
            vals = {c: draw(values) for c in chans}
            source = "other" if roll == 2 else "bench"
            events.append(Frame(source=source, mono=mono, wall=1e9 + i, values=vals))
    return events


def chunked(events: list[SerialEvent], cuts: list[int]) -> list[list[SerialEvent]]:
    points = sorted({c % (len(events) + 1) for c in cuts})
    out, start = [], 0
    for point in [*points, len(events)]:
        out.append(events[start:point])
        start = point
    return out


def make(window_size: int, step_size: int, missing: str, gap: float | None) -> Windower:
    return Windower(
        "bench", ["b", "a", "c"], window_size, step_size, missing=missing,  # type: ignore[arg-type]
        scaling={"a": Scale(mean=3.0, std=0.5)}, max_gap=gap,
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    events=event_streams(),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
    window_size=st.integers(min_value=1, max_value=9),
    step_size=st.integers(min_value=1, max_value=12),
    missing=st.sampled_from(["hold", "zero", "skip"]),
    gap=st.sampled_from([None, 1.0]),
)
def test_any_chunking_gives_the_same_windows(
    events: list[SerialEvent],
    cuts: list[int],
    window_size: int,
    step_size: int,
    missing: str,
    gap: float | None,
) -> None:
    whole = make(window_size, step_size, missing, gap).feed(events)
    one_by_one = make(window_size, step_size, missing, gap)
    singles: list[Window] = []
    for event in events:
        singles.extend(one_by_one.feed([event]))
    pieces = make(window_size, step_size, missing, gap)
    in_chunks: list[Window] = []
    for chunk in chunked(events, cuts):
        in_chunks.extend(pieces.feed(chunk))
    assert whole == singles == in_chunks
    for window in whole:
        assert len(window.data) == 3
        assert all(len(channel) == window_size for channel in window.data)
        assert all(math.isfinite(v) for channel in window.data for v in channel)
    assert [w.seq for w in whole] == list(range(len(whole)))


@settings(max_examples=100, deadline=None)
@given(
    samples=st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=0, max_size=80),
    window_size=st.integers(min_value=1, max_value=10),
    step_size=st.integers(min_value=1, max_value=12),
)
def test_windows_match_a_slicing_reference(samples: list[float], window_size: int, step_size: int) -> None:
    frames = [frame(i, {"a": v, "b": -v}) for i, v in enumerate(samples)]
    got = Windower("bench", ["a", "b"], window_size, step_size).feed(frames)
    starts = range(0, len(samples) - window_size + 1, step_size)
    expected = [samples[s : s + window_size] for s in starts]
    assert [list(w.data[0]) for w in got] == expected
    assert [list(w.data[1]) for w in got] == [[-v for v in e] for e in expected]


def lists(window: Window) -> list[list[float]]:
    """A window's values as lists (it holds them as arrays of doubles)."""
    return [list(column) for column in window.data]


def _allocated(size: int) -> int:
    """Bytes an object of `sys.getsizeof` `size` takes from CPython's allocators (16-byte classes up to
    512 bytes, malloc's header above)."""
    return (size + 15) // 16 * 16 if size <= 512 else (size + 8 + 15) // 16 * 16


def _held(window: Window) -> int:
    total = _allocated(sys.getsizeof(window)) + _allocated(sys.getsizeof(window.data))
    total += sum(_allocated(sys.getsizeof(t)) for t in (window.start_wall, window.end_wall,
                                                         window.start_mono, window.end_mono))  # fmt: skip
    for column in window.data:
        assert isinstance(column, array)  # its values are in it, not objects of their own
        total += _allocated(sys.getsizeof(column))
    return total


@pytest.mark.parametrize(
    ("channels", "size", "step"), [(1, 1, 1), (3, 128, 128), (3, 128, 32), (8, 1000, 300), (40, 64, 64)]
)
def test_window_bytes_is_an_upper_bound_of_what_a_window_holds(channels: int, size: int, step: int) -> None:
    """What the send queue charges a window (lens.queue_mb) covers its lists and floats, for windows
    that hand their lists over whole and for overlapping ones (sliced from the previous window)."""
    names = [f"ch{c}" for c in range(channels)]
    windower = Windower("bench", names, window_size=size, step_size=step)
    frames = [frame(i, {n: i * 0.5 + c for c, n in enumerate(names)}) for i in range(size * 3)]
    windows = windower.feed(frames)
    assert len(windows) >= 2
    for window in windows:
        held = _held(window)
        assert held <= window_bytes(window) <= 1.6 * held + 512, (held, window_bytes(window))
