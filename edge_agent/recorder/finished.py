"""What happens to finished segments: each one's record on disk (store.py), an S3 upload job and,
for the runs the step tracker knows the Atlas ids of, an Atlas registration job after it; uploads
that finished while the agent was down are learned at start; and the disk budget (retention.py),
which deletes the oldest uploaded segments first."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.logs import get_logger
from edge_agent.outbox import BatchRef, Job, JobSpec, JobState, Json, Outbox, OutboxError
from edge_agent.recorder import retention, store
from edge_agent.recorder.model import CONTENT_TYPE, SegmentInfo, run_dir, slug
from edge_agent.state_health import StateFileHealth

if TYPE_CHECKING:
    from edge_agent.atlas.client import AtlasClient
    from edge_agent.config import EdgeAgentConfig
    from edge_agent.s3.client import S3Client
    from edge_agent.steps.tracker import StepTracker

log = get_logger(__name__)

MIB = 1024 * 1024


class FinishedSegments:
    def __init__(
        self,
        config: EdgeAgentConfig,
        root: Path,
        *,
        outbox: Outbox,
        steps: StepTracker,
        s3: S3Client | None,
        atlas: AtlasClient | None,
        health: StateFileHealth | None,
        counters: Counter[str],
    ) -> None:
        self.s3_section = config.s3
        self.bench = config.agent.bench
        self.root = root
        self.outbox = outbox
        self.steps = steps
        self.s3 = s3
        self.atlas = atlas
        self.register = atlas is not None and s3 is not None
        self.health = health
        self.budget = int(config.recorder.max_disk_mb * MIB)
        self.counters = counters  # the recorder's
        self.segments: dict[str, SegmentInfo] = {}  # finished segments on disk, by key

    def register_handlers(self) -> None:
        if self.s3 is not None:
            from edge_agent.s3.upload import KIND_UPLOAD, UploadHandler

            part_size = int(self.s3_section.part_size_mb * MIB)
            self.outbox.register(KIND_UPLOAD, UploadHandler(self.s3, part_size, self.on_uploaded))
        if self.atlas is not None and self.register:
            from edge_agent.recorder.jobs import KIND_REGISTER, RegisterHandler

            self.outbox.register(KIND_REGISTER, RegisterHandler(self.atlas))

    async def load(self) -> None:
        """The segments earlier lives left on disk (a crash's open one recovered by store.py)."""
        for info in await asyncio.to_thread(store.load_all, self.root):
            self.segments[info.key] = info
            if info.recovered and info.finish_reason == "recovered":
                self.counters["segments_recovered"] += 1

    async def catch_up(self) -> None:
        """Segments of earlier lives: learn uploads that finished unseen, enqueue what never was."""
        for info in list(self.segments.values()):
            if self.s3 is None or info.s3_url:
                continue
            if info.upload_job is None:
                await self.schedule(info)
                continue
            job = await self.outbox.job(info.upload_job)
            if job is not None and job.state is JobState.DONE and job.result:
                info.s3_url = str(job.result.get("s3_url") or "") or None
                await asyncio.to_thread(store.save, self.root, info, self.health)

    async def add(self, info: SegmentInfo) -> None:
        """The writer closed a segment."""
        self.segments[info.key] = info
        self.counters["segments_finished"] += 1
        await self.schedule(info)

    def s3_key(self, info: SegmentInfo) -> str:
        parts = [self.s3_section.prefix.strip("/"), slug(self.bench), run_dir(self.root, info.run_key).name]
        return "/".join([p for p in parts if p] + [info.file])

    async def schedule(self, info: SegmentInfo) -> None:
        if self.s3 is None:
            return
        from edge_agent.recorder.jobs import KIND_REGISTER
        from edge_agent.s3.upload import KIND_UPLOAD

        group = f"recording:{info.key}"
        upload = {
            "path": str(store.path_of(self.root, info)),
            "bucket": self.s3_section.bucket,
            "key": self.s3_key(info),
            "content_type": CONTENT_TYPE,
            "segment": info.key,
        }
        specs = [JobSpec(KIND_UPLOAD, group, upload)]
        # Only the segments of runs the step tracker knows the Atlas ids of (this one and the last few
        # it ended): a segment an earlier process's run left behind is uploaded, not registered.
        refs = await self._atlas_refs(info) if self.register else None
        if refs is not None:
            fields, deps = refs
            payload = {
                "file_name": info.file,
                "content_type": CONTENT_TYPE,
                "associate": "step" if info.step else "run",
                **fields,
            }
            specs.append(JobSpec(KIND_REGISTER, group, payload, deps=(BatchRef(0), *deps)))
        try:
            ids = await self.outbox.enqueue_many(specs)
        except OutboxError as exc:
            log.error("recording_enqueue_failed", file=info.file, error=str(exc))
            self.counters["enqueue_failed"] += 1
            return
        info.upload_job = ids[0]
        info.register_job = ids[1] if len(ids) > 1 else None
        await asyncio.to_thread(store.save, self.root, info, self.health)

    async def _atlas_refs(self, info: SegmentInfo) -> tuple[dict[str, Any], tuple[int, ...]] | None:
        try:
            return await self.steps.atlas_refs(info.step, info.run_key)
        except OutboxError as exc:
            log.warning("recording_not_registered", file=info.file, reason=str(exc))
            return None

    async def on_uploaded(self, job: Job, result: Json) -> None:
        """The upload handler's report: the segment is safe in S3 (first to go under the budget)."""
        info = self.segments.get(str(job.payload.get("segment")))
        if info is None or info.s3_url:
            return
        info.s3_url = str(result["s3_url"])
        self.counters["segments_uploaded"] += 1
        await asyncio.to_thread(store.save, self.root, info, self.health)

    def disk_bytes(self, open_bytes: int) -> int:
        """The finished segments' bytes and the open ones' (`open_bytes`, the writer's)."""
        return sum(s.bytes for s in self.segments.values()) + open_bytes

    async def enforce_budget(self, open_bytes: int) -> None:
        used = self.disk_bytes(open_bytes)
        chosen = retention.choose_deletions(
            self.segments.values(), used, self.budget, uploads=self.s3 is not None
        )
        for info, reason in chosen:
            await asyncio.to_thread(store.delete, self.root, info)
            self.segments.pop(info.key, None)
            self.counters[f"deleted_{reason}"] += 1
            event = (
                "recording_deleted" if reason != retention.NOT_UPLOADED else "recording_deleted_not_uploaded"
            )
            (log.warning if reason == retention.NOT_UPLOADED else log.info)(
                event, file=info.file, reason=reason, frames=info.frames, bytes=info.bytes, budget=self.budget
            )
