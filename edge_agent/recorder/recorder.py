"""The recorder component: the per-frame hot path on the event loop, the hand-off to the writer
thread, and the component's loop; what happens to finished segments (S3 upload and Atlas
registration jobs, the disk budget) is finished.py. See the package doc for the data path.

Hot path: `add(frame)` is a list append and an integer sum (the bytes the frame holds in memory,
estimated from its channel count: `frame_bytes`, an upper bound of what a decoded frame costs). Every
HANDOFF_INTERVAL, or when HANDOFF_FRAMES frames or HANDOFF_BYTES wait, the list goes to the writer
thread, which compresses a batch as soon as it takes it (the frames are freed then). Frames waiting,
here or in the writer's queue, are bounded by `recorder.max_pending_mb`.

A writer that falls behind (a slow disk, a CPU too busy to compress as fast as lines come) does not
hold up the serial side: past the budget a frame is not recorded, and that is counted
(`frames_dropped.queue_full` on /status, `recording_frames_dropped_total{reason="queue_full"}`) and
logged when it starts and when it ends. Detection, evidence and the lens get every frame whatever the
recorder does: back-pressure would stop the reader, and with it detection, for the sake of the file.

Step boundaries are exact: a marker line cuts the stream where it was read (`cut_at_marker`, on the
hot path), and the step it leads to is filled in once the step tracker has handled it
(`resolve_marker`); frames after an unresolved cut wait for it. A step started or ended through the
control API cuts the stream at that moment (`step_changed`). A test run ended by `POST /runs/end`
cuts it too (`run_changed`): what follows is the next run's, in that run's folder; the segments of
the run that ended are registered on it (the step tracker keeps its Atlas ids for a while).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.frames import Frame, FrameBatch, StepMarker
from edge_agent.grid import sleep_to_next
from edge_agent.logs import get_logger
from edge_agent.outbox import Outbox
from edge_agent.recorder import store
from edge_agent.recorder.finished import MIB, FinishedSegments
from edge_agent.recorder.model import RECORDINGS_DIR, StepRef, run_dir
from edge_agent.recorder.segmenter import RunChange, Segmenter
from edge_agent.recorder.writer import SegmentWriter
from edge_agent.state_files import ensure_private_dir
from edge_agent.state_health import StateFileHealth

if TYPE_CHECKING:
    from edge_agent.atlas.client import AtlasClient
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.s3.client import S3Client
    from edge_agent.steps.tracker import StepTracker

log = get_logger(__name__)

HANDOFF_INTERVAL = 0.25
HANDOFF_FRAMES = 2048
# A wide source's frames go to the writer in batches of about this many bytes, not only every 0.25 s
# (270 fields at 2,000 lines/s would otherwise wait ~10 MB at a time on this side).
HANDOFF_BYTES = 1 * MIB
# Memory a decoded frame holds, as the allocator hands it out (16-byte size classes, a malloc header
# past 512 bytes): the Frame (80 B), its times (3 x 32 B), its dict (a header and a hash table that
# grows in powers of two) and a float (32 B) a channel; names are shared by the decoder. An upper
# bound for every width (tests/recorder/test_memory.py): 704 bytes for 9 channels is charged 1,030,
# 15.4 kB for 271 is charged 19.4 kB.
FRAME_BYTES = 400
CHANNEL_BYTES = 70
# The same frames packed (a FrameBatch, the CSV decoder's fast path): the object and its lists, then a
# list slot (8 B) and a float (32 B) for each time and value, the lists' spare room included (the
# values list may keep the slots of a device-time column taken out of it). An upper bound
# (tests/recorder/test_memory.py): 9 channels hold ~0.33 kB a row (charged 0.54), ~0.7 kB as Frames.
BATCH_BYTES = 512
BATCH_CELL_BYTES = 48
# A batch's DeviceText: the object and its bytes object's header (its data is counted byte for byte).
TEXT_BYTES = 128
# A marker whose step the tracker never reports (its queue was full) stops holding frames back after this.
MAX_UNRESOLVED_S = 5.0


def frame_bytes(frame: Frame) -> int:
    """What the recorder charges its budget for holding `frame` (an upper bound of its real cost)."""
    return FRAME_BYTES + CHANNEL_BYTES * len(frame.values)


def batch_bytes(batch: FrameBatch) -> int:
    """What the recorder charges its budget for holding `batch` (an upper bound of its real cost): a
    time, a device time (or the slot of its column) and the values of every row, and the text they
    were parsed from (the writer records it as it came)."""
    text = 0 if batch.text is None else TEXT_BYTES + len(batch.text.data)
    return BATCH_BYTES + BATCH_CELL_BYTES * len(batch) * (batch.width + 2) + text


def item_bytes(item: Frame | FrameBatch | _Cut | RunChange) -> int:
    """What `add` or `add_batch` charged for an item of the pending list (a cut, a run change: nothing)."""
    if type(item) is Frame:
        return frame_bytes(item)
    if type(item) is FrameBatch:
        return batch_bytes(item)
    return 0


def item_rows(item: Frame | FrameBatch | _Cut | RunChange) -> int:
    if type(item) is FrameBatch:
        return len(item)
    return 1 if type(item) is Frame else 0


class _Cut:
    __slots__ = ("at", "resolved", "step")

    def __init__(self, at: float) -> None:
        self.at = at
        self.step: StepRef | None = None
        self.resolved = False


class Recorder:
    def __init__(
        self,
        config: EdgeAgentConfig,
        state_dir: Path,
        *,
        outbox: Outbox,
        steps: StepTracker,
        s3: S3Client | None = None,
        atlas: AtlasClient | None = None,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        health: StateFileHealth | None = None,
    ) -> None:
        self.section = config.recorder
        self.health = health
        self.s3_section = config.s3
        self.root = Path(state_dir) / RECORDINGS_DIR
        self.steps = steps
        self.s3 = s3
        self._mono = mono
        self._wall = wall
        self.device_time_columns = {port.name: port.device_time for port in config.serial}
        self.max_pending = int(self.section.max_pending_mb * MIB)
        # _Cut has `step`: the writer takes it as a step change; RunChange: the next test run.
        self._pending: list[Frame | FrameBatch | _Cut | RunChange] = []
        self._pending_cost = 0
        self._pending_rows = 0  # frames in `_pending` (a batch counts its rows)
        self._handed_cost = 0
        self._unresolved: list[_Cut] = []
        self._marker_cuts: dict[int, _Cut] = {}
        self.counters: Counter[str] = Counter()
        self.finished_segments = FinishedSegments(
            config,
            self.root,
            outbox=outbox,
            steps=steps,
            s3=s3,
            atlas=atlas,
            health=health,
            counters=self.counters,
        )
        self.writer: SegmentWriter | None = None
        self.run_key = ""
        self.frames_dropped = 0
        self.peak_waiting = 0  # the most bytes that waited for the writer at once (at hand-offs)
        self._dropped_seen = 0  # frames_dropped when the run loop last looked
        self._drops_since: int | None = None  # frames_dropped when the current run of drops began

    # -- the hot path (event loop, per frame) -------------------------------------------------------

    def add(self, frame: Frame) -> None:
        cost = FRAME_BYTES + CHANNEL_BYTES * len(frame.values)
        writer = self.writer
        waiting = self._pending_cost + self._handed_cost - (writer.processed_cost if writer else 0)
        if waiting + cost > self.max_pending or writer is None:
            self.frames_dropped += 1
            return
        self._pending.append(frame)
        self._pending_cost += cost
        self._pending_rows += 1
        if self._pending_rows >= HANDOFF_FRAMES or self._pending_cost >= HANDOFF_BYTES:
            self.hand_off()

    def add_batch(self, batch: FrameBatch) -> None:
        """The frames of one read, kept as they are (one list append: no per-frame work here)."""
        cost = batch_bytes(batch)
        writer = self.writer
        waiting = self._pending_cost + self._handed_cost - (writer.processed_cost if writer else 0)
        if waiting + cost > self.max_pending or writer is None:
            self.frames_dropped += len(batch)
            return
        self._pending.append(batch)
        self._pending_cost += cost
        self._pending_rows += len(batch)
        if self._pending_rows >= HANDOFF_FRAMES or self._pending_cost >= HANDOFF_BYTES:
            self.hand_off()

    @property
    def waiting_bytes(self) -> int:
        """Bytes of frames not compressed yet: here and in the writer's queue (the budget's measure)."""
        processed = self.writer.processed_cost if self.writer is not None else 0
        return self._pending_cost + self._handed_cost - processed

    @property
    def data_path_bytes(self) -> int:
        """What the recorder holds of the data path's memory budget: the frames waiting, and the rows
        its writer compressed and has not written yet (read from its thread: may be a moment old)."""
        held = self.writer.held_bytes if self.writer is not None else 0
        return self.waiting_bytes + held

    def cut_at_marker(self, marker: StepMarker) -> None:
        """A marker was read: frames after it may belong to another step (`resolve_marker` says)."""
        cut = _Cut(self._mono())
        self._pending.append(cut)
        self._unresolved.append(cut)
        self._marker_cuts[id(marker)] = cut

    def resolve_marker(self, marker: StepMarker, step: StepRef | None) -> None:
        cut = self._marker_cuts.pop(id(marker), None)
        if cut is not None:
            cut.step, cut.resolved = step, True

    def step_changed(self, step: StepRef | None) -> None:
        """The running step changed now (control API, shutdown): cut here."""
        cut = _Cut(self._mono())
        cut.step, cut.resolved = step, True
        self._pending.append(cut)

    def run_changed(self, run_key: str) -> None:
        """The step tracker began the next test run now (`POST /runs/end`): cut here."""
        self.run_key = run_key
        self._pending.append(RunChange(run_key, run_dir(self.root, run_key), self.steps_current()))

    def hand_off(self, *, final: bool = False) -> None:
        if self.writer is None or not self._pending:
            return
        now = self._mono()
        while self._unresolved and (
            self._unresolved[0].resolved or final or now - self._unresolved[0].at > MAX_UNRESOLVED_S
        ):
            cut = self._unresolved.pop(0)
            if not cut.resolved:  # never resolved: the step is unchanged
                cut.step, cut.resolved = self.steps_current(), True
        if not self._unresolved:  # the common case: the whole list goes, no per-frame work here
            items, self._pending = self._pending, []
            cost, self._pending_cost = self._pending_cost, 0
            self._pending_rows = 0
        else:  # up to the first cut whose step is not known yet
            limit = self._pending.index(self._unresolved[0])
            items, self._pending = self._pending[:limit], self._pending[limit:]
            cost = sum(map(item_bytes, items))
            self._pending_cost -= cost
            self._pending_rows -= sum(map(item_rows, items))
        if items:
            self._handed_cost += cost
            self.peak_waiting = max(self.peak_waiting, self.waiting_bytes)  # this batch included
            self.writer.put(items, cost)

    def steps_current(self) -> StepRef | None:
        current = self.steps.state.get("current") if self.steps.state else None
        if not current:
            return None
        return StepRef(str(current["title"]), str(current["card"]))

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self, run_key: str) -> None:
        self.run_key = run_key
        self.finished_segments.register_handlers()
        await asyncio.to_thread(ensure_private_dir, self.root)
        await self.finished_segments.load()
        folder = run_dir(self.root, run_key)
        next_seq = await asyncio.to_thread(store.next_seq, folder)
        self.writer = SegmentWriter(
            folder,
            run_key,
            segmenter=Segmenter(
                max_bytes=int(self.section.segment_max_mb * MIB),
                max_seconds=self.section.segment_max_duration,
                next_seq=next_seq,
                step=self.steps_current(),
            ),
            device_time_columns=self.device_time_columns,
            flush_interval=self.section.flush_interval,
            level=self.section.compression_level,
            wall=self._wall,
            health=self.health,
        )
        self.writer.start()
        await self.finished_segments.catch_up()
        log.info(
            "recorder_started",
            dir=str(folder),
            segments_on_disk=len(self.finished_segments.segments),
            recovered=self.counters["segments_recovered"],
            upload=f"s3://{self.s3_section.bucket}/{self.s3_section.prefix}" if self.s3 else None,
        )

    async def run(self) -> None:
        """The component's loop: hand-offs, finished segments, the disk budget."""
        while True:
            await sleep_to_next(HANDOFF_INTERVAL)  # on the tick's grid: one wake-up for both
            self.hand_off()
            self._log_drops()
            await self._collect()

    def _log_drops(self) -> None:
        """One line when frames start being dropped (the writer is behind), one when it caught up."""
        dropped = self.frames_dropped
        if dropped > self._dropped_seen and self._drops_since is None:
            self._drops_since = self._dropped_seen
            log.warning(
                "recording_frames_dropped",
                reason="the writer is behind: frames waiting for it exceed recorder.max_pending_mb",
                budget_bytes=self.max_pending,
            )
        elif dropped == self._dropped_seen and self._drops_since is not None:
            log.info("recording_caught_up", frames_not_recorded=dropped - self._drops_since)
            self._drops_since = None
        self._dropped_seen = dropped

    async def close(self) -> None:
        """Every frame handed over, every segment closed and scheduled (the shutdown path)."""
        if self.writer is None:
            return
        self.hand_off(final=True)
        await asyncio.to_thread(self.writer.stop)
        await self._collect()
        log.info("recorder_stopped", frames=self.writer.frames_written, dropped=self.frames_dropped)

    async def _collect(self) -> None:
        writer = self.writer
        if writer is None:
            return
        while not writer.finished.empty():
            await self.finished_segments.add(writer.finished.get_nowait())
        await self.finished_segments.enforce_budget(writer.open_bytes)

    def disk_bytes(self) -> int:
        return self.finished_segments.disk_bytes(self.writer.open_bytes if self.writer is not None else 0)

    # -- status -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        writer = self.writer
        finished = list(self.finished_segments.segments.values())
        return {
            "run": self.run_key,
            "dir": str(self.root),
            "disk_bytes": self.disk_bytes(),
            "budget_bytes": self.finished_segments.budget,
            "open_segments": writer.segmenter.open_segments if writer else 0,
            "finished_segments": len(finished),
            "uploaded_segments": sum(1 for s in finished if s.s3_url),
            "frames_recorded": writer.frames_written if writer else 0,
            "frames_dropped": {
                "queue_full": self.frames_dropped,
                "write_error": writer.frames_lost if writer else 0,
            },
            # Frames waiting for the writer (estimated bytes, `frame_bytes`), against their budget; what
            # the writer holds compressed and not written yet.
            "pending": {
                "bytes": self.waiting_bytes,
                "peak_bytes": self.peak_waiting,
                "budget_bytes": self.max_pending,
                "compressed_bytes": writer.held_bytes if writer else 0,
            },
            "write_errors": writer.write_errors if writer else 0,
            "last_error": writer.last_error if writer else None,
            "writer_alive": writer.alive if writer else False,
            "counters": dict(self.counters),
            "upload": (
                {
                    "bucket": self.s3_section.bucket,
                    "prefix": self.s3_section.prefix,
                    "register": self.finished_segments.register,
                }
                if self.s3 is not None
                else None
            ),
        }
