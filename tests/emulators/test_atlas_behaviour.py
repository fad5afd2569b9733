"""Atlas emulator rules beyond the example calls: validation (422 in FastAPI shape), filters and paging,
404s, auth, derived fields, lifecycles, stored uploads and the state dump. Real HTTP over loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.emulators.atlas import AtlasEmulator

SYSTEM_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
NOT_FOUND = {"detail": "Not found"}


async def call(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, "api/v1/" + path, **kwargs) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


def assert_422(status: int, body: Any, loc: list[Any], error_type: str | None = None) -> None:
    assert status == 422, body
    items = body["detail"]
    assert all(set(item) == {"type", "loc", "msg", "input"} for item in items), items
    assert loc in [item["loc"] for item in items], items
    if error_type is not None:
        assert error_type in [item["type"] for item in items if item["loc"] == loc], items


async def new_issue(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    status, body = await call(http, "POST", "issues", json={"title": "t", "description": [], **fields})
    assert status == 201, body
    return dict(body)


async def new_session_with_files(
    http: aiohttp.ClientSession, files: list[tuple[str, bytes]]
) -> tuple[str, list[dict[str, Any]]]:
    status, session = await call(http, "POST", "sessions", json={})
    assert status == 201 and session["session_title"] == "New Atlas session"
    form = aiohttp.FormData()
    for name, data in files:
        form.add_field("files", data, filename=name)
    status, attachments = await call(
        http, "POST", f"sessions/{session['session_id']}/upload-files", data=form
    )
    assert status == 200, attachments
    return session["session_id"], attachments


# --- auth and unknown ids ----------------------------------------------------------------------------


async def test_requests_without_the_bearer_token_are_refused(atlas_emulator: AtlasEmulator) -> None:
    async with aiohttp.ClientSession(atlas_emulator.base_url + "/") as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {atlas_emulator.token}"},
        ):
            async with http.get("api/v1/sessions", headers=headers) as resp:
                assert resp.status == 401
                assert await resp.json() == {"detail": "Not authenticated"}
        # The admin endpoints are outside /api/v1 and need no token (loopback tooling).
        async with http.get("_emulator/state") as resp:
            assert resp.status == 200


async def test_unknown_ids_answer_404_not_found(atlas_http: aiohttp.ClientSession) -> None:
    ghost = "00000000-0000-4000-8000-000000000000"
    issue = await new_issue(atlas_http)
    for method, path in [
        ("GET", f"sessions/{ghost}"),
        ("DELETE", f"sessions/{ghost}"),
        ("GET", f"issues/{ghost}"),
        ("PATCH", f"issues/{ghost}"),
        ("GET", f"issues/{ghost}/comments"),
        ("PATCH", f"issues/{issue['uuid']}/comments/{ghost}"),
        ("DELETE", f"issues/{issue['uuid']}/comments/{ghost}"),
        ("GET", f"test-runs/{ghost}"),
        ("GET", f"test-runs/{ghost}/reports/{ghost}"),
        ("GET", f"jobs/{ghost}"),
        ("GET", f"job-runs/{ghost}"),
    ]:
        status, body = await call(atlas_http, method, path, json={"content": "x"})
        assert (status, body) == (404, NOT_FOUND), (method, path)
    status, body = await call(atlas_http, "GET", "no-such-endpoint")
    assert status == 404


# --- sessions ---------------------------------------------------------------------------------------


async def test_uploads_are_stored_and_readable_back(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    payload = bytes(range(256)) * 1000
    session_id, attachments = await new_session_with_files(
        atlas_http, [("evidence.CSV", payload), ("summary.json", b"{}"), ("README", b"plain")]
    )
    assert [a["attachment_type"] for a in attachments] == ["csv", "json", ""]
    evidence_id = attachments[0]["attachment_id"]
    assert atlas_emulator.attachment_bytes(evidence_id) == payload
    async with atlas_http.get(f"_emulator/attachments/{evidence_id}") as resp:
        assert resp.status == 200 and await resp.read() == payload

    # Only the single GET carries attachments; the list leaves them out.
    status, one = await call(atlas_http, "GET", f"sessions/{session_id}")
    assert [a["attachment_id"] for a in one["attachments"]] == [a["attachment_id"] for a in attachments]
    status, listed = await call(atlas_http, "GET", "sessions")
    assert listed["count"] == 1 and "attachments" not in listed["items"][0]

    status, body = await call(atlas_http, "DELETE", f"sessions/{session_id}/attachments/{evidence_id}")
    assert (status, body) == (204, None)
    status, one = await call(atlas_http, "GET", f"sessions/{session_id}")
    assert len(one["attachments"]) == 2
    assert (await call(atlas_http, "DELETE", f"sessions/{session_id}/attachments/{evidence_id}"))[0] == 404


async def test_upload_without_a_files_part_is_422(atlas_http: aiohttp.ClientSession) -> None:
    status, session = await call(atlas_http, "POST", "sessions", json={"title": "s"})
    form = aiohttp.FormData()
    form.add_field("file", b"wrong field name", filename="x.bin")
    status, body = await call(atlas_http, "POST", f"sessions/{session['session_id']}/upload-files", data=form)
    assert_422(status, body, ["body", "files"], "missing")


async def test_session_update_stars_and_describes(atlas_http: aiohttp.ClientSession) -> None:
    _, session = await call(atlas_http, "POST", "sessions", json={"title": "a"})
    path = f"sessions/{session['session_id']}"
    status, body = await call(atlas_http, "PUT", path, json={"description": "d", "starred": True})
    assert status == 200 and body["session_title"] == "a" and body["session_description"] == "d"
    assert body["is_starred"] is True and body["starred_at"] is not None
    _, body = await call(atlas_http, "PUT", path, json={"starred": False})
    assert body["is_starred"] is False and body["starred_at"] is None
    status, body = await call(atlas_http, "PUT", path, json={"starred": "maybe"})
    assert_422(status, body, ["body", "starred"], "bool_parsing")


# --- issues -----------------------------------------------------------------------------------------


async def test_issue_create_validates_required_fields_and_enums(atlas_http: aiohttp.ClientSession) -> None:
    status, body = await call(atlas_http, "POST", "issues", json={})
    assert_422(status, body, ["body", "title"], "missing")
    assert_422(status, body, ["body", "description"], "missing")
    status, body = await call(
        atlas_http, "POST", "issues", json={"title": "t", "description": [], "status": "done"}
    )
    assert_422(status, body, ["body", "status"], "literal_error")
    status, body = await call(
        atlas_http, "POST", "issues", json={"title": "t", "description": [], "priority": 3}
    )
    assert_422(status, body, ["body", "priority"], "literal_error")
    status, body = await call(atlas_http, "POST", "issues", json={"title": "t", "description": "text"})
    assert_422(status, body, ["body", "description"], "list_type")
    status, body = await call(
        atlas_http, "POST", "issues", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_422(status, body, ["body", 0], "json_invalid")
    status, body = await call(
        atlas_http, "PATCH", f"issues/{(await new_issue(atlas_http))['uuid']}", json={"priority": "urgent"}
    )
    assert_422(status, body, ["body", "priority"], "literal_error")


async def test_issue_links_resolve_sessions_and_attachments(atlas_http: aiohttp.ClientSession) -> None:
    session_id, attachments = await new_session_with_files(atlas_http, [("a.csv", b"1"), ("b.json", b"2")])
    issue = await new_issue(
        atlas_http, session_ids=[session_id], attachment_ids=[attachments[0]["attachment_id"]]
    )
    assert [s["session_id"] for s in issue["sessions"]] == [session_id]
    assert [a["attachment_id"] for a in issue["attachments"]] == [attachments[0]["attachment_id"]]
    assert [a["attachment_id"] for a in issue["session_attachments"]] == [
        a["attachment_id"] for a in attachments
    ]
    # Unknown ids in the body: 422 naming the offending item (INFERRED choice, see atlas_store).
    ghost = "00000000-0000-4000-8000-000000000000"
    status, body = await call(
        atlas_http,
        "POST",
        "issues",
        json={"title": "t", "description": [], "session_ids": [session_id, ghost]},
    )
    assert_422(status, body, ["body", "session_ids", 1], "value_error")
    status, body = await call(
        atlas_http, "POST", "issues", json={"title": "t", "description": [], "attachment_ids": [ghost]}
    )
    assert_422(status, body, ["body", "attachment_ids", 0], "value_error")


async def test_issue_list_filters_repeat_and_pages(atlas_http: aiohttp.ClientSession) -> None:
    made = []
    for status_, priority in [
        ("open", "high"),
        ("open", "low"),
        ("resolved", "high"),
        ("in_progress", "medium"),
    ] * 3:
        made.append(await new_issue(atlas_http, status=status_, priority=priority))
    _, body = await call(atlas_http, "GET", "issues")
    assert body["count"] == 12 and len(body["items"]) == 12
    _, body = await call(atlas_http, "GET", "issues?status=open&status=in_progress")
    assert body["count"] == 9 and {i["status"] for i in body["items"]} == {"open", "in_progress"}
    _, body = await call(atlas_http, "GET", "issues", params=[("priority", "high"), ("priority", "medium")])
    assert body["count"] == 9 and {i["priority"] for i in body["items"]} == {"high", "medium"}
    _, body = await call(atlas_http, "GET", "issues?status=open&priority=high")
    assert body["count"] == 3

    pages, offset = [], 0
    for _ in range(10):  # bounded: 12 issues in pages of 5
        _, body = await call(atlas_http, "GET", f"issues?limit=5&offset={offset}")
        pages.append([i["uuid"] for i in body["items"]])
        offset += len(body["items"])
        if len(body["items"]) < 5:
            break
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sorted(u for p in pages for u in p) == sorted(i["uuid"] for i in made)

    _, body = await call(atlas_http, "GET", "issues?limit=1000")
    assert body["count"] == 12
    for query, loc, kind in [
        ("limit=1001", ["query", "limit"], "less_than_equal"),
        ("limit=0", ["query", "limit"], "greater_than_equal"),
        ("offset=-1", ["query", "offset"], "greater_than_equal"),
        ("limit=many", ["query", "limit"], "int_parsing"),
        ("status=closed", ["query", "status", 0], "literal_error"),
        ("priority=high&priority=urgent", ["query", "priority", 1], "literal_error"),
    ]:
        status, body = await call(atlas_http, "GET", f"issues?{query}")
        assert_422(status, body, loc, kind)


async def test_issue_patch_changes_only_what_is_sent(atlas_http: aiohttp.ClientSession) -> None:
    issue = await new_issue(atlas_http, priority="high", tags=["a"], resolution_summary="none yet")
    status, body = await call(atlas_http, "PATCH", f"issues/{issue['uuid']}", json={"status": "resolved"})
    assert status == 200 and body["status"] == "resolved"
    assert (body["priority"], body["tags"], body["resolution_summary"]) == ("high", ["a"], "none yet")
    _, body = await call(
        atlas_http, "PATCH", f"issues/{issue['uuid']}", json={"tags": ["b", "c"], "owner": "x@y"}
    )
    assert (body["tags"], body["owner"], body["status"]) == (["b", "c"], "x@y", "resolved")
    assert (await call(atlas_http, "DELETE", f"issues/{issue['uuid']}"))[0] == 204
    assert (await call(atlas_http, "GET", f"issues/{issue['uuid']}"))[0] == 404


async def test_comment_length_and_attachment_rules(atlas_http: aiohttp.ClientSession) -> None:
    issue = await new_issue(atlas_http)
    path = f"issues/{issue['uuid']}/comments"
    status, body = await call(atlas_http, "POST", path, json={"content": ""})
    assert_422(status, body, ["body", "content"], "string_too_short")
    status, body = await call(atlas_http, "POST", path, json={"content": "x" * 10_001})
    assert_422(status, body, ["body", "content"], "string_too_long")
    status, body = await call(atlas_http, "POST", path, json={})
    assert_422(status, body, ["body", "content"], "missing")
    status, body = await call(atlas_http, "POST", path, json={"content": "y", "attachment_ids": ["a"] * 11})
    assert_422(status, body, ["body", "attachment_ids"], "too_long")

    _, attachments = await new_session_with_files(atlas_http, [(f"f{i}.csv", b"x") for i in range(10)])
    ids = [a["attachment_id"] for a in attachments]
    status, longest = await call(
        atlas_http, "POST", path, json={"content": "é" * 10_000, "attachment_ids": ids}
    )
    assert status == 201 and len(longest["content"]) == 10_000
    assert [a["attachment_id"] for a in longest["attachments"]] == ids
    status, body = await call(
        atlas_http, "PATCH", f"{path}/{longest['uuid']}", json={"content": "x" * 10_001}
    )
    assert_422(status, body, ["body", "content"], "string_too_long")
    status, edited = await call(atlas_http, "PATCH", f"{path}/{longest['uuid']}", json={"content": "edited"})
    assert status == 200 and edited["is_edited"] is True and edited["content"] == "edited"
    assert edited["created_at"] == longest["created_at"] and edited["updated_at"] >= longest["updated_at"]

    for i in range(4):
        await call(atlas_http, "POST", path, json={"content": f"c{i}"})
    _, page = await call(atlas_http, "GET", f"{path}?limit=2&offset=1")
    assert page["count"] == 5 and [c["content"] for c in page["items"]] == ["c0", "c1"]
    status, body = await call(atlas_http, "GET", f"{path}?limit=1001")
    assert_422(status, body, ["query", "limit"], "less_than_equal")
    assert (await call(atlas_http, "DELETE", f"{path}/{longest['uuid']}"))[0] == 204
    _, page = await call(atlas_http, "GET", path)
    assert page["count"] == 4 and longest["uuid"] not in [c["uuid"] for c in page["items"]]


async def test_metrics_count_active_issues_by_priority(atlas_http: aiohttp.ClientSession) -> None:
    for status_, priority in [("open", "high")] * 2 + [
        ("in_progress", "high"),
        ("open", "low"),
        ("resolved", "medium"),
    ]:
        await new_issue(atlas_http, status=status_, priority=priority)
    _, body = await call(atlas_http, "GET", "issues/metrics")
    [chart] = body["metrics"]
    assert chart["chart_type"] == "pie_chart" and chart["chart_data"]["title"] == "Active Issues"
    assert {d["label"]: d["value"] for d in chart["chart_data"]["data"]} == {"high": 3, "medium": 0, "low": 1}


async def test_issue_files_empty_until_populated_and_filterable(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    issue = await new_issue(atlas_http)
    assert await call(atlas_http, "GET", f"issues/{issue['uuid']}/files") == (200, [])
    _, attachments = await new_session_with_files(atlas_http, [("plan.md", b"# plan")])
    atlas_emulator.add_issue_file(
        issue["uuid"], "plan.md", "troubleshooting_plan", attachments[0]["attachment_id"]
    )
    atlas_emulator.add_issue_file(issue["uuid"], "notes.md", "notes", attachments[0]["attachment_id"])
    _, files = await call(atlas_http, "GET", f"issues/{issue['uuid']}/files?file_type=troubleshooting_plan")
    assert [f["file_name"] for f in files] == ["plan.md"]


# --- test runs --------------------------------------------------------------------------------------


async def test_run_cards_steps_and_derived_counts(atlas_http: aiohttp.ClientSession) -> None:
    status, body = await call(atlas_http, "POST", "test-runs", json={"title": "t", "system_id": "not-a-uuid"})
    assert_422(status, body, ["body", "system_id"], "uuid_parsing")
    _, run = await call(
        atlas_http, "POST", "test-runs", json={"title": "PDU acceptance", "system_id": SYSTEM_ID}
    )
    _, second = await call(atlas_http, "POST", "test-runs", json={"title": "second", "system_id": SYSTEM_ID})
    assert (run["test_run_id"], second["test_run_id"]) == ("TR-0001", "TR-0002")
    rid = run["uuid"]
    status, body = await call(atlas_http, "POST", f"test-runs/{rid}/cards", json={"description": "no title"})
    assert_422(status, body, ["body"], "value_error")
    _, card = await call(atlas_http, "POST", f"test-runs/{rid}/cards", json={"title": "OVP"})
    cid = card["uuid"]
    steps_path = f"test-runs/{rid}/cards/{cid}/steps"
    status, body = await call(atlas_http, "POST", steps_path, json={"title": "x" * 101})
    assert_422(status, body, ["body", "title"], "string_too_long")
    steps = []
    for i in range(4):
        status, step = await call(
            atlas_http, "POST", steps_path, json={"title": "s" * 100 if i == 0 else f"step {i}"}
        )
        assert status == 201 and step["execution_status"] == "todo" and step["order"] == i + 1
        steps.append(step)

    outcomes = ["passed", "passed_with_exception", "failed"]
    for step, outcome in zip(steps, outcomes, strict=False):
        patch = {
            "execution_status": outcome,
            "started_at": "2026-04-13T11:04:00.000000",
            "ended_at": "2026-04-13T11:05:00Z",
        }
        if outcome == "passed_with_exception":
            patch["exception"] = "trip at 104 ms"
        status, body = await call(atlas_http, "PATCH", f"{steps_path}/{step['uuid']}", json=patch)
        assert (
            status == 200
            and body["execution_status"] == outcome
            and body["started_at"] == patch["started_at"]
        )
    for bad, loc in [
        ({"execution_status": "skipped"}, "execution_status"),
        ({"title": "x" * 101}, "title"),
        ({"started_at": "yesterday"}, "started_at"),
    ]:
        status, body = await call(atlas_http, "PATCH", f"{steps_path}/{steps[3]['uuid']}", json=bad)
        assert_422(status, body, ["body", loc])

    _, detail = await call(atlas_http, "GET", f"test-runs/{rid}")
    [card_detail] = detail["test_cards"]
    assert [s["execution_status"] for s in card_detail["test_steps"]] == [*outcomes, "todo"]
    assert card_detail["test_steps"][1]["exception"] == "trip at 104 ms"
    _, listed = await call(atlas_http, "GET", f"test-runs?system_id={SYSTEM_ID}")
    [item] = [i for i in listed["items"] if i["uuid"] == rid]
    assert item["completion_pct"] == 0.75
    assert item["step_status_counts"] == {"todo": 1, "passed": 1, "passed_with_exception": 1, "failed": 1}
    assert (item["card_count"], item["file_count"], item["report_count"]) == (1, 0, 0)
    _, none = await call(atlas_http, "GET", "test-runs?system_id=00000000-0000-4000-8000-000000000000")
    assert none == {"items": [], "count": 0}

    _, renamed = await call(atlas_http, "PATCH", f"test-runs/{rid}/cards/{cid}", json={"description": "new"})
    assert (renamed["title"], renamed["description"]) == ("OVP", "new")
    assert (await call(atlas_http, "DELETE", f"{steps_path}/{steps[0]['uuid']}"))[0] == 204
    _, detail = await call(atlas_http, "GET", f"test-runs/{rid}")
    assert len(detail["test_cards"][0]["test_steps"]) == 3


async def test_data_registration_and_associations(atlas_http: aiohttp.ClientSession) -> None:
    _, run = await call(atlas_http, "POST", "test-runs", json={"title": "t", "system_id": SYSTEM_ID})
    rid = run["uuid"]
    _, card = await call(atlas_http, "POST", f"test-runs/{rid}/cards", json={"title": "c"})
    _, step = await call(
        atlas_http, "POST", f"test-runs/{rid}/cards/{card['uuid']}/steps", json={"title": "s"}
    )
    status, body = await call(
        atlas_http, "POST", f"test-runs/{rid}/data", json={"file_name": "a.csv", "s3_url": "s3://b/k"}
    )
    assert_422(status, body, ["body", "file_size"], "missing")
    assoc = {"test_card_id": card["uuid"], "test_step_id": step["uuid"]}
    status, data = await call(
        atlas_http,
        "POST",
        f"test-runs/{rid}/data",
        json={"file_name": "a.bin", "s3_url": "s3://b/a.bin", "file_size": 3, "associate_with": assoc},
    )
    assert (
        status == 201
        and data["content_type"] == "application/octet-stream"
        and data["associations"] == [assoc]
    )
    _, detail = await call(atlas_http, "GET", f"test-runs/{rid}")
    assert [d["uuid"] for d in detail["test_cards"][0]["test_steps"][0]["test_data"]] == [data["uuid"]]
    bad = {**assoc, "test_step_id": "00000000-0000-4000-8000-000000000000"}
    status, body = await call(
        atlas_http,
        "POST",
        f"test-runs/{rid}/data",
        json={"file_name": "x", "s3_url": "s3://b/x", "file_size": 1, "associate_with": bad},
    )
    assert_422(status, body, ["body", "associate_with", "test_step_id"], "value_error")


async def test_reports_go_pending_then_completed(atlas_http: aiohttp.ClientSession) -> None:
    # The fixture's emulator completes a report on its second poll (report_polls=2, a long delay).
    _, run = await call(atlas_http, "POST", "test-runs", json={"title": "Run", "system_id": SYSTEM_ID})
    rid = run["uuid"]
    _, card = await call(atlas_http, "POST", f"test-runs/{rid}/cards", json={"title": "c"})
    status, body = await call(atlas_http, "POST", f"test-runs/{rid}/reports", json={"scope": "card"})
    assert_422(status, body, ["body"], "value_error")
    status, body = await call(atlas_http, "POST", f"test-runs/{rid}/reports", json={"scope": "fleet"})
    assert_422(status, body, ["body", "scope"], "literal_error")
    status, report = await call(
        atlas_http, "POST", f"test-runs/{rid}/reports", json={"scope": "card", "test_card_id": card["uuid"]}
    )
    assert status == 201 and report["status"] == "pending" and report["content"] == ""
    path = f"test-runs/{rid}/reports/{report['uuid']}"
    seen = []
    for _ in range(5):  # bounded poll
        _, polled = await call(atlas_http, "GET", path)
        seen.append(polled["status"])
        if polled["status"] == "completed":
            break
    assert seen == ["running", "completed"]
    assert polled["content"] and polled["summary"] and polled["title"] == "c – Card Analysis"
    _, listed = await call(atlas_http, "GET", f"test-runs/{rid}/reports")
    assert listed["count"] == 1 and listed["items"][0]["status"] == "completed"
    _, runs = await call(atlas_http, "GET", "test-runs?has_reports=true")
    assert [r["uuid"] for r in runs["items"]] == [rid]


async def test_report_completes_after_the_configured_delay(atlas_settings: Any) -> None:
    async with (
        AtlasEmulator(atlas_settings, report_delay=0.0) as emulator,
        aiohttp.ClientSession(
            emulator.base_url + "/", headers={"Authorization": f"Bearer {emulator.token}"}
        ) as http,
    ):
        _, run = await call(http, "POST", "test-runs", json={"title": "Run", "system_id": SYSTEM_ID})
        _, report = await call(http, "POST", f"test-runs/{run['uuid']}/reports", json={"scope": "run"})
        assert report["status"] == "completed" and report["summary"]


async def test_report_fault_switches_set_delay_and_outcome(atlas_settings: Any) -> None:
    """`report_delay` and `report_outcome` (fault switches) apply to reports requested afterwards: a
    failed report has no summary, and a report already requested keeps the lifecycle it had."""
    async with (
        AtlasEmulator(atlas_settings, report_delay=0.0) as emulator,
        aiohttp.ClientSession(
            emulator.base_url + "/", headers={"Authorization": f"Bearer {emulator.token}"}
        ) as http,
    ):
        _, run = await call(http, "POST", "test-runs", json={"title": "Run", "system_id": SYSTEM_ID})
        rid = run["uuid"]
        _, card = await call(http, "POST", f"test-runs/{rid}/cards", json={"title": "c"})
        _, step = await call(http, "POST", f"test-runs/{rid}/cards/{card['uuid']}/steps", json={"title": "s"})
        slow_then_failed = {"report_delay": 3600, "report_outcome": "failed"}
        async with http.post("_emulator/faults", json=slow_then_failed) as r:
            assert r.status == 200
        scope = {"scope": "step", "test_card_id": card["uuid"], "test_step_id": step["uuid"]}
        _, slow = await call(http, "POST", f"test-runs/{rid}/reports", json=scope)
        assert slow["status"] == "pending"
        _, polled = await call(http, "GET", f"test-runs/{rid}/reports/{slow['uuid']}")
        assert polled["status"] == "running"
        async with http.post("_emulator/faults", json={"report_delay": 0}) as r:
            assert r.status == 200
        _, failed = await call(http, "POST", f"test-runs/{rid}/reports", json={"scope": "run"})
        assert failed["status"] == "failed" and failed["summary"] == "" and failed["content"] == ""
        _, still = await call(http, "GET", f"test-runs/{rid}/reports/{slow['uuid']}")
        assert still["status"] == "running"  # requested before the switch: its hour still runs
        async with http.post("_emulator/faults", json={"report_outcome": "cancelled"}) as r:
            assert r.status == 200
        _, cancelled = await call(http, "POST", f"test-runs/{rid}/reports", json={"scope": "run"})
        assert cancelled["status"] == "cancelled"
        # The body as the page says: a step report needs its card's id and its own, in that card.
        status, body = await call(
            http, "POST", f"test-runs/{rid}/reports", json={"scope": "step", "test_card_id": card["uuid"]}
        )
        assert_422(status, body, ["body"], "value_error")
        _, other = await call(http, "POST", f"test-runs/{rid}/cards", json={"title": "other"})
        status, body = await call(
            http, "POST", f"test-runs/{rid}/reports", json={**scope, "test_card_id": other["uuid"]}
        )
        assert_422(status, body, ["body", "test_step_id"], "value_error")
        status, body = await call(
            http, "POST", f"test-runs/{rid}/reports", json={"scope": "run", "analysis_context": 7}
        )
        assert_422(status, body, ["body", "analysis_context"], "string_type")


async def test_search_finds_steps_by_text(atlas_http: aiohttp.ClientSession) -> None:
    _, run = await call(atlas_http, "POST", "test-runs", json={"title": "PDU", "system_id": SYSTEM_ID})
    _, card = await call(
        atlas_http, "POST", f"test-runs/{run['uuid']}/cards", json={"title": "Overvoltage protection"}
    )
    await call(
        atlas_http,
        "POST",
        f"test-runs/{run['uuid']}/cards/{card['uuid']}/steps",
        json={"title": "Check undervoltage trip"},
    )
    _, found = await call(atlas_http, "GET", "test-runs/search?q=UNDERVOLTAGE&component_types=step")
    assert found["total_count"] == 1
    [match] = found["results"][0]["matches"]
    assert match["path"] == "Overvoltage protection > Check undervoltage trip"
    status, body = await call(atlas_http, "GET", "test-runs/search")
    assert_422(status, body, ["query", "q"], "missing")


# --- jobs -------------------------------------------------------------------------------------------


async def test_job_lifecycle(atlas_http: aiohttp.ClientSession) -> None:
    status, body = await call(atlas_http, "POST", "jobs", json={"job_type": "a", "config": {"job_type": "b"}})
    assert_422(status, body, ["body"], "value_error")
    _, job = await call(atlas_http, "POST", "jobs", json={"job_type": "generate_issue"})
    assert job["config"] == {"job_type": "generate_issue"} and job["updated_at"] is None
    assert await call(atlas_http, "GET", f"jobs/{job['uuid']}/latest-run") == (204, None)
    status, body = await call(atlas_http, "POST", "job-runs", json={"job_id": "nope"})
    assert_422(status, body, ["body", "job_id"], "value_error")
    _, run = await call(atlas_http, "POST", "job-runs", json={"job_id": job["uuid"], "config": {"extra": 1}})
    assert run["status"] == "pending" and run["config"] == {"job_type": "generate_issue", "extra": 1}
    _, cancelled = await call(atlas_http, "POST", f"job-runs/{run['uuid']}/cancel")
    assert cancelled == {"message": f"Job run {run['uuid']} cancelled", "cancelled_count": 1}
    _, again = await call(atlas_http, "POST", f"job-runs/{run['uuid']}/cancel")
    assert again["cancelled_count"] == 0
    _, runs = await call(atlas_http, "GET", "job-runs?statuses=cancelled")
    assert [r["uuid"] for r in runs["items"]] == [run["uuid"]]
    assert await call(atlas_http, "DELETE", f"jobs/{job['uuid']}") == (
        200,
        {"message": f"Job {job['uuid']} soft deleted"},
    )
    _, jobs = await call(atlas_http, "GET", "jobs")
    assert jobs == {"items": [], "count": 0}
    _, deleted = await call(atlas_http, "GET", f"jobs/{job['uuid']}")
    assert deleted["is_deleted"] is True


# --- state ------------------------------------------------------------------------------------------


async def test_state_shows_what_was_created_without_bytes_or_token(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    payload = b"t,v\n0,12.1\n"
    session_id, attachments = await new_session_with_files(atlas_http, [("evidence.csv", payload)])
    issue = await new_issue(
        atlas_http, session_ids=[session_id], attachment_ids=[attachments[0]["attachment_id"]]
    )
    await call(atlas_http, "POST", f"issues/{issue['uuid']}/comments", json={"content": "narrative"})

    async with atlas_http.get("_emulator/state") as resp:
        over_http = await resp.json()
    assert over_http["counts"] == {
        "sessions": 1,
        "attachments": 1,
        "issues": 1,
        "comments": 1,
        "test_runs": 0,
        "jobs": 0,
        "job_runs": 0,
    }
    [attachment] = over_http["sessions"][0]["attachments"]
    assert attachment["size"] == len(payload) and attachment["sha256"] == hashlib.sha256(payload).hexdigest()
    assert over_http["issues"][0]["comments"][0]["content"] == "narrative"
    assert over_http["issues"][0]["session_ids"] == [session_id]

    dump = tmp_path / "atlas-state.json"
    atlas_emulator.dump_state(dump)
    text = dump.read_text()
    assert json.loads(text)["counts"] == over_http["counts"]
    assert atlas_emulator.token not in text and atlas_emulator.token not in json.dumps(over_http)
    assert payload.decode() not in text
