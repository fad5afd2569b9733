"""A sample's wall time (edge_agent/detect/sample_walls.py): its timeline time plus the offset learnt
from prompt reads, held between the previous read's wall time and its own read's; an anomaly that
began in a read the host took late carries the time the sample was taken, not the read's."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import RuleSection
from edge_agent.detect import AnomalyOpened, Detector
from edge_agent.detect.sample_walls import WINDOW, SampleWalls
from edge_agent.frames import Frame, FrameBatch

WALL0 = 1_700_000_000.0
OFFSET = WALL0 - 500.0  # wall time minus the source's timeline (host monotonic seconds) at 1x live
RATE = 50.0  # lines a second
READ_EVERY = 0.02


def live_reads(
    walls: SampleWalls, start: float, end: float, late: float = 0.0
) -> list[tuple[list[float], float]]:
    """Reads of a 1x live stream from timeline `start` to `end`, each `late` s after its last line:
    (the rows' timeline times, the read's wall time) for each, after `walls` has taken it."""
    reads = []
    t = start
    while t < end:
        monos = [t + i / RATE for i in range(int(READ_EVERY * RATE))]
        wall = monos[-1] + OFFSET
        walls.walls_of(monos, wall)
        reads.append((monos, wall))
        t = monos[-1] + 1 / RATE
    return reads


def test_the_first_read_is_at_its_own_time() -> None:
    walls = SampleWalls()
    assert walls.walls_of([500.0, 500.02, 500.04], WALL0) == [WALL0] * 3


def test_prompt_reads_spread_their_rows_on_the_timeline() -> None:
    walls = SampleWalls()
    live_reads(walls, 500.0, 502.0)
    monos = [502.0, 502.01, 502.02]
    got = walls.walls_of(monos, monos[-1] + OFFSET)
    assert got == pytest.approx([m + OFFSET for m in monos], abs=1e-6)


def test_a_read_the_host_took_late_keeps_each_sample_at_its_own_time() -> None:
    """A host stalled 0.9 s: the read after it holds 0.9 s of lines; a fault at its first line began
    0.9 s before the read, and is reported so (not at the read's time), never before the last read."""
    walls = SampleWalls()
    last_monos, last_wall = live_reads(walls, 500.0, 505.0)[-1]
    backlog = [last_monos[-1] + (i + 1) / RATE for i in range(45)]  # 0.9 s of lines
    read_wall = backlog[-1] + OFFSET + 0.003
    got = walls.walls_of(backlog, read_wall)
    assert got[0] == pytest.approx(backlog[0] + OFFSET, abs=1e-6)
    assert read_wall - got[0] > 0.85
    assert all(last_wall <= w <= read_wall for w in got)
    assert got == sorted(got)


def test_a_read_never_places_a_sample_before_the_previous_read_or_after_its_own() -> None:
    """A replay 100x faster than the host and a wall clock stepped by an hour either way: the offset
    learnt from earlier reads is wrong, the bounds hold."""
    walls = SampleWalls()
    live_reads(walls, 500.0, 503.0)
    fast = [503.0 + i for i in range(10)]  # 10 s of timeline in one 20 ms read
    wall = WALL0 + 10.0
    got = walls.walls_of(fast, wall)
    assert all(w <= wall for w in got)
    for step in (3600.0, -3600.0):
        previous = wall
        wall += step + 0.02
        got = walls.walls_of([fast[-1] + 0.02], wall)
        assert min(previous, wall) <= got[0] <= wall


def test_the_offset_follows_a_device_clock_that_drifts() -> None:
    """A device crystal 1,000 ppm slow: after 100 s its timeline is 0.1 s behind the host. Samples are
    placed from the reads of the last WINDOW..2*WINDOW seconds, so the error stays near the drift of
    that span, far under the accumulated 0.1 s."""
    walls = SampleWalls()
    wall = WALL0
    t = 500.0
    for _ in range(int(100 / READ_EVERY)):
        t += READ_EVERY * (1 - 1e-3)  # the device's seconds run slow
        wall += READ_EVERY
        got = walls.walls_of([t], wall)
    assert abs(got[0] - wall) <= 2 * WINDOW * 1e-3 + READ_EVERY


@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(0.0, 0.5), min_size=1, max_size=8),  # the gaps between the rows
            st.floats(-1.0, 2.0),  # how late the read came after its last row
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_read_taken_whole_gives_the_times_its_frames_one_by_one_give(
    reads: list[tuple[list[float], float]],
) -> None:
    whole, one_by_one = SampleWalls(), SampleWalls()
    t = 500.0
    for gaps, late in reads:
        monos = []
        for gap in gaps:
            t += gap
            monos.append(t)
        wall = monos[-1] + OFFSET + late
        got = whole.walls_of(monos, wall)
        assert got == [one_by_one.wall_of(mono, wall) for mono in monos]
        assert all(math.isfinite(w) and w <= wall for w in got)


@pytest.mark.parametrize("batched", [True, False])
def test_an_anomaly_that_began_during_a_stall_starts_when_its_sample_was_taken(batched: bool) -> None:
    detector = Detector([RuleSection.model_validate({"channel": "v", "kind": "limits", "max": 1.0})])
    events = []

    def feed(monos: list[float], values: list[float], wall: float) -> None:
        batch = FrameBatch("bench", wall, ("v",), monos, values)
        if batched:
            detector.on_batch(batch, events.extend)
        else:
            for frame in batch.frames():
                events.extend(detector.on_frame(frame))

    t = 500.0
    for _ in range(200):  # 4 s of prompt reads
        monos = [t, t + 0.02]
        feed(monos, [0.0, 0.0], monos[-1] + OFFSET + 0.001)
        t += 0.04
    stalled = [t + i * 0.02 for i in range(50)]  # 1 s of lines in the read after a 1 s stall
    values = [0.0] * 5 + [3.0] * 45
    read_wall = stalled[-1] + OFFSET + 0.001
    feed(stalled, values, read_wall)
    opened = [e for e in events if isinstance(e, AnomalyOpened)]
    assert len(opened) == 1
    started = opened[0].anomaly
    assert started.started_mono == stalled[5]
    assert started.started_wall == pytest.approx(stalled[5] + OFFSET, abs=0.005)
    assert read_wall - started.started_wall > 0.85  # the read's time, before: late by the stall


def test_frames_of_one_read_share_its_wall_time_as_they_always_did() -> None:
    """Frames still carry their read's wall time (the recorder's and evidence's `wall` column: when the
    host read the line); only the detector's anomaly times are the samples'."""
    frame = FrameBatch("bench", WALL0, ("v",), [1.0, 2.0], [0.0, 0.0]).frame(0)
    assert frame == Frame("bench", 1.0, WALL0, {"v": 0.0})
