"""Issue 11 against the Atlas emulator with each real-world switch on, through the real client, the
real job handlers and the real durable outbox. The assertions are about data: what Atlas holds
afterwards (once, no duplicate issue, session or comment) and how many attempts it took."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from atlas_client_helpers import SYSTEM_ID

from edge_agent.atlas import AtlasClient, AtlasRequestError, AtlasRetryPolicy
from edge_agent.atlas.jobs import (
    KIND_ISSUE,
    KIND_SESSION,
    KIND_UPLOAD,
    CommentHandler,
    find_marked_comment,
    not_before,
    register_reporter_handlers,
)
from edge_agent.atlas.narrative import agent_tag, comment_marker
from edge_agent.atlas.uploads import NO_ID
from edge_agent.config import OutboxSection
from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.outbox import Job, JobState, Outbox
from edge_agent.steps.jobs import KIND_OUTCOME, KIND_RUN, register_step_handlers

API = "/api/v1"


@dataclass
class Rig:
    client: AtlasClient
    outbox: Outbox

    async def deliver(self, kind: str, payload: dict[str, Any], within: float = 15.0) -> Job:
        """Enqueue one job, drain, and give it back as stored."""
        job_id = await self.outbox.enqueue(kind, "test", payload)
        await self.outbox.drain(within)
        job = await self.outbox.job(job_id)
        assert job is not None
        return job


@asynccontextmanager
async def rig(emulator: AtlasEmulator, tmp_path: Path, read_timeout: float = 5.0) -> AsyncIterator[Rig]:
    client = AtlasClient(
        emulator.api_url,
        emulator.token,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        upload_timeout=5.0,
        retry=AtlasRetryPolicy(attempts=2, base=0.05, cap=0.2, max_retry_after=0.5),
    )
    outbox = Outbox(tmp_path / "state", OutboxSection(retry_base=0.05, retry_cap=0.3), concurrency=2)
    register_reporter_handlers(outbox, client)
    register_step_handlers(outbox, client)
    await outbox.start()
    try:
        yield Rig(client, outbox)
    finally:
        await outbox.close()
        await client.close()


def requests(emulator: AtlasEmulator, method: str, path: str) -> int:
    return emulator.faults.requests[f"{method} {API}{path}"]


def sessions_titled(emulator: AtlasEmulator, title: str) -> list[str]:
    return [s.session_id for s in emulator.store.sessions.values() if s.title == title]


def issues_tagged(emulator: AtlasEmulator, tag: str) -> list[str]:
    return [i.uuid for i in emulator.store.issues.values() if tag in i.fields.tags]


# -- 204 on PATCH -------------------------------------------------------------------------------------


async def test_a_204_on_a_step_patch_is_one_attempt_and_the_outcome_is_recorded(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    async with rig(atlas_emulator, tmp_path) as r:
        run = await r.client.create_test_run("run", SYSTEM_ID)
        card = await r.client.create_card(run.uuid, "card")
        step = await r.client.create_step(run.uuid, card.uuid, "step")
        atlas_emulator.faults.update({"no_content": True, "methods": ["PATCH"]})
        now = time.time()
        payload = {"run_id": run.uuid, "card_id": card.uuid, "step_id": step.uuid,
                   "execution_status": "passed_with_exception", "exception": "a spike",
                   "started_at": now - 5, "ended_at": now}  # fmt: skip
        job = await r.deliver(KIND_OUTCOME, payload)
    path = f"/test-runs/{run.uuid}/cards/{card.uuid}/steps/{step.uuid}"
    assert atlas_emulator.faults.injected["no_content"] == 1
    assert requests(atlas_emulator, "PATCH", path) == 1  # one attempt, not a retry storm
    assert job.state is JobState.DONE and job.attempts == 1
    assert job.result == {"step_id": step.uuid, "execution_status": "passed_with_exception"}  # read back
    stored = atlas_emulator.store.test_runs[run.uuid].cards[0].steps[0]
    assert (stored.execution_status, stored.exception) == ("passed_with_exception", "a spike")


async def test_a_204_on_an_issue_patch_is_read_back(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator
) -> None:
    issue = await atlas.create_issue("t")
    atlas_emulator.faults.update({"no_content": True, "methods": ["PATCH"]})
    patched = await atlas.patch_issue(issue.uuid, status="in_progress")
    assert patched.status == "in_progress" and requests(atlas_emulator, "PATCH", f"/issues/{issue.uuid}") == 1


# -- 413 from a proxy ---------------------------------------------------------------------------------


async def test_a_413_page_on_uploads_is_not_retried_as_is_and_is_readable(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    evidence = tmp_path / "evidence.csv"
    evidence.write_text("t,v\n1,2\n", encoding="utf-8")
    async with rig(atlas_emulator, tmp_path) as r:
        session = await r.client.create_session("run")
        atlas_emulator.faults.update({"proxy_status": 413, "path_pattern": r"/upload-files$"})
        with pytest.raises(AtlasRequestError) as err:
            await r.client.upload_files(session.session_id, [("evidence.csv", evidence, "text/csv")])
        job = await r.deliver(KIND_UPLOAD, {"session_id": session.session_id, "files": [str(evidence)],
                                            "names": ["evidence.csv"]})  # fmt: skip
    assert err.value.status == 413 and not err.value.retryable and not err.value.outcome_unknown
    text = str(err.value)
    assert "too large" in text and "413 Request Entity Too Large" in text and "<" not in text
    # The upload settles without the file (the issue must not wait on it), saying why, readably.
    assert job.state is JobState.DONE and job.attempts == 1 and job.result is not None
    assert job.result["attachment_ids"] == []
    (deferred,) = job.result["deferred"]
    assert deferred["name"] == "evidence.csv" and deferred["status"] == 413
    assert "too large" in deferred["reason"] and "413 Request Entity Too Large" in deferred["reason"]
    assert "<" not in deferred["reason"]
    assert requests(atlas_emulator, "POST", f"/sessions/{session.session_id}/upload-files") == 2  # 1 + 1 job


# -- redirects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [307, 308])
async def test_a_same_origin_redirect_on_session_create_makes_one_session(
    atlas_emulator: AtlasEmulator, tmp_path: Path, status: int
) -> None:
    atlas_emulator.faults.update({"redirect_status": status, "path_prefix": f"{API}/sessions"})
    async with rig(atlas_emulator, tmp_path) as r:
        job = await r.deliver(KIND_SESSION, {"title": "bench-03 run", "not_before": not_before(time.time())})
    assert job.state is JobState.DONE and job.attempts == 1
    assert sessions_titled(atlas_emulator, "bench-03 run") == [job.result["session_id"]]  # type: ignore[index]
    assert atlas_emulator.faults.injected[f"redirect_{status}"] == 1
    assert requests(atlas_emulator, "POST", "/sessions") == 2  # the redirect and the followed hop


async def test_a_redirect_to_another_host_fails_clearly_and_sends_it_nothing(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"session_id": "stolen"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    other = TestServer(app, host="127.0.0.1")
    await other.start_server()
    other_port = other.port
    try:
        atlas_emulator.faults.update(
            {
                "redirect_status": 307,
                "redirect_to": f"http://127.0.0.1:{other.port}",
                "path_prefix": f"{API}/sessions",
            }
        )
        async with rig(atlas_emulator, tmp_path) as r:
            job = await r.deliver(KIND_SESSION, {"title": "t", "not_before": not_before(time.time())})
    finally:
        await other.close()
    assert seen == []
    assert job.state is JobState.FAILED and job.attempts == 1
    assert "another origin" in str(job.failure) and f"127.0.0.1:{other_port}" in str(job.failure)
    assert atlas_emulator.store.sessions == {}


# -- list order -----------------------------------------------------------------------------------------


async def test_a_lost_issue_answer_on_an_oldest_first_tenant_makes_no_duplicate(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    for i in range(1200):  # older issues: with the list oldest first, a new one is the 1201st
        atlas_emulator.store.create_issue(m.IssueCreate(title=f"old {i}", description=[], tags=[f"x:{i}"]))
    atlas_emulator.faults.update(
        {"list_order": "oldest_first", "error_rate": 1.0, "error_after_apply": True, "methods": ["POST"],
         "path_prefix": f"{API}/issues"}
    )  # fmt: skip
    async with rig(atlas_emulator, tmp_path) as r:
        session = await r.client.create_session("run")
        payload = {"incident_id": "a-1", "title": "supply_v high", "priority": "high", "description": [],
                   "tags": ["edge-agent", agent_tag("a-1")], "session_id": session.session_id}  # fmt: skip
        job = await r.deliver(KIND_ISSUE, payload)
    # The create was applied but its answer lost (503): the look-up found it past the 200 newest.
    assert atlas_emulator.faults.injected["applied_then_error"] == 1
    assert issues_tagged(atlas_emulator, agent_tag("a-1")) == [job.result["issue_id"]]  # type: ignore[index]
    assert job.state is JobState.DONE and requests(atlas_emulator, "POST", "/issues") == 1


async def test_find_issue_by_tag_does_not_depend_on_the_order(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator
) -> None:
    oldest = atlas_emulator.store.create_issue(m.IssueCreate(title="first", description=[], tags=["t:first"]))
    for i in range(1500):
        atlas_emulator.store.create_issue(m.IssueCreate(title=f"n{i}", description=[], tags=[f"n:{i}"]))
    newest = atlas_emulator.store.create_issue(m.IssueCreate(title="last", description=[], tags=["t:last"]))
    for order in ("newest_first", "oldest_first"):
        atlas_emulator.faults.update({"list_order": order})
        assert (await atlas.find_issue_by_tag("t:first")).uuid == oldest["uuid"]  # type: ignore[union-attr]
        assert (await atlas.find_issue_by_tag("t:last")).uuid == newest["uuid"]  # type: ignore[union-attr]


# -- nullable fields ------------------------------------------------------------------------------------


async def test_a_null_status_is_not_closed_so_a_repeat_joins_the_issue(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    async with rig(atlas_emulator, tmp_path) as r:
        session = await r.client.create_session("run")
        first = await r.client.create_issue(
            "supply_v high", tags=[agent_tag("a-1")], session_ids=[session.session_id]
        )
        atlas_emulator.faults.update({"null_issue_status": True})
        payload = {"incident_id": "a-2", "title": "supply_v high", "priority": "high",
                   "tags": [agent_tag("a-2")], "description": [], "session_id": session.session_id,
                   "repeat": {"issue_id": first.uuid}}  # fmt: skip
        job = await r.deliver(KIND_ISSUE, payload)
    assert job.result is not None and job.result["via"] == "repeat" and job.result["issue_id"] == first.uuid
    assert len(atlas_emulator.store.issues) == 1
    # The repeat's tag is on the issue it joined, so every later look-up of incident a-2 finds it.
    assert atlas_emulator.store.issues[first.uuid].fields.tags == [agent_tag("a-1"), agent_tag("a-2")]


async def test_a_null_attachment_id_is_reported_as_not_attached(
    atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    files = [tmp_path / "a.csv", tmp_path / "a.png"]
    for f in files:
        f.write_bytes(b"x")
    async with rig(atlas_emulator, tmp_path) as r:
        session = await r.client.create_session("run")
        atlas_emulator.faults.update({"null_attachment_id": True})
        with structlog.testing.capture_logs() as logs:
            payload = {
                "session_id": session.session_id,
                "files": [str(f) for f in files],
                "names": ["a.csv", "a.png"],
            }
            job = await r.deliver(KIND_UPLOAD, payload)
    assert job.state is JobState.DONE and job.result is not None
    assert (job.result["attachment_ids"], job.result["names"]) == ([], [])
    assert [(d["name"], d["reason"]) for d in job.result["deferred"]] == [
        ("a.csv", NO_ID),
        ("a.png", NO_ID),
    ]
    assert [e["names"] for e in logs if e["event"] == "evidence_upload_deferred"] == [["a.csv", "a.png"]]


# -- soft-deleted comments ------------------------------------------------------------------------------


def _job(kind: str, payload: dict[str, Any]) -> Job:
    now = time.time()
    return Job(id=1, kind=kind, group="g", payload=payload, deps=(), priority=0, state=JobState.IN_FLIGHT,
               attempts=1, next_attempt_at=now, attempt_started=True, last_error=None, result=None,
               failure=None, created_at=now, updated_at=now, size_bytes=0, files=())  # fmt: skip


async def test_a_deleted_marked_comment_does_not_count_as_posted(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator
) -> None:
    issue = await atlas.create_issue("t")
    marker = comment_marker("a-1", "close")
    deleted = await atlas.add_comment(issue.uuid, f"closed\n{marker}")
    atlas_emulator.faults.update({"soft_delete_comments": True})
    await atlas.call("DELETE", f"/issues/{issue.uuid}/comments/{deleted.uuid}", need_body=False)
    listed = (await atlas.list_comments(issue.uuid)).items
    assert [(c.uuid, c.is_deleted) for c in listed] == [(deleted.uuid, True)]  # still listed, flagged

    assert await find_marked_comment(atlas, issue.uuid, marker) is None
    handler = CommentHandler(atlas)
    job = _job("atlas.comment", {"incident_id": "a-1", "part": "close", "content": f"closed\n{marker}",
                                 "issue_id": issue.uuid})  # fmt: skip
    assert await handler.find_existing(job, {}) is None  # so the outbox posts it again
    posted = await handler.deliver(job, {})
    assert await handler.find_existing(job, {}) == {
        "issue_id": issue.uuid,
        "comment_id": posted["comment_id"],
    }
    live = [c for c in atlas_emulator.store.issues[issue.uuid].comments if not c.is_deleted]
    assert [c.uuid for c in live] == [posted["comment_id"]]


# -- clock skew -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("atlas_clock", [-600.0, 600.0])
async def test_a_lost_session_create_with_skewed_clocks_makes_one_session(
    atlas_emulator: AtlasEmulator, tmp_path: Path, atlas_clock: float
) -> None:
    # -600: Atlas's clock is 10 minutes behind (the agent 10 minutes ahead, the issue's case).
    atlas_emulator.faults.update(
        {"clock_offset": atlas_clock, "error_rate": 1.0, "error_after_apply": True, "methods": ["POST"],
         "path_prefix": f"{API}/sessions"}
    )  # fmt: skip
    async with rig(atlas_emulator, tmp_path) as r:
        job = await r.deliver(KIND_SESSION, {"title": "bench-03 run", "not_before": not_before(time.time())})
    assert atlas_emulator.faults.injected["applied_then_error"] == 1
    assert sessions_titled(atlas_emulator, "bench-03 run") == [job.result["session_id"]]  # type: ignore[index]
    assert job.state is JobState.DONE and requests(atlas_emulator, "POST", "/sessions") == 1


@pytest.mark.parametrize("atlas_clock", [-600.0, 600.0])
async def test_a_lost_test_run_create_with_skewed_clocks_makes_one_run(
    atlas_emulator: AtlasEmulator, tmp_path: Path, atlas_clock: float
) -> None:
    # The step tracker's run: its create is applied, the answer lost; the look-up must find it on
    # Atlas's clock (-600: the agent 10 minutes ahead; +600: behind), not make a second run.
    atlas_emulator.faults.update(
        {"clock_offset": atlas_clock, "error_rate": 1.0, "error_after_apply": True, "methods": ["POST"],
         "path_pattern": f"^{API}/test-runs$"}
    )  # fmt: skip
    payload = {"title": "bench-03 run", "system_id": SYSTEM_ID, "description": "",
               "not_before": not_before(time.time())}  # fmt: skip
    async with rig(atlas_emulator, tmp_path) as r:
        job = await r.deliver(KIND_RUN, payload)
    assert atlas_emulator.faults.injected["applied_then_error"] == 1
    runs = [t.uuid for t in atlas_emulator.store.test_runs.values() if t.body.title == "bench-03 run"]
    assert job.state is JobState.DONE and job.result == {"run_id": runs[0]}
    assert len(runs) == 1 and requests(atlas_emulator, "POST", "/test-runs") == 1
