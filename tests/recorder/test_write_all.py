"""The writer writes a gzip member as the pieces it was compressed in (`os.writev`), never joined into a
second copy of it (issue 12 item 4): every byte in order however the system cuts the writes short and
however many pieces there are, and the segment file is byte for byte what one `csvgz.member` of the
rows would be."""

from __future__ import annotations

import errno
import functools
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recorder_helpers import unflushed_writer  # this folder: on sys.path (pytest rootdir mode)

from edge_agent.frames import Frame
from edge_agent.recorder import csvgz
from edge_agent.recorder.recorder import frame_bytes
from edge_agent.recorder.writer import IOV_MAX, write_all


class ShortWrites:
    """A stand-in for `os.writev` on a file that takes at most `most` bytes a call (what a pipe, a
    socket or a nearly full disk does), keeping what it took."""

    def __init__(self, most: int, max_buffers: int) -> None:
        self.most = most
        self.max_buffers = max_buffers
        self.out = bytearray()
        self.calls = 0

    def __call__(self, buffers: Sequence[memoryview]) -> int:
        assert 0 < len(buffers) <= self.max_buffers
        assert all(len(buffer) for buffer in buffers)  # an empty buffer would make no progress
        self.calls += 1
        taken = b"".join(buffers)[: self.most]
        self.out += taken
        return len(taken)


@given(
    st.lists(st.binary(max_size=40), max_size=30),
    st.integers(1, 100),
    st.integers(1, 5),
)
def test_every_byte_is_written_in_order_however_short_the_writes(
    chunks: list[bytes], most: int, max_buffers: int
) -> None:
    writev = ShortWrites(most, max_buffers)
    write_all(writev, chunks, max_buffers)
    assert bytes(writev.out) == b"".join(chunks)
    total = sum(map(len, chunks))
    if most >= total and max_buffers >= len(chunks):
        assert writev.calls == (1 if total else 0)  # one call when the system takes it all


def test_a_failed_write_goes_to_the_caller_after_what_was_written() -> None:
    written = bytearray()

    def disk_full(buffers: Sequence[memoryview]) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.extend(bytes(buffers[0])[:3])
        return 3

    with pytest.raises(OSError, match="No space"):
        write_all(disk_full, [b"abcdef", b"ghi"])
    assert bytes(written) == b"abc"


def test_more_pieces_than_one_writev_takes_reach_a_real_file_whole(tmp_path: Path) -> None:
    """Three times the system's IOV_MAX pieces (one writev of them all is refused: EINVAL)."""
    rng = random.Random(4)
    chunks = [rng.randbytes(rng.randint(1, 64)) for _ in range(3 * IOV_MAX + 7)]
    path = tmp_path / "pieces"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with pytest.raises(OSError) as refused:
            os.writev(fd, chunks)
        assert refused.value.errno == errno.EINVAL
        write_all(functools.partial(os.writev, fd), chunks)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(chunks)


def test_a_segment_written_in_pieces_is_byte_for_byte_one_member_of_its_rows(tmp_path: Path) -> None:
    """Frames taken in five batches: the member is compressed as they come, in several pieces, and the
    segment file is the header's member and then exactly `csvgz.member` of every row's text."""
    channels = [f"c{k}" for k in range(8)]
    rng = random.Random(8)
    now = time.time()
    frames = [
        Frame("bench", 1.0 + k * 0.001, now, {c: round(rng.gauss(1.0, 0.1), 4) for c in channels})
        for k in range(5000)
    ]
    batches = [frames[k : k + 1000] for k in range(0, len(frames), 1000)]
    writer = unflushed_writer(tmp_path, "run-pieces")
    writer.start()
    for batch in batches:
        writer.put(batch, sum(map(frame_bytes, batch)))
    writer.stop()
    assert writer.frames_written == len(frames) and writer.write_errors == 0

    formatter = csvgz.RowFormatter(channels, False, frames[0].mono)
    texts = [formatter.format(batch) for batch in batches]
    pieces = csvgz.Member(1)
    for text in texts:
        pieces.add(text, 1000)
    parts = pieces.finish()
    assert len([part for part in parts if part]) > 2  # the member really was in pieces
    rows = csvgz.member("".join(texts), 1)
    assert b"".join(parts) == rows  # the pieces of a member built as rows come are that member
    (segment,) = [f for f in tmp_path.iterdir() if f.name.endswith(".csv.gz")]
    assert segment.read_bytes() == csvgz.member(csvgz.header_line(csvgz.header(channels, None)), 1) + rows
