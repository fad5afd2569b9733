"""The evidence ring: bounded by time and by count, slices exact at the edges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import EvidenceSection
from edge_agent.evidence import DEFAULT_MAX_FRAMES_PER_SECOND, EvidenceRings, FrameRing
from edge_agent.frames import Frame

VALUES = {"supply_v": 12.0}


def frame(mono: float, source: str = "bench", **values: float) -> Frame:
    return Frame(source, mono, 1_776_000_000.0 + mono, values or VALUES)


def test_time_bound_keeps_the_last_seconds() -> None:
    ring = FrameRing(seconds=10.0, max_frames=10_000)
    for i in range(1000):  # 100 s at 10 frames/s
        ring.add(frame(i / 10))
    assert ring.newest_mono == pytest.approx(99.9)
    assert ring.oldest_mono == pytest.approx(89.9)  # mono >= newest - seconds, the edge included
    assert len(ring) == 101


def test_count_bound_holds_with_a_million_frames() -> None:
    ring = FrameRing(seconds=120.0, max_frames=5000)
    shared = Frame("bench", 0.0, 0.0, VALUES)
    for i in range(1_000_000):  # a stalled clock: the time bound alone would keep them all
        ring.add(shared if i % 2 else frame(0.0))
        if i % 100_000 == 0:
            assert len(ring) <= 5000
    assert len(ring) == 5000


def test_rings_are_per_source_and_sized_from_config() -> None:
    rings = EvidenceRings.from_config(EvidenceSection.model_validate({"ring_seconds": "2s"}))
    assert rings.max_frames == 2 * DEFAULT_MAX_FRAMES_PER_SECOND
    for i in range(100):
        rings.add(frame(i * 0.1, "a"))
        rings.add(frame(i * 0.1 + 0.05, "b", temp_c=20.0))
    assert rings.sources == ["a", "b"]
    a = rings.ring("a")
    assert a is not None and len(a) == 21  # 7.9 .. 9.9
    assert all(f.source == "b" for f in rings.slice("b", 0, 100))
    assert rings.slice("unknown", 0, 100) == []


def test_tight_count_bound_from_rate() -> None:
    rings = EvidenceRings(seconds=1.0, max_frames_per_second=50)
    for i in range(1000):
        rings.add(frame(i * 0.001))  # 1000 frames/s, all within one second
    ring = rings.ring("bench")
    assert ring is not None and len(ring) == 50 and ring.newest_mono == pytest.approx(0.999)


def test_slice_edges_inclusive() -> None:
    ring = FrameRing(seconds=100.0, max_frames=1000)
    for i in range(50):
        ring.add(frame(float(i)))
    assert [f.mono for f in ring.slice(10.0, 13.0)] == [10.0, 11.0, 12.0, 13.0]
    assert [f.mono for f in ring.slice(9.5, 10.5)] == [10.0]
    assert ring.slice(60.0, 70.0) == []  # after the newest
    assert [f.mono for f in ring.slice(-5.0, 1.0)] == [0.0, 1.0]  # before the oldest: what is there
    assert ring.slice(20.0, 10.0) == []


def test_invalid_bounds_refused() -> None:
    with pytest.raises(ValueError):
        FrameRing(0, 10)
    with pytest.raises(ValueError):
        EvidenceRings(10.0, 0)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 2.0, allow_nan=False), min_size=1, max_size=300),
    seconds=st.floats(0.5, 50.0),
    max_frames=st.integers(1, 400),
    start=st.floats(-10.0, 400.0),
    length=st.floats(0.0, 100.0),
)
def test_ring_matches_a_plain_filter(
    gaps: list[float], seconds: float, max_frames: int, start: float, length: float
) -> None:
    ring = FrameRing(seconds, max_frames)
    monos: list[float] = []
    t = 0.0
    for gap in gaps:
        t += gap
        monos.append(t)
        ring.add(frame(t))
    kept = [m for m in monos if m >= monos[-1] - seconds][-max_frames:]
    assert [f.mono for f in ring.slice(-1e9, 1e9)] == kept
    assert [f.mono for f in ring.slice(start, start + length)] == [
        m for m in kept if start <= m <= start + length
    ]
