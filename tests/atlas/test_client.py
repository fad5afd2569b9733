"""The Atlas client against the real Atlas emulator over loopback: every method, happy paths and the
documented limits checked before sending."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import structlog
from atlas_client_helpers import SYSTEM_ID, count_requests, requests_seen

from edge_agent.atlas import (
    MAX_COMMENT_CHARS,
    AtlasClient,
    AtlasNotFound,
    AtlasValidationError,
    atlas_timestamp,
    split_comment,
    truncate_comment,
)
from edge_agent.config import AtlasSection
from edge_agent.emulators.atlas import AtlasEmulator

ATLAS_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


# -- sessions and files ----------------------------------------------------------------------------


async def test_session_create_get_list_delete(atlas: AtlasClient) -> None:
    made = await atlas.create_session("bench-03 run")
    assert made.session_title == "bench-03 run"
    untitled = await atlas.create_session()
    assert untitled.session_title == "New Atlas session"
    got = await atlas.get_session(made.session_id)
    assert got.session_id == made.session_id and got.attachments == []
    listed = {s.session_id for s in await atlas.list_sessions()}
    assert {made.session_id, untitled.session_id} <= listed
    await atlas.delete_session(untitled.session_id)
    with pytest.raises(AtlasNotFound):
        await atlas.get_session(untitled.session_id)


async def test_upload_round_trips_bytes_and_streamed_paths(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    session = await atlas.create_session("uploads")
    big = tmp_path / "capture.bin"
    big_bytes = os.urandom(3 * 1024 * 1024 + 17)  # several aiohttp chunks, odd size
    big.write_bytes(big_bytes)
    small = b"t,supply_v\n0,12.0\n1,11.2\n"
    summary = b'{"rule": "limits"}'
    attachments = await atlas.upload_files(
        session.session_id,
        [
            ("a1.csv", small, "text/csv"),
            ("capture.bin", big, "application/octet-stream"),
            ("a1.json", summary, "application/json"),
        ],
    )
    assert [a.attachment_name for a in attachments] == ["a1.csv", "capture.bin", "a1.json"]
    ids = [a.attachment_id for a in attachments]
    assert all(ids)
    assert atlas_emulator.attachment_bytes(str(ids[0])) == small
    assert atlas_emulator.attachment_bytes(str(ids[1])) == big_bytes
    assert atlas_emulator.attachment_bytes(str(ids[2])) == summary
    assert all(a.attachment_source_session_id == session.session_id for a in attachments)

    listed = (await atlas.get_session(session.session_id)).attachments
    assert {a.attachment_id for a in listed} == set(ids)


async def test_upload_rejects_missing_path_and_empty_list_before_sending(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator, tmp_path: Path
) -> None:
    session = await atlas.create_session("uploads")
    count_requests(atlas_emulator)
    with pytest.raises(FileNotFoundError):
        await atlas.upload_files(session.session_id, [("x.csv", tmp_path / "absent.csv", "text/csv")])
    with pytest.raises(AtlasValidationError) as err:
        await atlas.upload_files(session.session_id, [])
    assert err.value.status is None
    assert requests_seen(atlas_emulator) == 0


async def test_find_and_delete_attachment_by_name(atlas: AtlasClient) -> None:
    session = await atlas.create_session("lookup")
    first = await atlas.upload_files(session.session_id, [("anomaly-1.csv", b"a", "text/csv")])
    await atlas.upload_files(session.session_id, [("anomaly-2.csv", b"b", "text/csv")])
    # An ambiguous upload retried by the outbox can leave two of a name: the newest is the answer.
    again = await atlas.upload_files(session.session_id, [("anomaly-1.csv", b"a", "text/csv")])

    found = await atlas.find_attachment_by_name(session.session_id, "anomaly-1.csv")
    assert found is not None and found.attachment_id == again[0].attachment_id
    assert await atlas.find_attachment_by_name(session.session_id, "anomaly-9.csv") is None

    await atlas.delete_attachment(session.session_id, str(again[0].attachment_id))
    await atlas.delete_attachment(session.session_id, str(first[0].attachment_id))
    assert await atlas.find_attachment_by_name(session.session_id, "anomaly-1.csv") is None
    with pytest.raises(AtlasNotFound):
        await atlas.delete_attachment(session.session_id, str(first[0].attachment_id))


# -- issues ----------------------------------------------------------------------------------------


async def test_issue_create_get_patch(atlas: AtlasClient) -> None:
    session = await atlas.create_session("issues")
    (att,) = await atlas.upload_files(session.session_id, [("e.csv", b"x", "text/csv")])
    issue = await atlas.create_issue(
        "supply_v above 12.6 V",
        priority="high",
        tags=["edge-agent", "edge-agent:a-1"],
        session_ids=[session.session_id],
        attachment_ids=[str(att.attachment_id)],
    )
    assert issue.description == [] and issue.status == "open" and issue.priority == "high"
    assert issue.owner == "Unassigned"
    assert issue.tags == ["edge-agent", "edge-agent:a-1"]
    assert len(issue.sessions) == 1 and len(issue.attachments) == 1

    got = await atlas.get_issue(issue.uuid)
    assert got.uuid == issue.uuid and got.title == issue.title

    patched = await atlas.patch_issue(issue.uuid, status="resolved", tags=["x"], resolution_summary="fixed")
    assert (patched.status, patched.tags, patched.resolution_summary) == ("resolved", ["x"], "fixed")
    assert patched.priority == "high"  # fields not given are not sent

    with_status = await atlas.create_issue("made in progress", status="in_progress", owner="qa@example.com")
    assert (with_status.status, with_status.owner, with_status.priority) == (
        "in_progress",
        "qa@example.com",
        "low",
    )


async def test_issue_inputs_checked_before_sending(atlas: AtlasClient, atlas_emulator: AtlasEmulator) -> None:
    count_requests(atlas_emulator)
    for bad in (
        atlas.create_issue("  "),
        atlas.create_issue("t", priority="urgent"),
        atlas.create_issue("t", status="closed"),
        atlas.patch_issue("some-id"),
        atlas.patch_issue("some-id", status="done"),
        atlas.list_issues(limit=1001),
        atlas.list_issues(status=["nope"]),
    ):
        with pytest.raises(AtlasValidationError) as err:
            await bad
        assert err.value.status is None and "rejected before sending" in str(err.value)
    assert requests_seen(atlas_emulator) == 0


async def test_list_filters_and_pages(atlas: AtlasClient) -> None:
    for i in range(7):
        await atlas.create_issue(f"issue {i}", priority="high" if i % 2 else "low")
    await atlas.create_issue("resolved one", status="resolved")

    high = await atlas.list_issues(priority=["high"])
    assert sorted(i.title for i in high.items) == ["issue 1", "issue 3", "issue 5"]
    open_or_resolved = await atlas.list_issues(status=["open", "resolved"], limit=1000)
    assert len(open_or_resolved.items) == 8
    page = await atlas.list_issues(limit=3, offset=3)
    assert [i.title for i in page.items] == ["issue 4", "issue 3", "issue 2"]  # newest first


async def test_iter_issues_pages_until_a_short_page(atlas: AtlasClient) -> None:
    for i in range(23):
        await atlas.create_issue(f"issue {i}")
    titles = [i.title async for i in atlas.iter_issues(page_size=5)]
    assert titles == [f"issue {i}" for i in reversed(range(23))]
    first_seven = [i.title async for i in atlas.iter_issues(page_size=5, max_items=7)]
    assert first_seven == titles[:7]
    # An exact multiple of the page size ends with one empty page.
    assert len([i async for i in atlas.iter_issues(page_size=23)]) == 23


async def test_find_issue_by_tag_among_many(atlas: AtlasClient) -> None:
    target = await atlas.create_issue("the one", tags=["edge-agent", "edge-agent:anomaly-42"])
    for i in range(150):
        await atlas.create_issue(f"noise {i}", tags=["edge-agent", f"edge-agent:noise-{i}"])
    await atlas.patch_issue(target.uuid, status="resolved")  # any status is searched

    found = await atlas.find_issue_by_tag("edge-agent:anomaly-42", max_items=200)
    assert found is not None and found.uuid == target.uuid
    # Beyond the bound (the 151st issue read) it is not looked at, and the log says the bound stopped it.
    with structlog.testing.capture_logs() as logs:
        assert await atlas.find_issue_by_tag("edge-agent:anomaly-42", max_items=150) is None
    assert [e["issues_read"] for e in logs if e["event"] == "atlas_issue_lookup_bounded"] == [150]
    assert await atlas.find_issue_by_tag("edge-agent:absent", max_items=1000) is None
    newest = await atlas.find_issue_by_tag("edge-agent:noise-149", max_items=1)
    assert newest is not None and newest.title == "noise 149"


# -- comments --------------------------------------------------------------------------------------


async def test_comments_add_and_list(atlas: AtlasClient) -> None:
    session = await atlas.create_session("c")
    atts = await atlas.upload_files(session.session_id, [(f"f{i}.csv", b"x", "text/csv") for i in range(2)])
    issue = await atlas.create_issue("with comments", session_ids=[session.session_id])
    first = await atlas.add_comment(issue.uuid, "Reproduced on bench.")
    second = await atlas.add_comment(
        issue.uuid, "Evidence attached.", attachment_ids=[str(a.attachment_id) for a in atts]
    )
    assert first.content == "Reproduced on bench." and len(second.attachments) == 2
    page = await atlas.list_comments(issue.uuid)
    assert {c.uuid for c in page.items} == {first.uuid, second.uuid}
    assert len((await atlas.list_comments(issue.uuid, limit=1)).items) == 1


async def test_comment_limits(atlas: AtlasClient, atlas_emulator: AtlasEmulator) -> None:
    issue = await atlas.create_issue("limits")
    exact = await atlas.add_comment(issue.uuid, "x" * MAX_COMMENT_CHARS)
    assert len(exact.content) == MAX_COMMENT_CHARS

    count_requests(atlas_emulator)
    for content, ids in (("", []), ("   \n", []), ("y" * (MAX_COMMENT_CHARS + 1), []), ("ok", ["a"] * 11)):
        with pytest.raises(AtlasValidationError):
            await atlas.add_comment(issue.uuid, content, attachment_ids=ids)
    assert requests_seen(atlas_emulator) == 0

    long_text = "line of narrative\n" * 1500  # 27,000 characters
    cut = await atlas.add_comment(issue.uuid, long_text, truncate=True)
    assert len(cut.content) <= MAX_COMMENT_CHARS
    assert cut.content.startswith("line of narrative\n") and "[truncated: " in cut.content

    pieces = split_comment(long_text)
    assert len(pieces) == 3
    for piece in pieces:
        await atlas.add_comment(issue.uuid, piece)
    stored = (await atlas.list_comments(issue.uuid, limit=1000)).items
    bodies = sorted((c.content for c in stored if c.content.startswith("(")), key=lambda s: s[:4])
    assert "".join(re.sub(r"^\(\d+/3\) ", "", b) for b in bodies) == long_text


def test_truncate_and_split_are_bounded() -> None:
    assert truncate_comment("short") == "short"
    for n in (10_001, 12_345, 1_000_000):
        out = truncate_comment("z" * n)
        assert len(out) <= MAX_COMMENT_CHARS
        kept = out.split("\n")[0]
        assert out.endswith(f"[truncated: {n - len(kept)} more characters]")
    one_long_line = "q" * 25_000
    pieces = split_comment(one_long_line)
    assert all(len(p) <= MAX_COMMENT_CHARS for p in pieces)
    assert "".join(re.sub(r"^\(\d+/\d+\) ", "", p) for p in pieces) == one_long_line
    assert split_comment("   ") == []


# -- test runs, cards, steps -----------------------------------------------------------------------


async def test_test_run_card_step_lifecycle(atlas: AtlasClient) -> None:
    run = await atlas.create_test_run("PDU acceptance", SYSTEM_ID, description="bench-03")
    assert run.test_run_id and run.system_id == SYSTEM_ID and run.test_cards == []
    card = await atlas.create_card(run.uuid, "Overvoltage protection", "Apply 13V", order=1)
    assert card.order == 1
    step = await atlas.create_step(run.uuid, card.uuid, "Apply 13V to input rail", order=1)
    assert step.execution_status == "todo"

    start = datetime(2026, 4, 13, 10, 30, 0, 123456, tzinfo=UTC)
    end_local = datetime(2026, 4, 13, 12, 31, 0, tzinfo=timezone(timedelta(hours=2)))
    patched = await atlas.patch_step(
        run.uuid,
        card.uuid,
        step.uuid,
        execution_status="passed_with_exception",
        exception="trip at 104 ms",
        started_at=start,
        ended_at=end_local,
    )
    assert patched.execution_status == "passed_with_exception"
    assert patched.exception == "trip at 104 ms"
    assert patched.started_at == "2026-04-13T10:30:00.123456"
    assert patched.ended_at == "2026-04-13T10:31:00.000000"

    by_unix = await atlas.patch_step(run.uuid, card.uuid, step.uuid, execution_status="failed", ended_at=0.5)
    assert by_unix.ended_at == "1970-01-01T00:00:00.500000"

    got = await atlas.get_test_run(run.uuid)
    (got_card,) = got.test_cards
    (got_step,) = got_card.test_steps
    assert got_step.uuid == step.uuid and got_step.execution_status == "failed"


async def test_step_inputs_checked_before_sending(atlas: AtlasClient, atlas_emulator: AtlasEmulator) -> None:
    run = await atlas.create_test_run("r", SYSTEM_ID)
    card = await atlas.create_card(run.uuid, "c")
    step = await atlas.create_step(run.uuid, card.uuid, "s" * 100)  # the limit itself is fine
    count_requests(atlas_emulator)
    for bad in (
        atlas.create_step(run.uuid, card.uuid, "s" * 101),
        atlas.create_step(run.uuid, card.uuid, " "),
        atlas.patch_step(run.uuid, card.uuid, step.uuid, execution_status="skipped"),
        atlas.patch_step(run.uuid, card.uuid, step.uuid),
        atlas.create_card(run.uuid, ""),
        atlas.create_test_run("", SYSTEM_ID),
    ):
        with pytest.raises(AtlasValidationError):
            await bad
    assert requests_seen(atlas_emulator) == 0
    for status in ("todo", "done", "passed", "passed_with_exception", "failed"):
        assert (
            await atlas.patch_step(run.uuid, card.uuid, step.uuid, execution_status=status)
        ).execution_status == status


def test_atlas_timestamp_shape() -> None:
    assert atlas_timestamp(1_776_076_200.0) == "2026-04-13T10:30:00.000000"
    assert atlas_timestamp(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000000"  # naive = UTC
    assert ATLAS_TS.match(atlas_timestamp(1.25))


def test_from_config_needs_url_and_token() -> None:
    with pytest.raises(ValueError, match="atlas login"):
        AtlasClient.from_config(AtlasSection.model_validate({"url": "https://t.example"}))
    with pytest.raises(ValueError, match="ATLAS_URL"):
        AtlasClient.from_config(AtlasSection.model_validate({"token": "tok-123456"}))
    client = AtlasClient.from_config(
        AtlasSection.model_validate({"url": "https://t.example/", "token": "tok-123456"})
    )
    assert client.api_base == "https://t.example/api/v1"
    assert "tok-123456" not in repr(client)
