"""The upload and evidence job handlers against the Atlas emulator, through the real durable outbox:
when an upload is left out and when it is not, and that a retried evidence job never sends twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.atlas import AtlasClient, AtlasRetryPolicy
from edge_agent.atlas.batches import Ref, evidence_batch
from edge_agent.atlas.evidence_retry import EvidenceHandler, EvidenceRetry
from edge_agent.atlas.jobs import KIND_UPLOAD, register_reporter_handlers
from edge_agent.atlas.waiting import WaitingEvidence
from edge_agent.config import OutboxSection
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.outbox import Job, JobState, Outbox

API = "/api/v1"
UPLOADS = r"/upload-files$"
FAST = EvidenceRetry(first=0.05, cap=0.2, max_age=60.0, max_attempts=50)


@dataclass
class Rig:
    client: AtlasClient
    outbox: Outbox
    waiting: WaitingEvidence
    state_dir: Path


@asynccontextmanager
async def rig(emulator: AtlasEmulator, tmp_path: Path, upload_attempts: int = 3) -> AsyncIterator[Rig]:
    client = AtlasClient(
        emulator.api_url,
        emulator.token,
        connect_timeout=1.0,
        read_timeout=5.0,
        upload_timeout=5.0,
        retry=AtlasRetryPolicy(attempts=2, base=0.05, cap=0.2, max_retry_after=0.5),
    )
    state_dir = tmp_path / "state"
    outbox = Outbox(state_dir, OutboxSection(retry_base=0.05, retry_cap=0.3), concurrency=2)
    waiting = WaitingEvidence(state_dir / "waiting")
    register_reporter_handlers(
        outbox, client, waiting=waiting, upload_attempts=upload_attempts, evidence_retry=FAST
    )
    await outbox.start()
    try:
        yield Rig(client, outbox, waiting, state_dir)
    finally:
        await outbox.close()
        await client.close()


def evidence_files(state_dir: Path, stem: str, rows: int = 200) -> list[str]:
    directory = state_dir / "evidence"
    directory.mkdir(parents=True, exist_ok=True)
    table = "wall_time,offset_s,source,device_time,v\n" + "".join(
        f"2026-01-01T00:00:00.{i:06d},{i / 100:.6f},bench,,{i * 1.5!r}\n" for i in range(rows)
    )
    (directory / f"{stem}.csv").write_text(table, encoding="utf-8")
    (directory / f"{stem}.json").write_text('{"incident": {"id": "i-1"}}\n', encoding="utf-8")
    return [str(directory / f"{stem}.csv"), str(directory / f"{stem}.json")]


def size_of(path: str) -> int:
    return Path(path).stat().st_size


def posts(emulator: AtlasEmulator, suffix: str) -> int:
    return sum(n for k, n in emulator.faults.requests.items() if k.startswith("POST") and k.endswith(suffix))


async def deliver(r: Rig, payload: dict[str, Any], within: float = 10.0) -> Job:
    job_id = await r.outbox.enqueue(KIND_UPLOAD, "test", payload)
    await r.outbox.drain(within)
    job = await r.outbox.job(job_id)
    assert job is not None
    return job


async def test_a_413_on_both_files_attaches_the_one_that_fits_alone(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    async with rig(atlas_emulator, tmp_path) as r:
        session = await r.client.create_session("run")
        files = evidence_files(r.state_dir, "i-1.open", rows=400)
        atlas_emulator.faults.update({"max_upload_bytes": 4000, "path_pattern": UPLOADS})
        job = await deliver(
            r, {"session_id": session.session_id, "paths": files, "names": ["a.csv", "a.json"]}
        )
    assert job.state is JobState.DONE and job.attempts == 1 and job.result is not None
    assert job.result["names"] == ["a.json"] and len(job.result["attachment_ids"]) == 1
    (deferred,) = job.result["deferred"]
    assert (deferred["name"], deferred["path"], deferred["status"], deferred["kept"]) == (
        "a.csv",
        files[0],
        413,
        True,
    )
    assert posts(atlas_emulator, "/upload-files") == 3  # both, then each alone: no retry of the same body
    assert r.waiting.largest_accepted == size_of(files[1])


async def test_5xx_on_every_path_is_an_outage_not_an_upload_refusal(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    async with rig(atlas_emulator, tmp_path, upload_attempts=2) as r:
        session = await r.client.create_session("run")
        files = evidence_files(r.state_dir, "i-1.open")
        atlas_emulator.faults.update({"error_rate": 1.0, "error_status": 503})
        job_id = await r.outbox.enqueue(
            KIND_UPLOAD,
            "test",
            {"session_id": session.session_id, "paths": files, "names": ["a.csv", "a.json"]},
        )
        await r.outbox.drain(2.0)
        waiting = await r.outbox.job(job_id)
        atlas_emulator.faults.update({"error_rate": 0.0})
        await r.outbox.drain(10.0)
        done = await r.outbox.job(job_id)
    # The probes failed too: Atlas as a whole was down, so the upload waited instead of being left out.
    assert waiting is not None and waiting.state in (JobState.PENDING, JobState.IN_FLIGHT)
    assert waiting.attempts > 2 and waiting.result is None
    assert done is not None and done.state is JobState.DONE and done.result is not None
    assert len(done.result["attachment_ids"]) == 2 and done.result["deferred"] == []


async def test_an_evidence_job_run_again_after_it_linked_sends_nothing_twice(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    async with rig(atlas_emulator, tmp_path) as r:
        session = await r.client.create_session("run")
        issue = await r.client.create_issue("t", tags=["edge-agent:i-1"])
        files = evidence_files(r.state_dir, "i-1")
        atlas_emulator.faults.update({"proxy_status": 413, "path_pattern": UPLOADS})
        specs = evidence_batch(
            incident_id="i-1",
            issue=Ref({"issue_id": issue.uuid}),
            session=Ref({"session_id": session.session_id}),
            files=files,
            names=["a.csv", "a.json"],
            part="close",
            content="closing\n\nedge-agent:i-1:close",
        )
        upload_id, _, evidence_id = await r.outbox.enqueue_many(specs)
        await r.outbox.drain(1.0)
        (waiting,) = r.waiting.status()
        assert waiting["state"] == "waiting" and "too large" in waiting["why"] and waiting["attempts"] >= 1
        atlas_emulator.faults.update({"proxy_status": 0})
        await r.outbox.drain(10.0)
        upload, evidence = await r.outbox.job(upload_id), await r.outbox.job(evidence_id)
        assert upload is not None and upload.result is not None and evidence is not None
        assert evidence.state is JobState.DONE and evidence.result is not None
        uploads, comments = posts(atlas_emulator, "/upload-files"), posts(atlas_emulator, "/comments")
        # As after a crash between the link comment and the outbox's record of it, record lost too.
        handler = EvidenceHandler(r.client, WaitingEvidence(None), FAST)
        deps = {upload_id: upload.result}
        assert await handler.find_existing(evidence, deps) == {
            "issue_id": issue.uuid,
            "comment_id": atlas_emulator.store.issues[issue.uuid].comments[-1].uuid,
        }
        again = await handler.deliver(evidence, deps)
    assert again["attachment_ids"] == evidence.result["attachment_ids"]  # adopted by name
    assert (posts(atlas_emulator, "/upload-files"), posts(atlas_emulator, "/comments")) == (uploads, comments)
    stored = atlas_emulator.store.issues[issue.uuid].comments
    assert [c.content.splitlines()[-1] for c in stored] == [
        "edge-agent:i-1:close",
        "edge-agent:i-1:close-evidence",
    ]
