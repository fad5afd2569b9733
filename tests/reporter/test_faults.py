"""Reporter under Atlas faults and agent restarts: every incident reaches Atlas once, with its evidence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from reporter_helpers import TOKEN, Bench, Clock, fault, issues, make_bench, sessions

from edge_agent.atlas.records import OPEN_DIR, REPORTER_DIR
from edge_agent.atlas.recovery import FRAMES_LOST_AT_RESTART, SNAPSHOT_LOST
from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas import AtlasEmulator


async def _two_incidents(bench: Bench) -> list[str]:
    """A high one on supply_v, then, after the quiet period, a low one on temp_c: two issues."""
    await bench.idle(3.0)
    await bench.feed([fault()] * 5)
    await bench.idle(3.0)
    await bench.feed([fault(12.0, 90.0)] * 5)
    await bench.idle(3.0)
    ids = bench.opened_incidents()
    assert len(ids) == 2
    return ids


def _assert_once_with_evidence(emulator: AtlasEmulator, ids: list[str]) -> None:
    found = issues(emulator)
    tags = [t for i in found for t in i["tags"] if t.startswith("edge-agent:")]
    assert sorted(tags) == sorted(f"edge-agent:{i}" for i in ids)  # once each, nothing else
    for issue in found:
        assert len(issue["attachment_ids"]) == 2
        markers = [c["content"].splitlines()[-1] for c in issue["comments"]]
        incident = next(t for t in issue["tags"] if t.startswith("edge-agent:"))
        assert markers == [f"{incident}:open", f"{incident}:close"]  # in order, no repeats
        assert len(issue["comments"][1]["attachments"]) == 2  # the closing evidence: CSV, JSON (plots off)


async def _settle(
    bench: Bench, emulator: AtlasEmulator, ids: list[str], within: float = 45.0, comments: int = 2
) -> None:
    """Until every incident has its issue and comments (bounded). The closing narrative waits for its
    plot, drawn in a child process: seconds each on a loaded machine, so the bound is generous."""

    def done() -> bool:
        found = issues(emulator)
        return len(found) == len(ids) and all(len(i["comments"]) == comments for i in found)

    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not done() and loop.time() < end:
        await bench.reporter.tick()
        await bench.outbox.drain(0.5)
        await asyncio.sleep(0.05)
    found = [(i["title"], len(i["comments"]), len(i["attachment_ids"])) for i in issues(emulator)]
    waiting = [(j.id, j.kind, j.state, j.attempts) for j in await bench.outbox.jobs() if j.state != "done"]
    assert done(), f"not every issue and comment within {within} s: {found}; jobs not done: {waiting}"


async def test_connection_refused_for_a_while_then_everything_once(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path)
    await emulator.server.refuse_for(60.0)  # refusing while the incidents happen, however long that takes
    ids = await _two_incidents(bench)
    assert issues(emulator) == []
    await emulator.server.refuse_for(0.0)  # ... then listening again
    await _settle(bench, emulator, ids)
    _assert_once_with_evidence(emulator, ids)
    assert len(sessions(emulator)) == 1
    await bench.stop()


async def test_5xx_and_429_with_retry_after_are_retried(emulator: AtlasEmulator, tmp_path: Path) -> None:
    emulator.faults.update({"error_rate": 0.4, "error_status": 503})
    # Random 5xx on every path: uploads are retried like any other job here. (Leaving evidence out after
    # `upload_attempts` failures in a row while Atlas otherwise answers is test_evidence_refused's.)
    bench = await make_bench(emulator, tmp_path, atlas={"upload_attempts": 20})
    ids = await _two_incidents(bench)
    await _settle(bench, emulator, ids)
    _assert_once_with_evidence(emulator, ids)
    assert emulator.faults.injected["503"] > 0
    emulator.faults.update({"error_rate": 0.0, "rate_limit_rate": 1.0, "retry_after": 1.0})
    await bench.feed([fault()] * 5)
    await bench.idle(3.0)
    more = bench.opened_incidents()[2:]
    await asyncio.sleep(0.3)
    assert emulator.faults.injected["429"] > 0
    emulator.faults.update({"rate_limit_rate": 0.0})
    # The repeat on supply_v comments on the open issue: still two issues, the first with 4 comments.
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while sum(len(i["comments"]) for i in issues(emulator)) < 6 and loop.time() < end:
        await bench.outbox.drain(0.5)
    assert sum(len(i["comments"]) for i in issues(emulator)) == 6
    assert len(more) == 1 and len(issues(emulator)) == 2
    await bench.stop()


async def test_slow_uploads_arrive_whole(emulator: AtlasEmulator, tmp_path: Path) -> None:
    emulator.faults.update({"upload_bytes_per_sec": 40_000.0, "path_prefix": "/api/v1/sessions"})
    bench = await make_bench(emulator, tmp_path)
    ids = await _two_incidents(bench)
    await _settle(bench, emulator, ids)
    _assert_once_with_evidence(emulator, ids)
    assert emulator.faults.injected["slow_upload"] > 0
    await bench.stop()


async def test_unknown_outcome_timeouts_make_no_duplicate(emulator: AtlasEmulator, tmp_path: Path) -> None:
    # Answers slower than the client's read timeout: every POST's outcome is unknown until it clears.
    bench = await make_bench(emulator, tmp_path, read_timeout=0.3)
    await bench.outbox.drain(5.0)  # the session exists first
    emulator.faults.update({"latency": 0.6, "methods": ["POST"]})
    ids = await _two_incidents(bench)
    await asyncio.sleep(1.5)
    emulator.faults.update({"latency": 0.0})
    await _settle(bench, emulator, ids)
    _assert_once_with_evidence(emulator, ids)
    assert emulator.faults.injected["latency"] > 0
    assert bench.outbox.counters.get("retries", 0) > 0  # the timed-out attempts were looked up, not lost
    await bench.stop()


async def test_restart_after_crash_continues_run_and_closes_left_incidents(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    clock = Clock()
    bench = await make_bench(emulator, tmp_path, clock)
    await bench.idle(3.0)
    await bench.feed([fault()] * 5)
    await bench.feed([fault(temp_c=90.0)] * 10)  # temp_c joins and is reported (update_after 0.5 s)
    (opened,) = bench.opened_incidents()
    await bench.outbox.drain(5.0)
    # "SIGKILL": no reporter.close, no drain; the outbox is just let go.
    await bench.outbox.close()
    await bench.client.close()
    again = await make_bench(emulator, tmp_path, clock)
    run = again.reporter.run
    assert run is not None and run.restarts == 1
    await _settle(again, emulator, [opened], comments=3)
    (issue,) = issues(emulator)
    closing = issue["comments"][2]
    assert "agent restarted" in closing["content"]
    # The members the record knew at the crash are in the closing evidence; the frames after the
    # snapshot are not, and the file says so.
    (summary_json,) = [a for a in closing["attachments"] if a["attachment_name"].endswith(".json")]
    incident = json.loads(emulator.attachment_bytes(summary_json["attachment_id"]))["incident"]
    assert [m["channel"] for m in incident["members"]] == ["supply_v", "temp_c"]
    assert incident["evidence"] == FRAMES_LOST_AT_RESTART and incident["close_reason"] == "agent restarted"
    assert len(sessions(emulator)) == 1
    # A clean shutdown ends the run: the next start is a new run with a new session.
    await again.stop(clean=True)
    third = await make_bench(emulator, tmp_path, clock)
    await third.outbox.drain(5.0)
    assert len(sessions(emulator)) == 2
    await third.stop()


async def test_auth_failure_blocks_the_queue_and_loses_nothing(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path)
    real = emulator.token
    emulator.token = "rotated-token-the-agent-does-not-have"
    ids = await _two_incidents(bench)
    await bench.outbox.drain(1.0)
    status = await bench.outbox.status()
    assert status["blocked"] is not None and status["blocked"]["status"] == 401
    assert status["depth"]["failed"] == 0 and issues(emulator) == []
    emulator.token = real
    await _settle(bench, emulator, ids, within=20.0)
    _assert_once_with_evidence(emulator, ids)
    await bench.stop()


async def test_killed_after_queuing_the_close_comment_makes_no_second_one(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """A SIGKILL between enqueuing an incident's closing comment and removing its open record must not
    make the restart queue a second closing comment."""
    clock = Clock()
    bench = await make_bench(emulator, tmp_path, clock)
    await bench.idle(3.0)
    await bench.feed([fault()] * 5)
    (opened,) = bench.opened_incidents()
    record = tmp_path / REPORTER_DIR / OPEN_DIR / f"{opened}.json"
    saved = record.read_bytes()
    await bench.idle(12.0)  # clears, closes, and past `post`: the closing comment is queued
    assert not record.exists()
    record.write_bytes(saved)  # as if killed just before the record was removed
    await bench.outbox.close()
    await bench.client.close()
    again = await make_bench(emulator, tmp_path, clock)
    await _settle(again, emulator, [opened])
    (issue,) = issues(emulator)
    closing = [c for c in issue["comments"] if f"edge-agent:{opened}:close" in c["content"]]
    assert len(closing) == 1
    assert not record.exists()
    await again.stop()


async def test_killed_before_the_snapshot_was_written_still_uploads_the_summary(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """A SIGKILL after the open record is written but before the snapshot and the open batch: the
    frames died with the process, the summary did not. The restart reports the incident with the
    summary uploaded (and a header-only CSV), saying the frames were lost, not with no evidence."""
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=8) as elsewhere:  # the first life reports nowhere we look
        first = await make_bench(elsewhere, tmp_path / "first")
        await first.idle(3.0)
        await first.feed([fault()] * 5)
        (incident_id,) = first.opened_incidents()
        record_path = tmp_path / "first" / REPORTER_DIR / OPEN_DIR / f"{incident_id}.json"
        record = json.loads(record_path.read_text())
        record["issue_job"] = None  # as first written, before the open batch was enqueued
        await first.outbox.close()
        await first.client.close()
    state_dir = tmp_path / "second"
    (state_dir / REPORTER_DIR / OPEN_DIR).mkdir(parents=True)
    (state_dir / REPORTER_DIR / OPEN_DIR / f"{incident_id}.json").write_text(json.dumps(record))
    again = await make_bench(emulator, state_dir)
    # The record keeps the opening text's facts: the restart posts the opening and the closing comment.
    await _settle(again, emulator, [incident_id], comments=2)
    (issue,) = issues(emulator)
    assert f"edge-agent:{incident_id}" in issue["tags"]
    by_id = {a["attachment_id"]: a["attachment_name"] for s in sessions(emulator) for a in s["attachments"]}
    by_name = {by_id[i]: i for i in issue["attachment_ids"]}
    name = record["name"]
    assert sorted(by_name) == [f"{name}_open.csv", f"{name}_open.json"]
    document = json.loads(emulator.attachment_bytes(by_name[f"{name}_open.json"]))
    incident = document["incident"]
    assert incident["id"] == incident_id and incident["members"][0]["channel"] == "supply_v"
    assert incident["evidence"] == SNAPSHOT_LOST
    assert document["evidence"]["frames"] == 0
    csv_text = emulator.attachment_bytes(by_name[f"{name}_open.csv"]).decode()
    assert len(csv_text.splitlines()) == 1  # the header, no invented frames
    assert again.reporter.counters["snapshots_lost_at_crash"] == 1
    assert "agent restarted" in issue["comments"][-1]["content"]
    await again.stop()
