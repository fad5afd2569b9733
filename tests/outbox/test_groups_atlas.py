"""Issue 12, item 1 (the outbox half), with a real outbox, the reporter's job handlers and the real
Atlas emulator on 127.0.0.1.

Before: the closing comment of an anomaly whose issue was never made (its open record could not be
written) looked for the issue by tag every 30 s for 7 days, holding its (rule, channel) group; the
next anomaly of that key waited behind it, its issue job waited for its upload, and every later issue
of the run waited behind that one in the run's issue group (14 jobs pending, also after a restart).

Now a job waiting for a prerequisite steps aside in its group and fails after `prerequisite_wait` with
the reason; a job whose dependency fails or is refused fails at once; the order of the rest is kept;
and a group held by its head (a retry, an outage) says why on /status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.atlas import AtlasClient
from edge_agent.atlas.jobs import (
    KIND_COMMENT,
    KIND_ISSUE,
    KIND_SESSION,
    KIND_UPLOAD,
    register_reporter_handlers,
)
from edge_agent.atlas.narrative import anomaly_tag, comment_marker
from edge_agent.config import EmulatorSection, OutboxSection
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.outbox import BatchRef, JobSpec, JobState, Outbox, RetryPolicy

TOKEN = "groups-test-atlas-credential"
WAIT = 15.0
PREREQUISITE_WAIT = 2.0


@pytest.fixture
async def emulator() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=3, report_delay=60.0) as emu:
        yield emu


@pytest.fixture
async def outbox(tmp_path: Path, emulator: AtlasEmulator) -> AsyncIterator[Outbox]:
    client = AtlasClient(emulator.api_url, TOKEN, connect_timeout=2.0, read_timeout=5.0, upload_timeout=10.0)
    section = OutboxSection.model_validate({"retry_base": 0.05, "retry_cap": 0.3, "drain_deadline": 5.0})
    policy = RetryPolicy.from_section(section, prerequisite_wait=PREREQUISITE_WAIT)
    box = Outbox(tmp_path / "state", section, policy=policy)
    register_reporter_handlers(box, client)
    await box.start()
    yield box
    await box.close()
    await client.close()


def evidence(tmp_path: Path, name: str) -> str:
    path = tmp_path / "state" / "evidence" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("wall_time,supply_v\n2026-01-01T00:00:00,13.1\n")
    return str(path)


def anomaly_jobs(tmp_path: Path, anomaly: str, group: str, session_job: int) -> list[JobSpec]:
    """The reporter's opening batch: evidence upload, issue (run's issue group), opening comment."""
    return [
        JobSpec(
            KIND_UPLOAD,
            group,
            {"files": [evidence(tmp_path, anomaly)], "names": [f"{anomaly}.csv"]},
            deps=(session_job,),
        ),
        JobSpec(
            KIND_ISSUE,
            "issues:run-1",
            {
                "anomaly_id": anomaly,
                "title": f"issue {anomaly}",
                "description": [],
                "priority": "high",
                "tags": [anomaly_tag(anomaly)],
                "marker": comment_marker(anomaly, "open"),
                "comment": f"opened {anomaly}",
            },
            deps=(session_job, BatchRef(0)),
        ),
        JobSpec(
            KIND_COMMENT,
            group,
            {"anomaly_id": anomaly, "marker": comment_marker(anomaly, "open"), "content": f"open {anomaly}"},
            deps=(BatchRef(1),),
        ),
    ]


async def until(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while not await predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out after {WAIT} s waiting for {what}")
        await asyncio.sleep(0.02)


async def state_of(outbox: Outbox, job_id: int) -> JobState:
    job = await outbox.job(job_id)
    assert job is not None
    return job.state


async def test_a_comment_whose_issue_never_existed_steps_aside_fails_with_its_reason_and_holds_nothing(
    tmp_path: Path, outbox: Outbox, emulator: AtlasEmulator
) -> None:
    session = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "bench run", "not_before": ""})
    a = await outbox.enqueue_many(anomaly_jobs(tmp_path, "anomaly-a", "key:supply_v", session))
    # B's open record could not be written: no issue job exists, only its closing comment, by tag.
    stuck = await outbox.enqueue(
        KIND_COMMENT,
        "key:supply_v",
        {
            "anomaly_id": "anomaly-b",
            "marker": comment_marker("anomaly-b", "close"),
            "content": "closed b",
            "issue_anomaly_id": "anomaly-b",
        },
    )
    c = await outbox.enqueue_many(anomaly_jobs(tmp_path, "anomaly-c", "key:supply_v", session))
    d = await outbox.enqueue_many(anomaly_jobs(tmp_path, "anomaly-d", "key:temp_c", session))

    async def rest_delivered() -> bool:
        return all([await state_of(outbox, j) is JobState.DONE for j in (*a, *c, *d)])

    await until(rest_delivered, "every job but the stuck comment")
    # Everything behind it went ahead while it was still waiting (it does not hold its group) ...
    assert await state_of(outbox, stuck) is JobState.PENDING
    status = await outbox.status()
    (waiting,) = status["waiting_for_prerequisites"]
    assert waiting["id"] == stuck and "anomaly-b" in waiting["last_error"]
    assert 0 < waiting["gives_up_in_s"] <= PREREQUISITE_WAIT

    # ... and it fails with the reason after the bound, not after 7 days.
    async def stuck_failed() -> bool:
        return await state_of(outbox, stuck) is JobState.FAILED

    await until(stuck_failed, "the stuck comment to fail")
    failure = next(f for f in (await outbox.status())["failures"] if f["id"] == stuck)
    assert "prerequisite never appeared" in failure["reason"] and "anomaly-b" in failure["reason"]
    assert (await outbox.status())["waiting_for_prerequisites"] == []

    # Atlas holds each issue once, in the order the anomalies opened, each with its opening comment.
    issues = emulator.state()["issues"]
    assert [i["title"] for i in issues] == ["issue anomaly-a", "issue anomaly-c", "issue anomaly-d"]
    for issue in issues:
        name = issue["title"].removeprefix("issue ")
        assert [c["content"] for c in issue["comments"]] == [f"open {name}"]


async def test_a_refused_job_fails_its_dependants_at_once_and_its_groups_go_on_in_order(
    tmp_path: Path, outbox: Outbox, emulator: AtlasEmulator
) -> None:
    # X's issue can never be delivered (a priority Atlas does not know: the client refuses it before
    # sending): it fails with the reason, its opening comment, which needs the issue, fails at once with
    # it; Y, behind X in both groups, is delivered, in order.
    session = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "bench run", "not_before": ""})
    doomed = anomaly_jobs(tmp_path, "anomaly-x", "key:supply_v", session)
    doomed[1].payload["priority"] = "urgent"
    x = await outbox.enqueue_many(doomed)
    y = await outbox.enqueue_many(anomaly_jobs(tmp_path, "anomaly-y", "key:supply_v", session))

    async def settled() -> bool:
        states = [await state_of(outbox, j) for j in (*x, *y)]
        return all(s in (JobState.DONE, JobState.FAILED) for s in states)

    await until(settled, "every job settled")
    assert [await state_of(outbox, j) for j in x] == [JobState.DONE, JobState.FAILED, JobState.FAILED]
    assert [await state_of(outbox, j) for j in y] == [JobState.DONE] * 3
    failures = {f["id"]: f for f in (await outbox.status())["failures"]}
    assert "priority must be one of" in failures[x[1]]["reason"]
    assert failures[x[2]]["reason"] == f"dependency failed (job {x[1]})"
    issues = emulator.state()["issues"]
    assert [i["title"] for i in issues] == ["issue anomaly-y"]
    assert [c["content"] for c in issues[0]["comments"]] == ["open anomaly-y"]


async def test_a_held_group_says_why_on_status(
    tmp_path: Path, outbox: Outbox, emulator: AtlasEmulator
) -> None:
    emulator.faults.update({"error_rate": 1.0, "error_status": 503, "path_prefix": "/api/v1/sessions"})
    session = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "bench run", "not_before": ""})
    behind = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "second run", "not_before": ""})

    async def held_after_a_failure() -> bool:
        groups = (await outbox.status())["held_groups"]
        return bool(groups) and bool(groups[0]["head"]["last_error"])

    await until(held_after_a_failure, "the group to show as held after its head failed")
    (group,) = (await outbox.status())["held_groups"]
    assert group["group"] == "run:run-1" and group["behind"] == 1
    assert group["head"]["id"] == session and group["head"]["attempts"] >= 1
    assert "503" in group["head"]["last_error"]
    assert "503" in group["why"] or "paused" in group["why"] or "being delivered" in group["why"]
    emulator.faults.reset()

    async def delivered() -> bool:
        return all([await state_of(outbox, j) is JobState.DONE for j in (session, behind)])

    await until(delivered, "the group to drain after the outage")
    assert (await outbox.status())["held_groups"] == []
    assert [s["session_title"] for s in emulator.state()["sessions"]] == ["bench run", "second run"]
