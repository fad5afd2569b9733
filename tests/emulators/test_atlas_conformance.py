"""Every example request of docs/api/atlas-*.md, sent to the emulator as curl would send it (same
method, path, query, headers, JSON body or multipart `files` parts), checking the status code and every
documented response field with its type and nullability.

Status codes the pages leave open are INFERRED (see edge_agent/emulators/atlas.py): 201 for POST
creates, 200 for reads, updates and upload-files, 204 for deletes, 200 for DELETE /jobs/{id}.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.emulators.atlas import AtlasEmulator

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs" / "api"
SYSTEM_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")

# --- documented response shapes: field -> (kind, nullable) -----------------------------------------
# kinds: uuid, str, ts (Atlas timestamp), bool, int, float, array, object, or a nested schema name for
# arrays of objects ("[attachment]") checked recursively.

Schema = dict[str, tuple[str, bool]]

ATTACHMENT: Schema = {
    "attachment_id": ("uuid", True),
    "attachment_name": ("str", False),
    "attachment_type": ("str", False),
    "attachment_title": ("str", True),
    "attachment_description": ("str", True),
    "attachment_citation": ("str", True),
    "attachment_source_session_id": ("uuid", True),
    "attachment_created_by": ("str", False),
    "attachment_created_at": ("ts", False),
    "is_visible": ("bool", False),
}
SESSION_LIST_ITEM: Schema = {
    "session_id": ("uuid", False),
    "session_title": ("str", True),
    "session_description": ("str", True),
    "session_created_by": ("str", False),
    "session_created_at": ("ts", False),
    "imported_projects": ("array", False),
    "is_starred": ("bool", False),
    "starred_at": ("ts", True),
}
SESSION: Schema = {**SESSION_LIST_ITEM, "attachments": ("[attachment]", False)}
ISSUE: Schema = {
    "uuid": ("uuid", False),
    "title": ("str", False),
    "description": ("array", False),
    "status": ("str", True),
    "priority": ("str", True),
    "tags": ("array", False),
    "owner": ("str", False),
    "resolution_summary": ("str", True),
    "created_by": ("str", False),
    "created_at": ("ts", False),
    "sessions": ("[session_list_item]", False),
    "attachments": ("[attachment]", False),
    "session_attachments": ("[attachment]", False),
    "job_run_id": ("str", True),
}
COMMENT: Schema = {
    "uuid": ("uuid", False),
    "content": ("str", False),
    "attachments": ("[attachment]", False),
    "created_by": ("str", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", False),
    "is_edited": ("bool", False),
    "is_deleted": ("bool", False),
    "reactions": ("array", False),
}
ISSUE_FILE: Schema = {
    "uuid": ("uuid", False),
    "file_name": ("str", False),
    "file_type": ("str", False),
    "attachment_id": ("str", False),
    "created_at": ("ts", False),
}
PIE_CHART_DATA: Schema = {
    "title": ("str", False),
    "data": ("[pie_slice]", False),
    "colors": ("object", True),
    "display_config": ("object", True),
}
PIE_SLICE: Schema = {"label": ("str", False), "value": ("int", False), "color": ("str", True)}
CHART: Schema = {"chart_type": ("str", False), "chart_data": ("object", False)}
METRICS: Schema = {"metrics": ("[chart]", False)}
# Steps, cards, list items and data files: the pages give types but no nullability column; a field is
# nullable here only where the page's example shows null.
STEP: Schema = {
    "uuid": ("uuid", False),
    "title": ("str", False),
    "description": ("str", False),
    "order": ("int", False),
    "step_type": ("str", False),
    "execution_status": ("str", False),
    "exception": ("str", True),
    "started_at": ("str", True),
    "ended_at": ("str", True),
    "observations": ("array", False),
    "test_data": ("[data_file]", False),
    "issues": ("array", False),
    "reports": ("array", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", False),
}
CARD: Schema = {
    "uuid": ("uuid", False),
    "title": ("str", False),
    "description": ("str", False),
    "order": ("int", False),
    "test_steps": ("[step]", False),
    "issues": ("array", False),
    "test_data": ("[data_file]", False),
    "reports": ("array", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", False),
}
DATA_FILE: Schema = {
    "uuid": ("uuid", False),
    "file_name": ("str", False),
    "s3_url": ("str", False),
    "file_size": ("int", False),
    "content_type": ("str", False),
    "uploaded_by": ("str", False),
    "created_at": ("ts", False),
    "associations": ("array", False),
}
REPORT: Schema = {
    "uuid": ("uuid", False),
    "title": ("str", False),
    "scope": ("str", False),
    "status": ("str", False),
    "content": ("str", False),
    "summary": ("str", False),
    "issues": ("array", False),
    "test_data": ("[data_file]", False),
    "job_run_id": ("str", True),
    "created_by": ("str", False),
    "created_at": ("ts", False),
}
TEST_RUN: Schema = {
    "uuid": ("uuid", False),
    "test_run_id": ("str", False),
    "title": ("str", False),
    "description": ("str", False),
    "system_id": ("uuid", False),
    "system_name": ("str", False),
    "test_cards": ("[card]", False),
    "test_data": ("[data_file]", False),
    "reports": ("[report]", False),
    "contributors": ("array", False),
    "created_by": ("str", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", False),
}
TEST_RUN_LIST_ITEM: Schema = {
    "uuid": ("uuid", False),
    "test_run_id": ("str", False),
    "title": ("str", False),
    "system_id": ("uuid", False),
    "system_name": ("str", False),
    "completion_pct": ("float", False),
    "step_status_counts": ("object", False),
    "contributors": ("array", False),
    "asset_names": ("array", False),
    "asset_count": ("int", False),
    "issue_count": ("int", False),
    "card_count": ("int", False),
    "file_count": ("int", False),
    "report_count": ("int", False),
    "created_by": ("str", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", False),
}
SEARCH: Schema = {"results": ("[search_result]", False), "total_count": ("int", False)}
SEARCH_RESULT: Schema = {
    "test_run": ("object", False),
    "score": ("float", False),
    "matches": ("[search_match]", False),
}
SEARCH_MATCH: Schema = {
    "component_type": ("str", False),
    "component_id": ("str", False),
    "component_title": ("str", False),
    "path": ("str", False),
    "snippet": ("str", False),
    "match_type": ("str", False),
}
JOB_SCHEMA: Schema = {
    "job_type": ("str", False),
    "display_name": ("str", False),
    "description": ("str", False),
    "user_facing_description": ("str", False),
    "json_schema": ("object", False),
    "creatable_on_ui": ("bool", False),
    "creatable_by_agent": ("bool", False),
    "visible_on_ui": ("bool", False),
}
JOB: Schema = {
    "uuid": ("uuid", False),
    "name": ("str", False),
    "description": ("str", True),
    "config": ("object", False),
    "is_deleted": ("bool", False),
    "created_by": ("str", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", True),
    "source_session_id": ("uuid", True),
    "source_project_id": ("uuid", True),
}
JOB_RUN: Schema = {
    "uuid": ("uuid", False),
    "job_id": ("uuid", False),
    "job_name": ("str", False),
    "config": ("object", False),
    "status": ("str", False),
    "created_by": ("str", False),
    "created_at": ("ts", False),
    "updated_at": ("ts", False),
    "is_deleted": ("bool", False),
    "output_references": ("array", False),
}
MESSAGE: Schema = {"message": ("str", False)}
CANCEL: Schema = {"message": ("str", False), "cancelled_count": ("int", False)}

SCHEMAS: dict[str, Schema] = {
    "attachment": ATTACHMENT,
    "session_list_item": SESSION_LIST_ITEM,
    "session": SESSION,
    "issue": ISSUE,
    "comment": COMMENT,
    "issue_file": ISSUE_FILE,
    "pie_slice": PIE_SLICE,
    "chart": CHART,
    "metrics": METRICS,
    "step": STEP,
    "card": CARD,
    "data_file": DATA_FILE,
    "report": REPORT,
    "test_run": TEST_RUN,
    "test_run_list_item": TEST_RUN_LIST_ITEM,
    "search": SEARCH,
    "search_result": SEARCH_RESULT,
    "search_match": SEARCH_MATCH,
    "job_schema": JOB_SCHEMA,
    "job": JOB,
    "job_run": JOB_RUN,
    "message": MESSAGE,
    "cancel": CANCEL,
}


def check_value(kind: str, value: Any, where: str) -> None:
    if kind.startswith("["):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check_object(item, kind[1:-1], f"{where}[{i}]")
    elif kind == "uuid":
        assert isinstance(value, str) and str(uuid.UUID(value)) == value.lower(), where
    elif kind == "ts":
        assert isinstance(value, str) and TIMESTAMP.match(value), f"{where}: {value!r}"
    elif kind == "float":
        assert isinstance(value, int | float) and not isinstance(value, bool), where
    else:
        expected = {"str": str, "bool": bool, "int": int, "array": list, "object": dict}[kind]
        assert isinstance(value, expected), f"{where}: {value!r} is not {kind}"
        if kind == "int":
            assert not isinstance(value, bool), where


def check_object(obj: Any, schema_name: str, where: str = "response") -> None:
    """Exactly the documented fields, each of its documented type (or null where nullable)."""
    schema = SCHEMAS[schema_name]
    assert isinstance(obj, dict), f"{where}: {obj!r}"
    assert set(obj) == set(schema), f"{where}: fields {sorted(obj)} != documented {sorted(schema)}"
    for name, (kind, nullable) in schema.items():
        if obj[name] is None:
            assert nullable, f"{where}.{name} is null but not nullable"
        else:
            check_value(kind, obj[name], f"{where}.{name}")
    if schema_name == "chart" and obj["chart_type"] == "pie_chart":
        check_object(obj["chart_data"], "pie_chart_data_", where + ".chart_data")
    if schema_name == "search_result":
        check_object(obj["test_run"], "test_run_list_item", where + ".test_run")


SCHEMAS["pie_chart_data_"] = PIE_CHART_DATA


# --- the examples, in the order a reader would run them -----------------------------------------


@dataclass(frozen=True)
class Example:
    page: str
    method: str
    url: str  # as in the curl line, after https://<tenant>.atlas.arenaphysica.com
    status: int
    shape: str  # "object", "envelope" ({items, count}), "array", "none"
    schema: str | None = None
    json: Any = None
    files: tuple[tuple[str, bytes], ...] = ()
    save: dict[str, str] = field(default_factory=dict)  # variable -> key in the response (object shape)


TELEMETRY = bytes(range(256)) * 4
CONFIG_JSON = b'{"rail": "3V3", "limit_v": 3.135}'

EXAMPLES: list[Example] = [
    # sessions
    Example(
        "sessions",
        "POST",
        "/api/v1/sessions",
        201,
        "object",
        "session",
        json={"title": "Motor anomaly investigation"},
        save={"SESSION_ID": "session_id"},
    ),
    Example("sessions", "GET", "/api/v1/sessions", 200, "envelope", "session_list_item"),
    Example("sessions", "GET", "/api/v1/sessions/$SESSION_ID", 200, "object", "session"),
    Example(
        "sessions",
        "PUT",
        "/api/v1/sessions/$SESSION_ID",
        200,
        "object",
        "session",
        json={"title": "Motor anomaly – root cause confirmed", "starred": True},
    ),
    Example(
        "sessions",
        "POST",
        "/api/v1/sessions/$SESSION_ID/upload-files",
        200,
        "array",
        "attachment",
        files=(("telemetry.bin", TELEMETRY), ("config.json", CONFIG_JSON)),
        save={"ATTACHMENT_ID": "0.attachment_id"},
    ),
    # issues
    Example(
        "issues",
        "POST",
        "/api/v1/issues",
        201,
        "object",
        "issue",
        json={
            "title": "Power rail undervoltage at startup",
            "description": [],
            "status": "open",
            "priority": "high",
            "tags": ["power", "startup"],
        },
        save={"ISSUE_ID": "uuid"},
    ),
    Example("issues", "GET", "/api/v1/issues?status=open&priority=high", 200, "envelope", "issue"),
    Example("issues", "GET", "/api/v1/issues/$ISSUE_ID", 200, "object", "issue"),
    Example(
        "issues",
        "PATCH",
        "/api/v1/issues/$ISSUE_ID",
        200,
        "object",
        "issue",
        json={"status": "in_progress", "owner": "engineer@example.com"},
    ),
    Example("issues", "GET", "/api/v1/issues/metrics", 200, "object", "metrics"),
    Example(
        "issues",
        "POST",
        "/api/v1/issues/$ISSUE_ID/comments",
        201,
        "object",
        "comment",
        json={"content": "Reproduced on bench. Voltage sag starts at C12. Isolating now."},
        save={"COMMENT_ID": "uuid"},
    ),
    Example("issues", "GET", "/api/v1/issues/$ISSUE_ID/comments", 200, "envelope", "comment"),
    Example(
        "issues",
        "PATCH",
        "/api/v1/issues/$ISSUE_ID/comments/$COMMENT_ID",
        200,
        "object",
        "comment",
        json={"content": "Confirmed C12 is root cause. Ordering replacement."},
    ),
    Example("issues", "GET", "/api/v1/issues/$ISSUE_ID/files", 200, "array", "issue_file"),
    Example("issues", "DELETE", "/api/v1/issues/$ISSUE_ID/comments/$COMMENT_ID", 204, "none"),
    Example("issues", "DELETE", "/api/v1/issues/$ISSUE_ID", 204, "none"),
    # test runs
    Example(
        "test-runs",
        "POST",
        "/api/v1/test-runs",
        201,
        "object",
        "test_run",
        json={"title": "Motor Controller Acceptance Test", "system_id": SYSTEM_ID},
        save={"RUN_ID": "uuid"},
    ),
    Example(
        "test-runs", "GET", "/api/v1/test-runs?system_id=$SYSTEM_ID", 200, "envelope", "test_run_list_item"
    ),
    Example("test-runs", "GET", "/api/v1/test-runs/$RUN_ID", 200, "object", "test_run"),
    Example(
        "test-runs",
        "PATCH",
        "/api/v1/test-runs/$RUN_ID",
        200,
        "object",
        "test_run",
        json={"title": "Motor Controller Acceptance Test – Rev 2"},
    ),
    Example(
        "test-runs",
        "POST",
        "/api/v1/test-runs/$RUN_ID/data",
        201,
        "object",
        "data_file",
        json={
            "file_name": "motor_test_log.csv",
            "s3_url": "s3://your-bucket/test-data/motor_test_log.csv",
            "file_size": 204800,
            "content_type": "text/csv",
        },
        save={"FILE_ID": "uuid"},
    ),
    Example("test-runs", "GET", "/api/v1/test-runs/$RUN_ID/data", 200, "envelope", "data_file"),
    Example(
        "test-runs",
        "POST",
        "/api/v1/test-runs/$RUN_ID/cards",
        201,
        "object",
        "card",
        json={
            "title": "Overvoltage protection",
            "description": "Apply 13V to input, verify shutdown within 100ms",
        },
        save={"CARD_ID": "uuid"},
    ),
    Example(
        "test-runs",
        "PATCH",
        "/api/v1/test-runs/$RUN_ID/cards/$CARD_ID",
        200,
        "object",
        "card",
        json={"title": "Overvoltage protection – updated threshold"},
    ),
    Example(
        "test-runs",
        "POST",
        "/api/v1/test-runs/$RUN_ID/cards/$CARD_ID/steps",
        201,
        "object",
        "step",
        json={"title": "Apply 13V to input rail"},
        save={"STEP_ID": "uuid"},
    ),
    Example(
        "test-runs",
        "PATCH",
        "/api/v1/test-runs/$RUN_ID/cards/$CARD_ID/steps/$STEP_ID",
        200,
        "object",
        "step",
        json={"execution_status": "passed"},
    ),
    Example(
        "test-runs",
        "POST",
        "/api/v1/test-runs/$RUN_ID/reports",
        201,
        "object",
        "report",
        json={"scope": "run"},
        save={"REPORT_ID": "uuid"},
    ),
    Example("test-runs", "GET", "/api/v1/test-runs/$RUN_ID/reports", 200, "envelope", "report"),
    Example("test-runs", "GET", "/api/v1/test-runs/$RUN_ID/reports/$REPORT_ID", 200, "object", "report"),
    Example(
        "test-runs",
        "GET",
        "/api/v1/test-runs/search?q=undervoltage&system_id=$SYSTEM_ID",
        200,
        "object",
        "search",
    ),
    # Not on the page: the documented query matches nothing here, so this one checks result/match shapes.
    Example("extra", "GET", "/api/v1/test-runs/search?q=13V&system_id=$SYSTEM_ID", 200, "object", "search"),
    Example("test-runs", "DELETE", "/api/v1/test-runs/$RUN_ID/cards/$CARD_ID/steps/$STEP_ID", 204, "none"),
    Example("test-runs", "DELETE", "/api/v1/test-runs/$RUN_ID/cards/$CARD_ID", 204, "none"),
    Example("test-runs", "DELETE", "/api/v1/test-runs/$RUN_ID/data/$FILE_ID", 204, "none"),
    Example("test-runs", "DELETE", "/api/v1/test-runs/$RUN_ID", 204, "none"),
    # jobs
    Example("jobs", "GET", "/api/v1/jobs/schemas", 200, "array", "job_schema"),
    Example(
        "jobs",
        "POST",
        "/api/v1/jobs",
        201,
        "object",
        "job",
        json={
            "job_type": "metagraph_update",
            "config": {
                "job_type": "metagraph_update",
                "system_id_or_name": SYSTEM_ID,
                "additional_context": "Focus on the power distribution subsystem",
            },
        },
        save={"JOB_ID": "uuid"},
    ),
    Example("jobs", "GET", "/api/v1/jobs", 200, "envelope", "job"),
    Example("jobs", "GET", "/api/v1/jobs/$JOB_ID", 200, "object", "job"),
    Example(
        "jobs",
        "PATCH",
        "/api/v1/jobs/$JOB_ID",
        200,
        "object",
        "job",
        json={"config": {"job_type": "metagraph_update", "additional_context": "Focus on power rail issues"}},
    ),
    Example(
        "jobs",
        "POST",
        "/api/v1/job-runs",
        201,
        "object",
        "job_run",
        json={"job_id": "$JOB_ID"},
        save={"JOB_RUN_ID": "uuid"},
    ),
    Example("jobs", "GET", "/api/v1/jobs/$JOB_ID/latest-run", 200, "object", "job_run"),
    Example("jobs", "GET", "/api/v1/job-runs/$JOB_RUN_ID", 200, "object", "job_run"),
    Example("jobs", "GET", "/api/v1/job-runs?job_id=$JOB_ID", 200, "envelope", "job_run"),
    Example("jobs", "POST", "/api/v1/job-runs/$JOB_RUN_ID/cancel", 200, "object", "cancel"),
    Example("jobs", "DELETE", "/api/v1/jobs/$JOB_ID", 200, "object", "message"),
    # the session deletes last: the issue examples above link nothing, but keep the page order readable
    Example("sessions", "DELETE", "/api/v1/sessions/$SESSION_ID/attachments/$ATTACHMENT_ID", 204, "none"),
    Example("sessions", "DELETE", "/api/v1/sessions/$SESSION_ID", 204, "none"),
]


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$([A-Z_]+)", lambda mt: variables[mt.group(1)], value)
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    return value


def _lookup(body: Any, dotted: str) -> str:
    for key in dotted.split("."):
        body = body[int(key)] if key.isdigit() else body[key]
    assert isinstance(body, str)
    return body


async def _send(
    http: aiohttp.ClientSession, example: Example, variables: dict[str, str]
) -> aiohttp.ClientResponse:
    url = _substitute(example.url, variables).lstrip("/")
    if example.files:
        # curl -F "files=@name": one part per file, all named `files`, with the file name.
        form = aiohttp.FormData()
        for name, data in example.files:
            form.add_field("files", data, filename=name, content_type="application/octet-stream")
        return await http.request(example.method, url, data=form)
    if example.json is not None:
        # curl -H "Content-Type: application/json" -d '...'
        return await http.request(example.method, url, json=_substitute(example.json, variables))
    return await http.request(example.method, url)


async def test_every_documented_example(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    variables = {"SYSTEM_ID": SYSTEM_ID}
    for example in EXAMPLES:
        where = f"{example.method} {example.url}"
        async with await _send(atlas_http, example, variables) as resp:
            text = await resp.text()
            assert resp.status == example.status, f"{where}: {resp.status} {text}"
            if example.shape == "none":
                assert text == "", where
                continue
            assert resp.content_type == "application/json", where
            body = await resp.json()
        if example.shape == "envelope":
            assert set(body) == {"items", "count"}, where
            assert isinstance(body["count"], int) and body["count"] >= len(body["items"]) >= 1, where
            items = body["items"]
        elif example.shape == "array":
            assert isinstance(body, list) and body, where
            items = body
        else:
            items = [body]
        assert example.schema is not None
        for i, item in enumerate(items):
            check_object(item, example.schema, f"{where}[{i}]")
        for name, key in example.save.items():
            variables[name] = _lookup(body, key)
        if "ISSUE_ID" in example.save:
            # Only Atlas itself attaches issue files (troubleshooting plans): seed one to check the shape.
            atlas_emulator.add_issue_file(
                variables["ISSUE_ID"],
                "troubleshooting_plan.md",
                "troubleshooting_plan",
                variables["ATTACHMENT_ID"],
            )


async def test_examples_echo_what_was_sent(
    atlas_emulator: AtlasEmulator, atlas_http: aiohttp.ClientSession
) -> None:
    """The documented example responses' values, where they follow from the request."""
    async with atlas_http.post("api/v1/sessions", json={"title": "Motor anomaly investigation"}) as r:
        session = await r.json()
    assert session["session_title"] == "Motor anomaly investigation"
    assert (session["attachments"], session["imported_projects"], session["is_starred"]) == ([], [], False)
    assert session["session_description"] is None and session["starred_at"] is None

    form = aiohttp.FormData()
    form.add_field("files", TELEMETRY, filename="telemetry.bin")
    form.add_field("files", CONFIG_JSON, filename="config.json")
    async with atlas_http.post(f"api/v1/sessions/{session['session_id']}/upload-files", data=form) as r:
        uploaded = await r.json()
    assert [a["attachment_name"] for a in uploaded] == ["telemetry.bin", "config.json"]
    assert [a["attachment_type"] for a in uploaded] == ["bin", "json"]
    assert all(
        a["attachment_source_session_id"] == session["session_id"] and a["is_visible"] for a in uploaded
    )
    assert atlas_emulator.attachment_bytes(uploaded[0]["attachment_id"]) == TELEMETRY
    assert atlas_emulator.attachment_bytes(uploaded[1]["attachment_id"]) == CONFIG_JSON

    issue_body = {
        "title": "Power rail undervoltage at startup",
        "description": [],
        "status": "open",
        "priority": "high",
        "tags": ["power", "startup"],
    }
    async with atlas_http.post("api/v1/issues", json=issue_body) as r:
        issue = await r.json()
    assert {k: issue[k] for k in issue_body} == issue_body
    assert (
        issue["owner"] == "Unassigned" and issue["resolution_summary"] is None and issue["job_run_id"] is None
    )

    async with atlas_http.post("api/v1/test-runs", json={"title": "T", "system_id": SYSTEM_ID}) as r:
        run = await r.json()
    assert re.fullmatch(r"TR-\d{4}", run["test_run_id"]) and run["description"] == ""
    assert run["system_id"] == SYSTEM_ID
    async with atlas_http.post(f"api/v1/test-runs/{run['uuid']}/reports", json={"scope": "run"}) as r:
        report = await r.json()
    assert (report["status"], report["content"], report["summary"]) == ("pending", "", "")


def _documented_requests() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for page in sorted(DOCS_DIR.glob("atlas-*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r'curl (?:-X (\w+) )?"https://[^/"]+(/api/v1/[^"]*)"', text):
            found.add((match.group(1) or "GET", match.group(2)))
    return found


def test_the_examples_cover_every_curl_call_of_the_pages() -> None:
    documented = _documented_requests()
    assert len(documented) >= 40
    assert documented - {(e.method, e.url) for e in EXAMPLES} == set()
