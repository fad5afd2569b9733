"""The writer thread: takes frames and step changes from the event loop in batches, routes them with
the Segmenter, and writes the segment files. The event loop never waits on it: the hand-off is a
`SimpleQueue.put` of a list, and memory in between is bounded by the Recorder (in bytes).

A batch's frames are formatted and compressed as soon as the batch is routed, so the frames are freed
then (the Recorder's count of bytes waiting drops with `processed_cost`): between flushes an open
segment holds compressed bytes only, under MEMBER_MAX_BYTES of them once a batch is taken (a member
that reaches it is written before the flush is due), plus deflate's state (~48 kB,
`csvgz.GZIP_MEM_LEVEL`). What the open segments hold and the member being written is `held_bytes`: the
Recorder charges it to the data path's memory budget beside the frames waiting
(`edge_agent.memory_budget`, whose recorder cap has MEMBER_MAX_BYTES for each source: a source has one
open segment at a time, the Segmenter's rule).

Durability: every `flush_interval` the rows of each open segment become one gzip member, written with
`os.writev` straight to the file in the pieces it was compressed in (no user-space buffer, no joined
copy of the member): from then on they survive a SIGKILL of the process. A closed segment is fsynced,
renamed from `<name>.part` to `<name>` and its sidecar written (atomically); a power cut can lose what
the page cache held of an open segment.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.frames import Frame, FrameBatch
from edge_agent.logs import get_logger
from edge_agent.recorder import csvgz
from edge_agent.recorder.model import SegmentInfo, StepRef, open_path, segment_file_name, sidecar_path
from edge_agent.recorder.segmenter import Close, Open, Rows, RunChange, Segmenter, StepChange, StepLike
from edge_agent.recorder.store import note_seq
from edge_agent.state_files import ensure_private_dir, fsync_dir, write_json
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)

Item = Frame | FrameBatch | StepChange | StepLike

# Compressed rows an open segment holds before they are written even though the flush is not due: a
# wide, fast source (270 fields at 2,000 lines/s is ~1.5 MB/s compressed) writes a member more often
# than every flush_interval instead of holding more. Members this large still cost nothing measurable
# in headers and restarted compression: 11.4 MB of 270-field CSV rows at level 1 in 50-row batches
# came to 4.9133 MB in 256 KiB members against 4.9128 MB in 1 MiB ones (+0.01 %), in the same time
# within the runs' spread (143-154 ms against 149-155 ms); an 8-channel source at 3 Mbaud (~190 kB/s
# compressed) still writes one member a default 1 s flush. Each byte held is charged to the data
# path's budget.
MEMBER_MAX_BYTES = 256 * 1024
# The most buffers one writev may take (Linux: 1,024); a member in more pieces takes several calls.
IOV_MAX = os.sysconf("SC_IOV_MAX")


@dataclass(slots=True)
class _Batch:
    items: Sequence[Item]
    cost: int  # the bytes the Recorder counted for these items


class _Stop:
    pass


@dataclass(slots=True)
class _Open:
    info: SegmentInfo
    path: Path
    fd: int
    formatter: csvgz.RowFormatter
    member: csvgz.Member  # rows routed here and compressed, not written yet
    last_wall: float = 0.0


class SegmentWriter:
    """Start with `start()`; `put(items, cost)` from the loop; `stop()` closes every segment (blocking:
    call it in a thread). Finished segments are put on `finished` (read by the Recorder)."""

    def __init__(
        self,
        run_dir: Path,
        run_key: str,
        *,
        segmenter: Segmenter,
        device_time_columns: dict[str, str | None],
        flush_interval: float,
        level: int,
        wall: Callable[[], float] = time.time,
        health: StateFileHealth | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.health = health
        self.run_key = run_key
        self.segmenter = segmenter
        self.device_time_columns = device_time_columns
        self.flush_interval = flush_interval
        self.level = level
        self._wall = wall
        self._queue: queue.SimpleQueue[_Batch | _Stop] = queue.SimpleQueue()
        self.finished: queue.SimpleQueue[SegmentInfo] = queue.SimpleQueue()
        self._open: dict[int, _Open] = {}
        self._thread: threading.Thread | None = None
        # Read by the loop thread (ints: a read is atomic); written only by the writer thread.
        self.processed_cost = 0
        self.frames_written = 0
        self.frames_lost = 0  # rows a failed write took with it
        self.open_bytes = 0
        self._writing = 0  # the bytes of the member being written (still held until it is)
        self.write_errors = 0
        self.last_error: str | None = None

    # -- the loop side ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    def put(self, items: Sequence[Item], cost: int) -> None:
        self._queue.put(_Batch(items, cost))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Blocking: close every segment and end the thread."""
        self._queue.put(_Stop())
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        while True:
            try:
                command = self._queue.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                command = None
            if isinstance(command, _Stop):
                self._guarded(self._flush_all)
                self._guarded(lambda: self._apply(self.segmenter.close_all("stop")))
                return
            if command is not None:
                cost = command.cost
                self._guarded(functools.partial(self._route, command.items))
                # Nothing here may keep the batch's frames once they count as processed (they are in
                # the segments' members now): the budget is released only as the memory is.
                command = None
                self.processed_cost += cost
            if time.monotonic() >= next_flush:
                self._guarded(self._flush_all)
                self._guarded(lambda: self._apply(self.segmenter.close_full()))
                self._guarded(lambda: self._apply(self.segmenter.expire(self._wall())))
                next_flush = time.monotonic() + self.flush_interval

    def _route(self, items: Sequence[Item]) -> None:
        self._apply(self.segmenter.route(items))

    def _guarded(self, work: Callable[[], object]) -> None:
        """A disk error must not end the thread: count it, say it once per kind, go on."""
        try:
            work()
        except Exception as exc:
            self._note_error(exc)

    def _note_error(self, exc: Exception) -> None:
        self.write_errors += 1
        text = f"{type(exc).__name__}: {exc}"
        if text != self.last_error:
            log.error("recorder_write_failed", error=text)
        self.last_error = text

    def _apply(self, actions: Sequence[Open | Rows | Close | RunChange]) -> None:
        for action in actions:
            if type(action) is Rows:
                self._take(self._open[action.seq], action.frames)
            elif isinstance(action, Open):
                self._open_segment(action)
            elif isinstance(action, Close):
                self._close_segment(action.seq, action.reason)
            elif isinstance(action, RunChange):  # the segments of the run that ended are closed
                self.run_key, self.run_dir = action.run_key, action.folder

    def _open_segment(self, action: Open) -> None:
        step: StepRef | None = action.step
        name = segment_file_name(action.seq, action.source, step)
        path = self.run_dir / name
        device_column = self.device_time_columns.get(action.source) if action.has_device_time else None
        if action.has_device_time and device_column is None:
            device_column = "device_time"
        columns = csvgz.header(action.channels, device_column)
        info = SegmentInfo(
            run_key=self.run_key,
            seq=action.seq,
            source=action.source,
            step=step.title if step else None,
            card=step.card if step else None,
            file=name,
            columns=columns,
            device_time_column=device_column,
            started_wall=action.first.wall,
        )
        ensure_private_dir(self.run_dir)
        note_seq(self.run_dir, action.seq, self.health)
        write_json(sidecar_path(path), info.as_json(), health=self.health)
        fd = os.open(open_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        formatter = csvgz.RowFormatter(action.channels, device_column is not None, action.first.mono)
        segment = _Open(info, path, fd, formatter, csvgz.Member(self.level))
        self._open[action.seq] = segment
        self._write(segment, [csvgz.member(csvgz.header_line(columns), self.level)], 0)

    def _write(self, segment: _Open, chunks: Sequence[bytes], frames: int) -> None:
        size = sum(map(len, chunks))
        self._writing = size
        try:
            write_all(functools.partial(os.writev, segment.fd), chunks)
        except OSError as exc:
            # Part of a member may be on disk: `recover` cuts it off if this segment ends in a crash;
            # here the file is truncated back to the last whole member so later members stay readable.
            self.frames_lost += frames
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.info.bytes)
            if self.health is not None:  # a full disk: on /readyz and /status with the state files
                self.health.note_write_failed(segment.path, exc)
            raise
        finally:
            self._writing = 0
        if self.health is not None:
            self.health.note_write_ok(segment.path)
        segment.info.bytes += size
        segment.info.frames += frames
        self.frames_written += frames
        self.open_bytes += size

    def _take(self, segment: _Open, frames: Sequence[Frame | FrameBatch]) -> None:
        """Rows into the segment's member now (the frames are not kept); written at the flush, or now
        when the member holds MEMBER_MAX_BYTES."""
        if not frames:
            return
        rows = sum(len(item) if isinstance(item, FrameBatch) else 1 for item in frames)
        segment.member.add(segment.formatter.format_bytes(frames), rows)
        segment.last_wall = frames[-1].wall
        if segment.member.nbytes >= MEMBER_MAX_BYTES:
            self._flush(segment)

    @property
    def held_bytes(self) -> int:
        """Compressed rows not written yet, all open segments and the member being written (read from
        the loop thread: a sum of ints that may be a moment old)."""
        return self._writing + sum(segment.member.nbytes for segment in list(self._open.values()))

    def _flush(self, segment: _Open) -> None:
        rows = segment.member.rows
        if rows:
            segment.info.ended_wall = segment.last_wall
            self._write(segment, segment.member.finish(), rows)
            self.segmenter.written(segment.info.seq, segment.info.bytes)

    def _flush_all(self) -> None:
        for segment in list(self._open.values()):
            self._flush(segment)

    def _close_segment(self, seq: int, reason: str) -> None:
        segment = self._open.pop(seq)
        try:
            self._flush(segment)
        except OSError as exc:  # the rows are lost (counted); what is on disk is still finished
            self._note_error(exc)
        try:
            os.fsync(segment.fd)
        finally:
            os.close(segment.fd)
            self.open_bytes -= segment.info.bytes
        os.replace(open_path(segment.path), segment.path)
        fsync_dir(segment.path.parent)
        segment.info.state = "finished"
        segment.info.finish_reason = reason
        write_json(sidecar_path(segment.path), segment.info.as_json(), health=self.health)
        self.finished.put(segment.info)


def write_all(
    writev: Callable[[Sequence[memoryview]], int], chunks: Sequence[bytes], max_buffers: int = IOV_MAX
) -> None:
    """Every byte of `chunks`, in order, through `writev` (`os.writev` on a file, bound to it), without
    joining them: at most `max_buffers` a call, and a short write goes on from the byte it stopped at.
    An OSError of `writev` goes to the caller (some of the bytes may be written)."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    first = 0
    while first < len(views):
        written = writev(views[first : first + max_buffers])
        while written:
            head = views[first]
            if written < len(head):
                views[first] = head[written:]
                break
            written -= len(head)
            first += 1
