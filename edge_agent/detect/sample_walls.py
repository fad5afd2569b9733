"""When a sample was taken, in wall time (sans-I/O): the times an anomaly's start, peak and end carry.

A frame's `wall` is the host's wall time of the read it came in: the same for every line of that read,
and late by however long the bytes waited in the tty buffer. On a host that stalled for a second (swap,
a CPU-starved VM, a paused container) the first read after it holds a second of samples, and an anomaly
that began at its start would be reported a second late. The source's timeline (`mono`: the device's
clock where it sends one, else the receive time spread over the read's bytes) knows better.

So the wall time of a sample is its timeline time plus the source's offset between wall and timeline,
taken from reads that came promptly: each read gives `wall - mono of its last row` (a late read gives a
larger value, never a smaller one), and the offset is the smallest of these over the last `WINDOW` to
`2 * WINDOW` seconds of reads, so a device clock that drifts against the host's is followed. The result
is kept between the previous read's wall time and this read's: a sample in this read arrived after the
previous read and before this one. That bound also holds it when the offset is unknown (the first read:
the read's own time, as before), when a replay runs the timeline faster than the host, and across a wall
clock step.

Only the current read's earlier reads inform it, so a read taken whole (the detector's batch path) and
its frames one by one get the same times. Frames of one read are known by their shared `wall`.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import add

WINDOW = 10.0  # seconds of reads the offset is the smallest of, at least (at most twice that)


class SampleWalls:
    """The wall times of one source's samples, from the frames' (`mono`, read `wall`) pairs."""

    __slots__ = ("_bucket", "_bucket_min", "_floor", "_last_mono", "_offset", "_previous_min", "_read_wall")

    def __init__(self) -> None:
        self._read_wall = -math.inf  # the current read's wall time
        self._last_mono = math.nan  # its last row's timeline time so far
        self._floor = -math.inf  # the previous read's wall time
        self._bucket = -math.inf  # floor(read wall / WINDOW) of the newest reads taken into the offset
        self._bucket_min = math.inf
        self._previous_min = math.inf  # the bucket before it
        self._offset = math.inf  # unknown: every sample at its read's time

    def wall_of(self, mono: float, wall: float) -> float:
        """The wall time of a frame at `mono` on the timeline that came in the read of wall time `wall`
        (frames of a source in order)."""
        if wall != self._read_wall:
            self._next_read(wall)
        self._last_mono = mono
        return min(wall, max(self._floor, mono + self._offset))

    def walls_of(self, monos: list[float], wall: float) -> list[float]:
        """`wall_of` of each row of one read (at least one row), in one pass."""
        if wall != self._read_wall:
            self._next_read(wall)
        self._last_mono = monos[-1]
        offset, floor = self._offset, self._floor
        if monos[0] + offset >= floor and monos[-1] + offset <= wall:  # the usual case: no clamping
            return list(map(add, monos, repeat(offset)))
        return [min(wall, max(floor, mono + offset)) for mono in monos]

    def _next_read(self, wall: float) -> None:
        finished, last = self._read_wall, self._last_mono
        if last == last:  # a read had rows: take its offset in
            lag = finished - last
            bucket = math.floor(finished / WINDOW)
            if bucket == self._bucket:
                self._bucket_min = min(self._bucket_min, lag)
            else:
                self._previous_min = self._bucket_min if bucket == self._bucket + 1 else math.inf
                self._bucket, self._bucket_min = bucket, lag
            self._offset = min(self._bucket_min, self._previous_min)
        self._floor = finished
        self._read_wall = wall
        self._last_mono = math.nan
