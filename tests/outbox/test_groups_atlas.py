"""Issue 12, item 1 (the outbox half), with a real outbox, the reporter's job handlers and batch
builders (atlas/jobs.py, atlas/batches.py) and the real Atlas emulator on 127.0.0.1.

Before: a comment whose incident's issue was never made (its open record could not be written) looked
for the issue by tag every 30 s for 7 days, holding its group: every later job of that group (the
evidence uploads and comments after it) waited behind it, also after a restart.

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
from edge_agent.atlas.batches import Ref, evidence_batch, incident_group, open_batch
from edge_agent.atlas.jobs import KIND_SESSION, register_reporter_handlers
from edge_agent.atlas.narrative import agent_tag, comment_marker
from edge_agent.config import EmulatorSection, OutboxSection
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.outbox import JobSpec, JobState, Outbox, RetryPolicy

TOKEN = "groups-test-atlas-credential"
WAIT = 15.0
PREREQUISITE_WAIT = 2.0
ISSUES = "issues:run-1"


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


def opening(tmp_path: Path, incident: str, session_job: int, priority: str = "high") -> list[JobSpec]:
    """The reporter's opening batch: snapshot upload, issue (the run's issue group), opening comment."""
    return open_batch(
        incident_id=incident,
        issues_group=ISSUES,
        session=Ref(deps=(session_job,)),
        files=[evidence(tmp_path, f"{incident}-open")],
        names=[f"{incident}_open.csv"],
        issue={
            "title": f"issue {incident}",
            "description": [],
            "priority": priority,
            "tags": [agent_tag(incident)],
        },
        repeat=None,
        opening=f"opened {incident}\n{comment_marker(incident, 'open')}",
        repeat_text="",
    )


def later_evidence(tmp_path: Path, incident: str, session_job: int, part: str, issue: Ref) -> list[JobSpec]:
    return evidence_batch(
        incident_id=incident,
        issue=issue,
        session=Ref(deps=(session_job,)),
        files=[evidence(tmp_path, f"{incident}-{part}")],
        names=[f"{incident}_{part}.csv"],
        part=part,
        content=f"{part} of {incident}\n{comment_marker(incident, part)}",
    )


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


async def test_comments_whose_issue_never_existed_step_aside_fail_with_their_reason_and_hold_nothing(
    tmp_path: Path, outbox: Outbox, emulator: AtlasEmulator
) -> None:
    session = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "bench run", "not_before": ""})
    a = await outbox.enqueue_many(opening(tmp_path, "incident-a", session))
    # B's open record could not be written: it has no issue job, only its later evidence, which finds
    # its issue by tag. Its group: upload, comment (waits), upload, comment (waits).
    by_tag = Ref(fields={"issue_incident_id": "incident-b"})
    b_part = await outbox.enqueue_many(later_evidence(tmp_path, "incident-b", session, "part2", by_tag))
    b_close = await outbox.enqueue_many(later_evidence(tmp_path, "incident-b", session, "close", by_tag))
    c = await outbox.enqueue_many(opening(tmp_path, "incident-c", session))
    stuck = [b_part[1], b_close[1]]

    async def rest_delivered() -> bool:
        ids = (*a, *c, b_part[0], b_close[0])
        return all([await state_of(outbox, j) is JobState.DONE for j in ids])

    await until(rest_delivered, "every job but B's two comments")
    # B's closing upload went ahead while B's earlier comment was still waiting (it holds nothing) ...
    assert [await state_of(outbox, j) for j in stuck] == [JobState.PENDING] * 2
    waiting = (await outbox.status())["waiting_for_prerequisites"]
    assert [w["id"] for w in waiting] == stuck
    assert all(
        "incident-b" in w["last_error"] and 0 < w["gives_up_in_s"] <= PREREQUISITE_WAIT for w in waiting
    )
    assert {w["group"] for w in waiting} == {incident_group("incident-b")}

    # ... and each fails with the reason after the bound, not after 7 days.
    async def stuck_failed() -> bool:
        return all([await state_of(outbox, j) is JobState.FAILED for j in stuck])

    await until(stuck_failed, "B's comments to fail")
    failures = {f["id"]: f["reason"] for f in (await outbox.status())["failures"]}
    for job in stuck:
        assert "prerequisite never appeared" in failures[job] and "incident-b" in failures[job]
    assert (await outbox.status())["waiting_for_prerequisites"] == []

    # Atlas holds each issue once, in the order the incidents opened, each with its opening comment;
    # B's evidence is in the session (uploaded), its comments nowhere.
    state = emulator.state()
    assert [i["title"] for i in state["issues"]] == ["issue incident-a", "issue incident-c"]
    for issue in state["issues"]:
        name = issue["title"].removeprefix("issue ")
        assert [c["content"].splitlines()[0] for c in issue["comments"]] == [f"opened {name}"]
    (run_session,) = state["sessions"]
    names = sorted(att["attachment_name"] for att in run_session["attachments"])
    assert "incident-b_part2.csv" in names and "incident-b_close.csv" in names


async def test_a_refused_job_fails_its_dependants_at_once_and_its_groups_go_on_in_order(
    tmp_path: Path, outbox: Outbox, emulator: AtlasEmulator
) -> None:
    # X's issue can never be delivered (a priority Atlas does not know: the client refuses it before
    # sending): it fails with the reason, and every job that needs the issue fails at once with it; Y,
    # behind X in the run's issue group, is delivered, in order.
    session = await outbox.enqueue(KIND_SESSION, "run:run-1", {"title": "bench run", "not_before": ""})
    x = await outbox.enqueue_many(opening(tmp_path, "incident-x", session, priority="urgent"))
    x += await outbox.enqueue_many(
        later_evidence(tmp_path, "incident-x", session, "close", Ref(deps=(x[1],)))
    )
    y = await outbox.enqueue_many(opening(tmp_path, "incident-y", session))

    async def settled() -> bool:
        states = [await state_of(outbox, j) for j in (*x, *y)]
        return all(s in (JobState.DONE, JobState.FAILED) for s in states)

    await until(settled, "every job settled")
    # upload done; issue refused; its opening comment fails with it, and so does the evidence job that
    # owns the snapshot's files (they stay on disk, kept for a human); the closing upload (no dependency
    # on the issue) is delivered, after it in the group; the closing comment and its evidence job fail
    # with the issue.
    states = [await state_of(outbox, j) for j in x]
    done, failed = JobState.DONE, JobState.FAILED
    assert states == [done, failed, failed, failed, done, failed, failed]
    assert [await state_of(outbox, j) for j in y] == [JobState.DONE] * 4
    failures = {f["id"]: f for f in (await outbox.status())["failures"]}
    assert "priority must be one of" in failures[x[1]]["reason"]
    for dependant in (x[2], x[3], x[5], x[6]):
        assert failures[dependant]["reason"] == f"dependency failed (job {x[1]})"
    assert (tmp_path / "state" / "evidence" / "incident-x-open.csv").is_file()
    issues = emulator.state()["issues"]
    assert [i["title"] for i in issues] == ["issue incident-y"]
    assert [c["content"].splitlines()[0] for c in issues[0]["comments"]] == ["opened incident-y"]


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
