"""The recorder's memory is bounded in bytes (issue 12 item 4): what a frame is charged is an upper bound
of what a decoded frame really holds, a recorder whose writer is behind stays within
`recorder.max_pending_mb` and counts the frames it could not record (on /status, /metrics and in the
log), and the writer keeps compressed rows, not frames, between its flushes."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import sys
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wide_jsonl_toml  # tests/e2e: on sys.path by this folder's conftest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from recorder_helpers import unflushed_writer

from edge_agent.config import EdgeAgentConfig, SerialPort, load_config
from edge_agent.frames import Frame, FrameBatch
from edge_agent.logs import setup_logging
from edge_agent.metrics import Metrics
from edge_agent.outbox import Outbox
from edge_agent.recorder import csvgz
from edge_agent.recorder import writer as writer_module
from edge_agent.recorder.recorder import Recorder, batch_bytes, frame_bytes
from edge_agent.recorder.segmenter import Segmenter
from edge_agent.recorder.writer import SegmentWriter
from edge_agent.serial.decoders import make_decoder
from edge_agent.service.metric_sources import recorder_source
from edge_agent.steps.tracker import StepTracker

MIB = 1024 * 1024


def allocated(size: int) -> int:
    """Bytes an object of `sys.getsizeof` `size` takes from CPython's allocators: pymalloc's 16-byte
    classes up to 512 bytes, malloc's header and 16-byte rounding above."""
    return (size + 15) // 16 * 16 if size <= 512 else (size + 8 + 15) // 16 * 16


def held_bytes(frame: Frame, shared_names: bool) -> int:
    """What `frame` holds on its own: the Frame, its dict, its floats, its times (and its key strings
    when they are not shared with other frames)."""
    total = allocated(sys.getsizeof(frame)) + allocated(sys.getsizeof(frame.values))
    total += sum(allocated(sys.getsizeof(v)) for v in frame.values.values())
    total += sum(allocated(sys.getsizeof(t)) for t in (frame.mono, frame.wall, frame.device_time) if t)
    if not shared_names:
        total += sum(allocated(sys.getsizeof(name)) for name in frame.values)
    return total


def csv_lines(width: int, count: int) -> bytes:
    return b"".join(
        (",".join(f"{k * 0.001 + c:.4f}" for c in range(width)) + "\n").encode() for k in range(count)
    )


def json_lines(width: int, count: int) -> bytes:
    return b"".join(
        (json.dumps({"t": k, **{f"channel_{c}": k * 0.5 + c for c in range(width)}}) + "\n").encode()
        for k in range(count)
    )


def kv_lines(width: int, count: int) -> bytes:
    return b"".join(
        (" ".join(f"channel_{c}={k * 0.25 + c}" for c in range(width)) + "\n").encode() for k in range(count)
    )


def decoded(fmt: str, width: int, count: int) -> list[Frame]:
    if fmt == "csv":
        port = SerialPort(name="bench", url="loop://", columns=[f"c{i}" for i in range(width)])
        data = csv_lines(width, count)
    elif fmt == "jsonl":
        port = SerialPort(name="bench", url="loop://", format="jsonl", max_line_bytes=1 << 20)
        data = json_lines(width, count)
    else:
        port = SerialPort(name="bench", url="loop://", format="kv", max_line_bytes=1 << 20)
        data = kv_lines(width, count)
    decoder = make_decoder(port)
    # Received now, as the reader stamps them: the writer closes a segment that spans
    # segment_max_duration of host time, and frames stamped years ago made it cut one mid-test.
    frames = [f for f in decoder.feed(data, 1.0, time.time()) if isinstance(f, Frame)]
    assert len(frames) == count
    return frames


@pytest.mark.parametrize(
    ("fmt", "width"),
    [("csv", 1), ("csv", 9), ("csv", 64), ("jsonl", 1), ("jsonl", 9), ("jsonl", 271), ("kv", 40)],
)
def test_frame_bytes_is_an_upper_bound_of_a_decoded_frame(fmt: str, width: int) -> None:
    count = 200
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    frames = decoded(fmt, width, count)
    gc.collect()
    measured = (tracemalloc.get_traced_memory()[0] - before - sys.getsizeof(frames)) / count
    tracemalloc.stop()
    # The decoder shares channel names between frames (one string a name, whatever the format).
    assert all(a is b for a, b in zip(frames[0].values, frames[-1].values, strict=True))
    for frame in frames[:3]:
        model = held_bytes(frame, shared_names=True)
        assert model <= frame_bytes(frame) <= 1.6 * model, (model, frame_bytes(frame))
    # tracemalloc also counts the decoder's one-off allocations; the charge still covers it.
    assert measured <= frame_bytes(frames[0]), (measured, frame_bytes(frames[0]))


@pytest.mark.parametrize(
    ("width", "device_time", "rows"),
    [(1, False, 1), (2, True, 40), (9, False, 34), (9, True, 34), (64, True, 200)],
)
def test_batch_bytes_is_an_upper_bound_of_a_decoded_batch(width: int, device_time: bool, rows: int) -> None:
    """The CSV decoder's packed reads (FrameBatch) are charged at least what they hold, and well under
    what the same rows as Frames are charged."""
    columns = [f"c{i}" for i in range(width)]
    port = SerialPort(
        name="bench", url="loop://", columns=["t_ms", *columns] if device_time else columns,
        device_time="t_ms" if device_time else None,
    )  # fmt: skip
    decoder = make_decoder(port)
    reads = [csv_lines(width + int(device_time), rows) for _ in range(20)]
    decoder.feed_packed(reads[0], 0.5, 1.7e9)  # the first read sets the clock up
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    batches = [b for k, data in enumerate(reads) for b in decoder.feed_packed(data, 1.0 + k, 1.7e9)]
    gc.collect()
    measured = (tracemalloc.get_traced_memory()[0] - before - sys.getsizeof(batches)) / len(batches)
    tracemalloc.stop()
    assert all(isinstance(b, FrameBatch) and len(b) == rows for b in batches)
    charged = batch_bytes(batches[0])  # type: ignore[arg-type]
    assert measured <= charged <= 2 * measured + 600, (measured, charged)
    as_frames = sum(map(frame_bytes, batches[0].frames()))  # type: ignore[union-attr]
    assert rows == 1 or charged < as_frames


@given(st.lists(st.text(min_size=1, max_size=200), min_size=0, max_size=30), st.integers(1, 9))
def test_a_member_built_in_pieces_is_one_gzip_member_of_the_whole(texts: list[str], level: int) -> None:
    member = csvgz.Member(level)
    for text in texts:
        member.add(text, 1)
    assert member.rows == len(texts)
    data = b"".join(member.finish())
    decompressor = zlib.decompressobj(31)
    assert decompressor.decompress(data).decode() == "".join(texts)
    assert decompressor.eof and not decompressor.unused_data  # exactly one complete member
    assert member.rows == 0 and member.nbytes == 0


def _config(tmp_path: Path, pending_mb: float) -> EdgeAgentConfig:
    path = tmp_path / "agent.toml"
    recorder = f'[recorder]\nmax_pending_mb = {pending_mb}\nflush_interval = "50ms"\n'
    path.write_text(
        wide_jsonl_toml(bench="bench-mem", state_dir=tmp_path / "state", sections=recorder), encoding="utf-8"
    )
    return load_config(path, environ={})


def _writer(config: EdgeAgentConfig, folder: Path) -> SegmentWriter:
    section = config.recorder
    return SegmentWriter(
        folder,
        "run-mem",
        segmenter=Segmenter(max_bytes=int(section.segment_max_mb * MIB), max_seconds=3600.0),
        device_time_columns={"bench": None},
        flush_interval=section.flush_interval,
        level=section.compression_level,
    )


@pytest.fixture
def captured_logs() -> Iterator[Any]:
    stream = io.StringIO()
    setup_logging("info", json=True, stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    setup_logging("info", json=True, stream=io.StringIO())


async def test_a_recorder_whose_writer_is_behind_stays_in_budget_and_counts_what_it_drops(
    tmp_path: Path, captured_logs: Any
) -> None:
    """270-field frames fed while the writer thread has not started (a writer as far behind as can be):
    the frames waiting stay within the 1 MiB budget (as charged, and as tracemalloc measures them), the
    rest are dropped and counted; once the writer runs, recording resumes and the file holds exactly
    the frames that were accepted."""
    config = _config(tmp_path, pending_mb=1.0)
    state = tmp_path / "state"
    outbox = Outbox(state, config.outbox)
    steps = StepTracker(config=config, outbox=outbox, client=None, state_dir=state)
    recorder = Recorder(config, state, outbox=outbox, steps=steps)
    folder = state / "recordings" / "run-mem"
    folder.mkdir(parents=True)
    recorder.writer = _writer(config, folder)  # not started yet: nothing is taken off the queue
    budget = recorder.max_pending
    frames = decoded("jsonl", 270, 200)  # ~19 kB charged each: 1 MiB holds about 54

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for frame in frames:
        # A copy per frame (its own dict and floats), as the decoder makes them, so what is held is real.
        recorder.add(Frame(frame.source, frame.mono, frame.wall, dict(frame.values)))
    recorder.hand_off()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    accepted = len(frames) - recorder.frames_dropped
    assert 0 < accepted < len(frames)
    assert recorder.waiting_bytes <= budget
    assert held <= budget, (held, budget)
    assert recorder.waiting_bytes + frame_bytes(frames[0]) > budget  # it took what fitted

    recorder._log_drops()  # the run loop's tick
    status = recorder.status()
    assert status["frames_dropped"]["queue_full"] == len(frames) - accepted
    assert status["pending"]["bytes"] == status["pending"]["peak_bytes"] == recorder.waiting_bytes
    assert status["pending"]["budget_bytes"] == budget
    metrics = Metrics()
    metrics.add_source("recorder", recorder_source(recorder))
    samples = {
        (s.name, s.labels.get("reason", "")): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert samples[("edge_agent_recording_frames_dropped_total", "queue_full")] == len(frames) - accepted
    assert samples[("edge_agent_recording_pending_bytes", "")] == recorder.waiting_bytes
    assert samples[("edge_agent_recording_pending_budget_bytes", "")] == budget

    recorder.writer.start()
    deadline = time.monotonic() + 10.0
    while recorder.waiting_bytes and time.monotonic() < deadline:  # noqa: ASYNC110 (a thread counter)
        await asyncio.sleep(0.01)
    assert recorder.waiting_bytes == 0
    recorder._log_drops()  # no new drops since the last tick: caught up
    for frame in frames[:10]:
        recorder.add(frame)
    assert recorder.frames_dropped == len(frames) - accepted  # nothing more dropped
    await recorder.close()

    written = [f for f in folder.iterdir() if f.name.endswith(".csv.gz")]
    assert len(written) == 1
    rows = list(csvgz.iter_rows(written[0]))[1:]
    assert len(rows) == accepted + 10 == recorder.writer.frames_written
    assert len(rows) + recorder.frames_dropped == len(frames) + 10  # every frame recorded or counted
    events = [e for e in captured_logs() if e["event"].startswith("recording_")]
    assert [e["event"] for e in events] == ["recording_frames_dropped", "recording_caught_up"]
    assert events[1]["frames_not_recorded"] == len(frames) - accepted


def test_the_writer_holds_compressed_rows_and_writes_them_past_member_max_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between flushes (here a minute away) the writer keeps compressed bytes, not the frames: what it
    holds stays under MEMBER_MAX_BYTES (64 KiB here) plus deflate's state and one batch's text however
    many frames it took (~3 MB of them), and past MEMBER_MAX_BYTES a member is written without waiting
    for the flush."""
    monkeypatch.setattr(writer_module, "MEMBER_MAX_BYTES", 64 * 1024)
    writer = unflushed_writer(tmp_path, "run-mem")
    names = list(decoded("jsonl", 270, 1)[0].values)
    writer.start()
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        peak_held = total_cost = count = 0
        for batch in range(10):  # 10 x 20 frames of 270 values that compress poorly
            frames = [
                Frame("bench", 1.0 + i * 1e-3, 1.7e9, {n: ((i * 7919 + c * 104729) % 1000003) / 7.0
                                                       for c, n in enumerate(names)})
                for i in range(batch * 20, batch * 20 + 20)
            ]  # fmt: skip
            cost = sum(map(frame_bytes, frames))
            writer.put(frames, cost)
            total_cost += cost
            count += len(frames)
            del frames
            deadline = time.monotonic() + 10.0
            while writer.processed_cost < total_cost and time.monotonic() < deadline:
                time.sleep(0.002)  # bounded: 10 s a batch
            peak_held = max(peak_held, tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        assert writer.processed_cost == total_cost
        assert writer.frames_written > 0  # members went out before the flush was due
        assert writer.held_bytes < 64 * 1024
        assert total_cost > 3 * MIB
        assert peak_held < MIB, peak_held
    finally:
        writer.stop()
    (segment,) = [f for f in tmp_path.iterdir() if f.name.endswith(".csv.gz")]
    assert sum(1 for _ in csvgz.iter_rows(segment)) == count + 1
