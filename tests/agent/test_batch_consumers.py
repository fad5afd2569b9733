"""Every consumer of the agent's fan-out that takes a read's frames whole (`FrameBatch`) ends where the
same frames one by one take it: the evidence ring (bytes of every block, what was evicted and why), the
lens windower (the windows and what is left of the next one), the live page's decimator (every bucket)
and the recorder's CSV text. Random streams: varying widths, layouts and times (equal, close, gapped),
with NaN, ±inf, 1e308 and subnormals in some batches (which take the per-frame paths)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.evidence import EvidenceRings
from edge_agent.frames import Frame, FrameBatch
from edge_agent.lens.windower import Scale, Window, Windower
from edge_agent.live.decimator import Decimator
from edge_agent.recorder.csvgz import RowFormatter

WALL0 = 1_700_000_000.0
SPECIAL = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0]
LAYOUTS = [("a", "b", "c"), ("a", "b", "c"), ("a", "b"), ("c", "a", "b"), ("b",)]


@st.composite
def streams(draw: Any, *, layouts: list[tuple[str, ...]] = LAYOUTS) -> list[FrameBatch]:
    with_devices = draw(st.booleans())
    out = []
    t = draw(st.sampled_from([0.0, 0.05, 1234.5678]))
    for _ in range(draw(st.integers(1, 30))):
        names = draw(st.sampled_from(layouts))
        rows = draw(st.integers(1, 40))
        t += draw(st.sampled_from([0.0, 0.001, 0.03, 0.2]))
        monos, values = [], []
        for k in range(rows):
            t += draw(st.sampled_from([0.0, 0.0005, 0.001, 0.013]))
            monos.append(t)
            values.extend(math.sin(t * (i + 1) * 7.0) * 3 + k * 1e-3 for i in range(len(names)))
        if draw(st.integers(0, 4)) == 0:
            values[draw(st.integers(0, len(values) - 1))] = draw(st.sampled_from(SPECIAL))
        devices = [m * 1000.0 for m in monos] if with_devices and draw(st.booleans()) else None
        out.append(FrameBatch("s", WALL0 + t, names, monos, values, devices))
    return out


def frames_of(batches: list[FrameBatch]) -> list[Frame]:
    return [frame for batch in batches for frame in batch.frames()]


def ring_state(rings: EvidenceRings) -> Any:
    ring = rings.ring("s")
    assert ring is not None
    blocks = [(b.layout, b.device, b.used, b.capacity, b.nbytes, b.data.tobytes()) for b in ring._blocks]
    return blocks, dict(ring.evicted_until), ring.nbytes, rings.status()


@settings(max_examples=60)
@given(
    batches=streams(), budget=st.sampled_from([4096, 16384, 1 << 20]), seconds=st.sampled_from([0.02, 0.5])
)
def test_the_ring_stores_a_batch_as_its_frames(
    batches: list[FrameBatch], budget: int, seconds: float
) -> None:
    by_frame, by_batch = EvidenceRings(seconds, budget, 512), EvidenceRings(seconds, budget, 512)
    for frame in frames_of(batches):
        by_frame.add(frame)
    for batch in batches:
        by_batch.add_batch(batch)
    assert ring_state(by_batch) == ring_state(by_frame)


def windower_state(windower: Windower) -> Any:
    return (
        windower._buf,
        windower._walls,
        windower._monos,
        windower._to_skip,
        windower._last,
        windower._last_mono,
        windower.stats,
    )


@settings(max_examples=60)
@given(
    batches=streams(),
    size=st.sampled_from([1, 3, 8]),
    step=st.sampled_from([1, 2, 8, 11]),
    missing=st.sampled_from(["hold", "zero", "skip"]),
    scaled=st.booleans(),
    max_gap=st.sampled_from([None, 0.01, 0.1]),
)
def test_the_windower_windows_a_batch_as_its_frames(
    batches: list[FrameBatch], size: int, step: int, missing: Any, scaled: bool, max_gap: float | None
) -> None:
    def make() -> Windower:
        scaling = {"b": Scale(mean=0.5, std=3.0)} if scaled else None
        return Windower("s", ("b", "a"), size, step, missing=missing, scaling=scaling, max_gap=max_gap)

    by_frame, by_batch = make(), make()
    windows = [w for frame in frames_of(batches) if (w := by_frame.push(frame)) is not None]
    assert [w for batch in batches for w in by_batch.push_batch(batch)] == windows
    assert windower_state(by_batch) == windower_state(by_frame)


@settings(max_examples=60)
@given(
    batches=streams(),
    size=st.sampled_from([1, 3, 8]),
    step=st.sampled_from([1, 2, 8, 11]),
    builds=st.lists(st.booleans(), min_size=1),
    by_frame=st.booleans(),
)
def test_windows_not_built_leave_the_built_ones_as_they_were(
    batches: list[FrameBatch], size: int, step: int, builds: list[bool], by_frame: bool
) -> None:
    """A windower told not to build some windows (the lens could not take them) builds the others
    exactly as a windower that builds all, same samples and seq, and counts the rest as thinned."""
    build = [True]
    every = Windower("s", ("b", "a"), size, step)
    thinned = Windower("s", ("b", "a"), size, step, wanted=lambda: build[0])
    expected: list[Window] = []
    got: list[Window] = []
    for index, batch in enumerate(batches):
        build[0] = builds[index % len(builds)]
        made = every.push_batch(batch)
        if build[0]:
            expected.extend(made)
        if by_frame:
            got.extend(w for frame in batch.frames() if (w := thinned.push(frame)) is not None)
        else:
            got.extend(thinned.push_batch(batch))
    assert got == expected
    assert thinned.stats.windows == len(expected)
    assert thinned.stats.windows + thinned.stats.thinned == every.stats.windows
    assert windower_state(thinned)[:-1] == windower_state(every)[:-1]  # all but the counters


def decimator_state(decimator: Decimator) -> Any:
    source = decimator._sources["s"]
    channels = {
        name: (c.lo, c.hi, c.acc_lo, c.acc_hi, [ring.tobytes() for ring in c.rings])
        for name, c in source.channels.items()
        if hasattr(c, "rings")
    }
    keys = [k.tobytes() for k in source.keys]
    return channels, keys, source.edge, source.now_key, decimator.channel_count, decimator.channels_refused


@settings(max_examples=60)
@given(batches=streams(), max_channels=st.sampled_from([2, 128]))
def test_the_decimator_buckets_a_batch_as_its_frames(batches: list[FrameBatch], max_channels: int) -> None:
    by_frame, by_batch = Decimator(max_channels), Decimator(max_channels)
    for frame in frames_of(batches):
        by_frame.on_frame(frame)
    for batch in batches:
        by_batch.on_batch(batch)
    assert decimator_state(by_batch) == decimator_state(by_frame)


@settings(max_examples=60)
@given(batches=streams(), device=st.booleans())
def test_the_recorder_writes_a_batch_as_its_frames(batches: list[FrameBatch], device: bool) -> None:
    def make() -> RowFormatter:
        return RowFormatter(("a", "b", "c"), device, batches[0].monos[0])

    by_frame, by_batch = make(), make()
    # Items as the segmenter hands them over: batches, frames, and both mixed.
    mixed: list[Frame | FrameBatch] = [
        item for k, batch in enumerate(batches) for item in ([batch] if k % 2 else batch.frames())
    ]
    assert by_batch.format(batches) == make().format(mixed) == by_frame.format(frames_of(batches))
