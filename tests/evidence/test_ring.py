"""The evidence ring: columnar per source, bounded by time and by bytes, slices exact at the edges and
equal to a plain list of the same frames within the span it still holds."""

from __future__ import annotations

import gc
import math
import random
import struct
import sys
import tracemalloc
from collections.abc import Callable, Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import EvidenceSection
from edge_agent.evidence import EvidenceRings, MergedSlices, SourceRing, merge_by_time
from edge_agent.evidence.blocks import Block
from edge_agent.evidence.packing import Packed
from edge_agent.evidence.ring import MIB
from edge_agent.frames import Frame

VALUES = {"supply_v": 12.0}
WALL0 = 1_776_000_000.0


def frame(mono: float, source: str = "bench", **values: float) -> Frame:
    return Frame(source, mono, WALL0 + mono, values or VALUES)


def bits(value: float | None) -> bytes | None:
    return None if value is None else struct.pack("<d", value)


def key(f: Frame) -> tuple[object, ...]:
    """A frame compared bit for bit (NaN equal to itself, -0.0 apart from 0.0), dict order aside."""
    values = frozenset((name, bits(v)) for name, v in f.values.items())
    return (f.source, bits(f.mono), bits(f.wall), bits(f.device_time), values)


def keys(frames: Iterable[Frame]) -> list[tuple[object, ...]]:
    return [key(f) for f in frames]


def real_bytes(ring: SourceRing) -> int:
    """What the ring's blocks occupy, measured here with sys.getsizeof of every object a block holds
    (independently of the ring's own accounting, which may only count more)."""
    total = 0
    for block in ring._blocks:
        layout = block.layout
        parts = [block, block.data, block.row, block.get, layout, layout, *layout]
        if block.packed is not None:
            parts += [block.packed, block.packed.data]
        total += sum(map(sys.getsizeof, parts))
    return total


def accounted_right(ring: SourceRing) -> bool:
    real = real_bytes(ring)
    return real <= ring.nbytes <= real + 256 * ring.blocks


def pack_at_once(work: Callable[[], Packed], done: Callable[[Packed], None]) -> None:
    done(work())


def the_ring(rings: EvidenceRings, source: str = "bench") -> SourceRing:
    ring = rings.ring(source)
    assert ring is not None
    return ring


def test_time_bound_keeps_the_last_seconds_and_at_most_one_block_more() -> None:
    rings = EvidenceRings(seconds=10.0, memory_bytes=64 * MIB, block_bytes=1024)
    for i in range(1000):  # 100 s at 10 frames/s
        rings.add(frame(i / 10))
    ring = the_ring(rings)
    assert ring.newest_mono == pytest.approx(99.9)
    rows_per_block = 1024 // 24  # mono, wall, one channel
    oldest = ring.oldest_mono
    assert oldest is not None and 99.9 - 10.0 - rows_per_block / 10 <= oldest <= 89.9
    assert [f.mono for f in rings.slice("bench", 89.9, 99.9)] == pytest.approx(
        [i / 10 for i in range(899, 1000)]
    )
    assert rings.blocks_evicted["time"] > 0 and rings.blocks_evicted["memory"] == 0


def test_byte_bound_holds_with_a_stalled_clock() -> None:
    """A clock that stops (every frame at t=0): the time bound keeps everything, the bytes do not."""
    rings = EvidenceRings(seconds=120.0, memory_bytes=MIB)
    for i in range(200_000):
        rings.add(frame(0.0, ch=float(i)))
        if i % 20_000 == 0:
            assert rings.nbytes <= MIB
    ring = the_ring(rings)
    assert rings.nbytes == ring.nbytes <= MIB and accounted_right(ring)
    assert rings.blocks_evicted["memory"] > 0
    assert 0 < len(ring) < 200_000
    assert [f.values["ch"] for f in rings.slice("bench", 0.0, 0.0)][-3:] == [199_997.0, 199_998.0, 199_999.0]


def test_a_row_costs_what_its_values_cost() -> None:
    """8 channels: 10 doubles a row (80 bytes) plus a few per cent of block headers."""
    rings = EvidenceRings(seconds=30.0, memory_bytes=64 * MIB)
    for i in range(150_000):  # 30 s at 5,000 lines/s
        rings.add(Frame("bench", i / 5000, WALL0, {f"ch{c}": float(i) for c in range(8)}))
    ring = the_ring(rings)
    per_row = ring.nbytes / len(ring)
    assert 80.0 <= per_row < 84.0, per_row
    assert accounted_right(ring)


def test_slices_cut_by_memory_say_so_and_are_counted() -> None:
    rings = EvidenceRings(seconds=300.0, memory_bytes=MIB)
    for i in range(100_000):  # 100 s at 1 kHz of 8 channels: ~8 MB, eight times the budget
        rings.add(Frame("bench", i / 1000, WALL0 + i / 1000, {f"ch{c}": 1.0 for c in range(8)}))
    ring = the_ring(rings)
    oldest = ring.oldest_mono
    assert oldest is not None and oldest > 80.0
    piece = rings.slice("bench", 60.0, 99.0)
    (coverage,) = piece.coverage()
    assert coverage.cut_by == "memory"
    assert coverage.requested_start == 60.0 and coverage.covered_from == oldest
    assert piece[0].mono == oldest
    assert rings.slices_cut == {"memory": 1, "time": 0}
    recent = rings.slice("bench", 99.0, 99.9)
    assert recent.coverage()[0].cut_by is None and rings.slices_cut["memory"] == 1
    status = rings.status()
    assert status["slices_cut"]["memory"] == 1 and status["bytes"] <= status["budget_bytes"] == MIB


def test_slices_cut_by_time_say_so() -> None:
    rings = EvidenceRings(seconds=5.0, memory_bytes=64 * MIB, block_bytes=240)  # 10 rows a block
    for i in range(200):
        rings.add(frame(i * 0.1))
    assert rings.slice("bench", 0.0, 19.9).coverage()[0].cut_by == "time"
    oldest = the_ring(rings).oldest_mono
    assert oldest is not None and oldest > 13.9  # 5 s kept, and at most one block (1 s) more
    newest = the_ring(rings).newest_mono
    assert newest is not None and oldest <= min(t for t in (i * 0.1 for i in range(200)) if t >= newest - 5.0)
    assert rings.slice("bench", 14.0, 19.9).coverage()[0].cut_by == "time"  # 14.0 .. oldest are gone
    assert rings.slice("bench", oldest, 19.9).coverage()[0].cut_by is None
    assert rings.slices_cut == {"memory": 0, "time": 2}


def test_the_source_holding_most_gives_way_first() -> None:
    """A wide, fast source floods the budget; a slow one keeps every frame of its time span."""
    rings = EvidenceRings(seconds=60.0, memory_bytes=2 * MIB)
    wide = {f"f{n}": float(n) for n in range(270)}
    for i in range(6000):
        t = i * 0.01
        rings.add(Frame("wide", t, WALL0 + t, wide))
        if i % 10 == 0:
            rings.add(frame(t, "slow", temp_c=20.0 + i))
        assert rings.nbytes <= 2 * MIB
    slow = rings.slice("slow", -1.0, 100.0)
    assert len(slow) == 600 and slow.coverage()[0].cut_by is None
    assert rings.slice("wide", -1.0, 100.0).coverage()[0].cut_by == "memory"
    assert the_ring(rings, "wide").nbytes > the_ring(rings, "slow").nbytes


def test_channel_sets_that_change_and_missing_values() -> None:
    rings = EvidenceRings(seconds=100.0, memory_bytes=MIB, block_bytes=2048)
    sent = [
        Frame("b", 0.0, WALL0, {"a": 1.0, "b": 2.0}),
        Frame("b", 0.1, WALL0, {"a": 1.5}),  # b missing: absent, not NaN
        Frame("b", 0.2, WALL0, {"b": math.nan, "a": 3.0}),  # a NaN reading, and another order
        Frame("b", 0.3, WALL0, {"a": 4.0, "b": 5.0, "c": -0.0}),  # a new channel mid-block
        Frame("b", 0.4, WALL0, {"c": math.inf}, device_time=7.0),  # device time appears
        Frame("b", 0.5, WALL0, {}, device_time=math.nan),  # no channels at all; a NaN device time
        Frame("b", 0.6, WALL0, {"a": 6.0}),
        *(Frame("b", 0.7 + i / 1000, WALL0, {f"w{i}": float(i)}) for i in range(50)),  # a new name each
    ]
    for f in sent:
        rings.add(f)
    got = list(rings.slice("b", -1.0, 10.0))
    assert keys(got) == keys(sent)
    assert "b" not in got[1].values and math.isnan(got[2].values["b"])
    assert got[4].device_time == 7.0 and got[3].device_time is None
    assert rings.slice("b", -1.0, 10.0).channels() == ["a", "b", "c", *(f"w{i}" for i in range(50))]
    ring = the_ring(rings, "b")
    assert rings.nbytes <= MIB and accounted_right(ring)


def test_a_row_wider_than_the_budget_is_not_kept_and_counted() -> None:
    rings = EvidenceRings(seconds=10.0, memory_bytes=64 * 1024)
    rings.add(frame(0.0, ok=1.0))
    rings.add(Frame("bench", 0.1, WALL0, {f"f{n}": 1.0 for n in range(20_000)}))  # 160 kB of values
    rings.add(frame(0.2, ok=2.0))
    assert rings.frames_not_kept == 1 and rings.nbytes <= 64 * 1024
    piece = rings.slice("bench", 0.0, 1.0)
    assert [f.values for f in piece] == [{"ok": 1.0}, {"ok": 2.0}]
    assert piece.coverage()[0].cut_by == "memory"  # the wide frame is missing from it


def test_tracemalloc_a_ring_filled_far_past_its_budget() -> None:
    """What Python really allocates for the ring (tracemalloc: arrays, dicts, names, blocks, deques)
    after ~12 MB of rows of random widths (1 to 2,000 fields) from three sources at random rates:
    within the budget plus a little for the ring objects themselves; and the ring's own count agrees."""
    budget = MIB // 2
    rng = random.Random(12)
    widths = [1, 8, 8, 40, 270, 2000]
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rings = EvidenceRings(30.0, budget)
        t = dict.fromkeys(("a", "b", "c"), 0.0)
        width = dict.fromkeys(("a", "b", "c"), 8)
        sent = 0
        while sent < 1_500_000:  # values (8 bytes each): ~23 times the budget
            source = rng.choice("aab" if sent % 3 else "c")
            if rng.random() < 0.02:  # now and then a source changes its line width
                width[source] = rng.choice(widths)
            t[source] += rng.choice([0.0, 0.0002, 0.001, 0.01])
            # JSON-like: every line brings its own name strings, as json.loads makes them.
            values = dict.fromkeys([f"field_{n}" for n in range(width[source])], rng.random())
            rings.add(Frame(source, t[source], WALL0 + t[source], values, rng.choice([None, t[source]])))
            sent += width[source]
            del values
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert rings.nbytes <= budget
    assert rings.blocks_evicted["memory"] > 50
    assert rings.frames_not_kept == 0  # the widest row fits the budget: every frame was stored
    assert held <= budget + 64 * 1024, (held, rings.nbytes)
    assert held >= 0.8 * rings.nbytes  # the accounting is not a gross over-count either


def test_rings_are_per_source_and_sized_from_config() -> None:
    rings = EvidenceRings.from_config(EvidenceSection.model_validate({"ring_seconds": "2s", "memory_mb": 3}))
    assert rings.budget == 3 * MIB and rings.seconds == 2.0
    for i in range(100):
        rings.add(frame(i * 0.1, "a"))
        rings.add(frame(i * 0.1 + 0.05, "b", temp_c=20.0))
    assert rings.sources == ["a", "b"]
    assert all(f.source == "b" for f in rings.slice("b", 0, 100))
    assert len(rings.slice("unknown", 0, 100)) == 0 and rings.slice("unknown", 0, 100) == []
    assert EvidenceRings.from_config(EvidenceSection()).budget == 64 * MIB


def test_slice_edges_inclusive() -> None:
    rings = EvidenceRings(seconds=100.0, block_bytes=256)  # several blocks
    for i in range(50):
        rings.add(frame(float(i)))
    assert [f.mono for f in rings.slice("bench", 10.0, 13.0)] == [10.0, 11.0, 12.0, 13.0]
    assert [f.mono for f in rings.slice("bench", 9.5, 10.5)] == [10.0]
    assert rings.slice("bench", 60.0, 70.0) == []  # after the newest
    assert [f.mono for f in rings.slice("bench", -5.0, 1.0)] == [0.0, 1.0]  # before the oldest
    assert rings.slice("bench", 20.0, 10.0) == []
    piece = rings.slice("bench", 3.0, 45.0)
    assert piece[0].mono == 3.0 and piece[-1].mono == 45.0 and piece[7].mono == 10.0
    assert [f.mono for f in piece[1:3]] == [4.0, 5.0]
    with pytest.raises(IndexError):
        piece[len(piece)]


def test_a_slice_does_not_change_when_the_ring_goes_on() -> None:
    """Sealed blocks are shared, the open one copied: later frames and evictions leave a slice as taken."""
    rings = EvidenceRings(seconds=1.0, block_bytes=512)
    for i in range(30):
        rings.add(frame(i * 0.01, v=float(i)))
    taken = rings.slice("bench", 0.0, 1.0)
    before = keys(taken)
    for i in range(30, 3000):
        rings.add(frame(i * 0.01, v=float(i)))
    assert keys(taken) == before and len(taken) == 30


def test_invalid_bounds_refused() -> None:
    for bad in ({"seconds": 0}, {"seconds": math.inf}, {"seconds": 1.0, "memory_bytes": 0}):
        with pytest.raises(ValueError):
            EvidenceRings(**bad)  # type: ignore[arg-type]


def test_block_cost_is_known_before_the_block_exists() -> None:
    for channels, capacity, device in ((0, 1, False), (8, 744, False), (270, 30, True), (3, 4096, True)):
        names = [f"c{n}" for n in range(channels)]
        assert Block.cost(names, capacity, device) == pytest.approx(
            Block(names, capacity, device).nbytes, abs=64
        )


# -- against a plain list of frames ----------------------------------------------------------------

NAMES = ["a", "b", "c", "d", "e"]
finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from([0.0, -0.0, 1e308, 5e-324])
)


@st.composite
def streams(draw: st.DrawFn) -> list[Frame]:
    """Up to three sources interleaved; rows of 0-5 named channels (any subset, any order), or wide
    rows of 40 or 300; any float, NaN and the infinities included; device times sometimes."""
    count = draw(st.integers(1, 250))
    frames: list[Frame] = []
    t = {"s1": 0.0, "s2": 0.0, "s3": 0.0}
    for _ in range(count):
        source = draw(st.sampled_from(["s1", "s1", "s2", "s3"]))
        t[source] += draw(st.sampled_from([0.0, 0.001, 0.01, 0.1, 1.0, 3.0]))
        width = draw(st.sampled_from([0, 1, 2, 3, 5, 5, 5, 40, 300]))
        if width <= len(NAMES):
            names = draw(st.permutations(NAMES))[:width]
            values = {name: draw(finite_or_not) for name in names}
        else:  # wide: one drawn value, the rest derived (drawing 300 floats a row is too slow)
            base = draw(finite_or_not)
            values = {f"w{n}": base + n for n in range(width)}
        device_time = draw(st.one_of(st.none(), finite_or_not))
        frames.append(Frame(source, t[source], WALL0 + t[source], values, device_time))
    return frames


def sources_of(frames: Sequence[Frame]) -> dict[str, list[Frame]]:
    out: dict[str, list[Frame]] = {}
    for f in frames:
        out.setdefault(f.source, []).append(f)
    return out


@settings(max_examples=80, deadline=None)
@given(
    frames=streams(),
    seconds=st.sampled_from([0.5, 2.0, 10.0, 1000.0]),
    memory=st.sampled_from([8 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024]),
    block=st.sampled_from([64, 512, 4096, 65_536]),
    start=st.floats(-5.0, 300.0),
    length=st.floats(0.0, 100.0),
    packed=st.booleans(),
)
def test_ring_matches_a_plain_list(
    frames: list[Frame], seconds: float, memory: int, block: int, start: float, length: float, packed: bool
) -> None:
    """Also with every sealed block packed as it is sealed (a packer that runs at once): bit for bit
    the same frames, slices and channels, and the bytes held still accounted right."""
    rings = EvidenceRings(seconds, memory, block, packer=pack_at_once if packed else None)
    for f in frames:
        rings.add(f)
        assert rings.nbytes <= memory
    assert rings.nbytes == sum(the_ring(rings, s).nbytes for s in rings.sources)
    for source, sent in sources_of(frames).items():
        ring = the_ring(rings, source)
        assert accounted_right(ring)
        if rings.frames_not_kept:
            continue  # a row wider than the budget left a hole: test_a_row_wider_than_the_budget...
        held = keys(rings.slice(source, -math.inf, math.inf))
        # What the ring holds is the newest frames, whole: a suffix of what was sent.
        assert held == keys(sent[len(sent) - len(held) :])
        if rings.blocks_evicted["memory"] == 0:
            newest = sent[-1].mono
            assert len(held) >= sum(1 for f in sent if f.mono >= newest - seconds)
        retained, evicted = sent[len(sent) - len(held) :], sent[: len(sent) - len(held)]
        end = start + length
        got = rings.slice(source, start, end)
        assert keys(got) == keys(f for f in retained if start <= f.mono <= end)
        assert got.channels() == list(dict.fromkeys(name for f in got for name in f.values))
        assert (got.coverage()[0].cut_by is not None) == bool(evicted and evicted[-1].mono >= start)


@settings(max_examples=50, deadline=None)
@given(frames=streams(), start=st.floats(-5.0, 200.0), length=st.floats(0.0, 200.0))
def test_merged_slices_equal_a_merged_list(frames: list[Frame], start: float, length: float) -> None:
    rings = EvidenceRings(1000.0, 64 * MIB, 1024)
    for f in frames:
        rings.add(f)
    order = sorted(sources_of(frames))
    merged = merge_by_time(rings.slice(s, start, start + length) for s in order)
    plain = merge_by_time(
        [f for f in sources_of(frames)[s] if start <= f.mono <= start + length] for s in order
    )
    assert isinstance(plain, list)
    assert keys(merged) == keys(plain) and len(merged) == len(plain)
    if plain:
        assert key(merged[0]) == key(plain[0]) and key(merged[-1]) == key(plain[-1])
        assert key(merged[len(plain) // 2]) == key(plain[len(plain) // 2])
    assert isinstance(merged, MergedSlices)
    # What the writer would list walking the frames (within a row, the block's column order: a row whose
    # fields come in another order than the block's lists them in the block's).
    assert merged.channels() == list(dict.fromkeys(n for f in merged for n in f.values))
    assert set(merged.channels()) == {n for f in plain for n in f.values}
