"""Atlas API emulator: an aiohttp server speaking shared/api/atlas-*.md under `/api/v1`, Bearer auth.

Users demo offline against it and every test of the Atlas client talks to it over loopback, so it
follows the pages' paths, bodies, `{items, count}` envelopes and timestamps. The rules live in the
sans-I/O `AtlasStore`; this module is the HTTP adapter plus the admin routes (faults, state, refuse,
raw attachment bytes).

Status codes, INFERRED (the pages do not say 200 vs 201): POST creates answer 201 (sessions, issues,
comments, test runs, cards, steps, data, reports, jobs, job runs); reads, updates and
`upload-files` answer 200; deletes answer 204, except `DELETE /jobs/{id}` which answers 200 with the
documented message. A client must accept 200 or 201 for a create.
Errors, INFERRED FastAPI shapes: 401 {"detail": "Not authenticated"}, unknown ids 404
{"detail": "Not found"}, validation 422 {"detail": [{"type", "loc", "msg", "input"}, ...]}.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ValidationError

from edge_agent.config import EmulatorSection
from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_records import InvalidReference, Json, NotFound, Quirks
from edge_agent.emulators.atlas_store import AtlasStore
from edge_agent.emulators.common import (
    ADMIN_PREFIX,
    EmulatorServer,
    FaultInjector,
    FaultSettings,
    Handler,
    add_admin_routes,
    bearer_auth_middleware,
    iso_at,
)
from edge_agent.logs import get_logger

log = get_logger(__name__)

API_PREFIX = "/api/v1"
# Evidence files are small, but a demo may upload a long capture; aiohttp's default is 1 MiB.
MAX_REQUEST_BYTES = 256 * 1024 * 1024

_B = TypeVar("_B", bound=BaseModel)
_Q = TypeVar("_Q", bound=m.Query)


class RequestInvalid(Exception):
    """A 422: FastAPI-style `detail` items."""

    def __init__(self, items: list[Json]) -> None:
        super().__init__("request invalid")
        self.items = items


def _fastapi_items(exc: ValidationError, where: str) -> list[Json]:
    return [
        {"type": e["type"], "loc": [where, *e["loc"]], "msg": e["msg"], "input": e["input"]}
        for e in exc.errors(include_url=False, include_context=False)
    ]


async def parse_body(request: web.Request, model: type[_B]) -> _B:
    raw = await request.read()
    if not raw.strip():
        raise RequestInvalid([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        data = json.loads(raw)
    except ValueError as exc:
        item = {"type": "json_invalid", "loc": ["body", 0], "msg": f"JSON decode error: {exc}", "input": {}}
        raise RequestInvalid([item]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid(_fastapi_items(exc, "body")) from None


def parse_query(request: web.Request, model: type[_Q]) -> _Q:
    data: dict[str, Any] = {}
    for key in request.query:
        data[key] = request.query.getall(key) if key in model.REPEATABLE else request.query[key]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid(_fastapi_items(exc, "query")) from None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _no_content() -> web.Response:
    return web.Response(status=204)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns the store's and the parser's exceptions, and aiohttp's own 404/405, into FastAPI bodies."""
    try:
        return await handler(request)
    except NotFound:
        return _json({"detail": "Not found"}, 404)
    except InvalidReference as exc:
        return _json({"detail": [exc.item]}, 422)
    except RequestInvalid as exc:
        return _json({"detail": exc.items}, 422)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json({"detail": exc.reason}, exc.status)


def _quirks(settings: FaultSettings) -> Quirks:
    return Quirks(
        oldest_first=settings.list_order == "oldest_first",
        null_attachment_id=settings.null_attachment_id,
        null_issue_status=settings.null_issue_status,
        soft_delete_comments=settings.soft_delete_comments,
        report_delay=settings.report_delay,
        report_outcome=settings.report_outcome,
    )


def _unauthorized() -> web.Response:
    return _json({"detail": "Not authenticated"}, 401)


async def _read_uploads(request: web.Request) -> list[tuple[str, str, bytes]]:
    """Every multipart part named `files`, in order: (filename, content type, bytes)."""
    files: list[tuple[str, str, bytes]] = []
    if request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name == "files":
                    data = bytes(await part.read(decode=True))
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    files.append((part.filename or "upload", content_type, data))
                elif part is not None:
                    await part.release()
        except ValueError as exc:
            item = {
                "type": "value_error",
                "loc": ["body"],
                "msg": f"malformed multipart body: {exc}",
                "input": None,
            }
            raise RequestInvalid([item]) from None
    if not files:
        raise RequestInvalid(
            [{"type": "missing", "loc": ["body", "files"], "msg": "Field required", "input": None}]
        )
    return files


Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


class AtlasApi:
    """The `/api/v1` handlers: parse, call the store, shape the answer."""

    def __init__(self, store: AtlasStore) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        p = API_PREFIX
        # Fixed paths (`/issues/metrics`, `/test-runs/search`, `/jobs/schemas`) come before the `{id}`
        # patterns they would otherwise match: aiohttp resolves in registration order.
        return [
            ("POST", f"{p}/sessions", self.create_session),
            ("GET", f"{p}/sessions", self.list_sessions),
            ("GET", f"{p}/sessions/{{session_id}}", self.get_session),
            ("PUT", f"{p}/sessions/{{session_id}}", self.update_session),
            ("DELETE", f"{p}/sessions/{{session_id}}", self.delete_session),
            ("POST", f"{p}/sessions/{{session_id}}/upload-files", self.upload_files),
            ("DELETE", f"{p}/sessions/{{session_id}}/attachments/{{attachment_id}}", self.delete_attachment),
            ("POST", f"{p}/issues", self.create_issue),
            ("GET", f"{p}/issues", self.list_issues),
            ("GET", f"{p}/issues/metrics", self.metrics),
            ("GET", f"{p}/issues/{{issue_id}}", self.get_issue),
            ("PATCH", f"{p}/issues/{{issue_id}}", self.update_issue),
            ("DELETE", f"{p}/issues/{{issue_id}}", self.delete_issue),
            ("GET", f"{p}/issues/{{issue_id}}/comments", self.list_comments),
            ("POST", f"{p}/issues/{{issue_id}}/comments", self.add_comment),
            ("PATCH", f"{p}/issues/{{issue_id}}/comments/{{comment_id}}", self.update_comment),
            ("DELETE", f"{p}/issues/{{issue_id}}/comments/{{comment_id}}", self.delete_comment),
            ("GET", f"{p}/issues/{{issue_id}}/files", self.issue_files),
            ("POST", f"{p}/test-runs", self.create_test_run),
            ("GET", f"{p}/test-runs", self.list_test_runs),
            ("GET", f"{p}/test-runs/search", self.search_test_runs),
            ("GET", f"{p}/test-runs/{{run_id}}", self.get_test_run),
            ("PATCH", f"{p}/test-runs/{{run_id}}", self.update_test_run),
            ("DELETE", f"{p}/test-runs/{{run_id}}", self.delete_test_run),
            ("POST", f"{p}/test-runs/{{run_id}}/data", self.add_data),
            ("GET", f"{p}/test-runs/{{run_id}}/data", self.list_data),
            ("DELETE", f"{p}/test-runs/{{run_id}}/data/{{file_id}}", self.delete_data),
            ("POST", f"{p}/test-runs/{{run_id}}/cards", self.add_card),
            ("PATCH", f"{p}/test-runs/{{run_id}}/cards/{{card_id}}", self.update_card),
            ("DELETE", f"{p}/test-runs/{{run_id}}/cards/{{card_id}}", self.delete_card),
            ("POST", f"{p}/test-runs/{{run_id}}/cards/{{card_id}}/steps", self.add_step),
            ("PATCH", f"{p}/test-runs/{{run_id}}/cards/{{card_id}}/steps/{{step_id}}", self.update_step),
            ("DELETE", f"{p}/test-runs/{{run_id}}/cards/{{card_id}}/steps/{{step_id}}", self.delete_step),
            ("POST", f"{p}/test-runs/{{run_id}}/reports", self.create_report),
            ("GET", f"{p}/test-runs/{{run_id}}/reports", self.list_reports),
            ("GET", f"{p}/test-runs/{{run_id}}/reports/{{report_id}}", self.get_report),
            ("GET", f"{p}/jobs/schemas", self.job_schemas),
            ("POST", f"{p}/jobs", self.create_job),
            ("GET", f"{p}/jobs", self.list_jobs),
            ("GET", f"{p}/jobs/{{job_id}}", self.get_job),
            ("GET", f"{p}/jobs/{{job_id}}/latest-run", self.latest_run),
            ("PATCH", f"{p}/jobs/{{job_id}}", self.update_job),
            ("DELETE", f"{p}/jobs/{{job_id}}", self.delete_job),
            ("POST", f"{p}/job-runs", self.create_job_run),
            ("GET", f"{p}/job-runs", self.list_job_runs),
            ("GET", f"{p}/job-runs/{{job_run_id}}", self.get_job_run),
            ("POST", f"{p}/job-runs/{{job_run_id}}/cancel", self.cancel_job_run),
        ]

    # sessions
    async def create_session(self, request: web.Request) -> web.Response:
        return _json(self.store.create_session(await parse_body(request, m.SessionCreate)), 201)

    async def list_sessions(self, request: web.Request) -> web.Response:
        return _json(self.store.list_sessions())

    async def get_session(self, request: web.Request) -> web.Response:
        return _json(self.store.get_session(request.match_info["session_id"]))

    async def update_session(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        self.store.get_session(sid)  # 404 before 422, as a path parameter is resolved first
        return _json(self.store.update_session(sid, await parse_body(request, m.SessionUpdate)))

    async def delete_session(self, request: web.Request) -> web.Response:
        self.store.delete_session(request.match_info["session_id"])
        return _no_content()

    async def upload_files(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        self.store.get_session(sid)
        return _json(self.store.upload(sid, await _read_uploads(request)))

    async def delete_attachment(self, request: web.Request) -> web.Response:
        self.store.delete_attachment(request.match_info["session_id"], request.match_info["attachment_id"])
        return _no_content()

    # issues
    async def create_issue(self, request: web.Request) -> web.Response:
        return _json(self.store.create_issue(await parse_body(request, m.IssueCreate)), 201)

    async def list_issues(self, request: web.Request) -> web.Response:
        return _json(self.store.list_issues(parse_query(request, m.IssueListQuery)))

    async def metrics(self, request: web.Request) -> web.Response:
        return _json(self.store.metrics())

    async def get_issue(self, request: web.Request) -> web.Response:
        return _json(self.store.get_issue(request.match_info["issue_id"]))

    async def update_issue(self, request: web.Request) -> web.Response:
        iid = request.match_info["issue_id"]
        self.store.get_issue(iid)
        return _json(self.store.update_issue(iid, await parse_body(request, m.IssueUpdate)))

    async def delete_issue(self, request: web.Request) -> web.Response:
        self.store.delete_issue(request.match_info["issue_id"])
        return _no_content()

    async def list_comments(self, request: web.Request) -> web.Response:
        query = parse_query(request, m.CommentListQuery)
        return _json(self.store.list_comments(request.match_info["issue_id"], query))

    async def add_comment(self, request: web.Request) -> web.Response:
        iid = request.match_info["issue_id"]
        self.store.get_issue(iid)
        return _json(self.store.add_comment(iid, await parse_body(request, m.CommentCreate)), 201)

    async def update_comment(self, request: web.Request) -> web.Response:
        iid, cid = request.match_info["issue_id"], request.match_info["comment_id"]
        body = await parse_body(request, m.CommentUpdate)
        return _json(self.store.update_comment(iid, cid, body))

    async def delete_comment(self, request: web.Request) -> web.Response:
        self.store.delete_comment(request.match_info["issue_id"], request.match_info["comment_id"])
        return _no_content()

    async def issue_files(self, request: web.Request) -> web.Response:
        query = parse_query(request, m.IssueFilesQuery)
        return _json(self.store.issue_files(request.match_info["issue_id"], query))

    # test runs
    async def create_test_run(self, request: web.Request) -> web.Response:
        return _json(self.store.create_test_run(await parse_body(request, m.TestRunCreate)), 201)

    async def list_test_runs(self, request: web.Request) -> web.Response:
        return _json(self.store.list_test_runs(parse_query(request, m.TestRunListQuery)))

    async def search_test_runs(self, request: web.Request) -> web.Response:
        return _json(self.store.search_test_runs(parse_query(request, m.TestRunSearchQuery)))

    async def get_test_run(self, request: web.Request) -> web.Response:
        return _json(self.store.get_test_run(request.match_info["run_id"]))

    async def update_test_run(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return _json(self.store.update_test_run(rid, await parse_body(request, m.TestRunUpdate)))

    async def delete_test_run(self, request: web.Request) -> web.Response:
        self.store.delete_test_run(request.match_info["run_id"])
        return _no_content()

    async def add_data(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return _json(self.store.add_data(rid, await parse_body(request, m.DataFileCreate)), 201)

    async def list_data(self, request: web.Request) -> web.Response:
        return _json(self.store.list_data(request.match_info["run_id"]))

    async def delete_data(self, request: web.Request) -> web.Response:
        self.store.delete_data(request.match_info["run_id"], request.match_info["file_id"])
        return _no_content()

    async def add_card(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return _json(self.store.add_card(rid, await parse_body(request, m.CardCreate)), 201)

    async def update_card(self, request: web.Request) -> web.Response:
        rid, cid = request.match_info["run_id"], request.match_info["card_id"]
        return _json(self.store.update_card(rid, cid, await parse_body(request, m.CardUpdate)))

    async def delete_card(self, request: web.Request) -> web.Response:
        self.store.delete_card(request.match_info["run_id"], request.match_info["card_id"])
        return _no_content()

    async def add_step(self, request: web.Request) -> web.Response:
        rid, cid = request.match_info["run_id"], request.match_info["card_id"]
        return _json(self.store.add_step(rid, cid, await parse_body(request, m.StepCreate)), 201)

    async def update_step(self, request: web.Request) -> web.Response:
        mi = request.match_info
        body = await parse_body(request, m.StepUpdate)
        return _json(self.store.update_step(mi["run_id"], mi["card_id"], mi["step_id"], body))

    async def delete_step(self, request: web.Request) -> web.Response:
        mi = request.match_info
        self.store.delete_step(mi["run_id"], mi["card_id"], mi["step_id"])
        return _no_content()

    async def create_report(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return _json(self.store.create_report(rid, await parse_body(request, m.ReportCreate)), 201)

    async def list_reports(self, request: web.Request) -> web.Response:
        return _json(self.store.list_reports(request.match_info["run_id"]))

    async def get_report(self, request: web.Request) -> web.Response:
        return _json(self.store.get_report(request.match_info["run_id"], request.match_info["report_id"]))

    # jobs
    async def job_schemas(self, request: web.Request) -> web.Response:
        return _json(self.store.job_schemas())

    async def create_job(self, request: web.Request) -> web.Response:
        return _json(self.store.create_job(await parse_body(request, m.JobCreate)), 201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        return _json(self.store.list_jobs(parse_query(request, m.JobListQuery)))

    async def get_job(self, request: web.Request) -> web.Response:
        return _json(self.store.get_job(request.match_info["job_id"]))

    async def latest_run(self, request: web.Request) -> web.Response:
        run = self.store.latest_run(request.match_info["job_id"])
        return _no_content() if run is None else _json(run)

    async def update_job(self, request: web.Request) -> web.Response:
        jid = request.match_info["job_id"]
        self.store.get_job(jid)
        return _json(self.store.update_job(jid, await parse_body(request, m.JobUpdate)))

    async def delete_job(self, request: web.Request) -> web.Response:
        return _json(self.store.delete_job(request.match_info["job_id"]))

    async def create_job_run(self, request: web.Request) -> web.Response:
        return _json(self.store.create_job_run(await parse_body(request, m.JobRunCreate)), 201)

    async def list_job_runs(self, request: web.Request) -> web.Response:
        return _json(self.store.list_job_runs(parse_query(request, m.JobRunListQuery)))

    async def get_job_run(self, request: web.Request) -> web.Response:
        return _json(self.store.get_job_run(request.match_info["job_run_id"]))

    async def cancel_job_run(self, request: web.Request) -> web.Response:
        return _json(self.store.cancel_job_run(request.match_info["job_run_id"]))


class AtlasEmulator:
    """The Atlas emulator as a component: `async with AtlasEmulator(settings) as emu: emu.base_url`.

    `report_delay`/`report_polls`: a report (and a job run) completes that many seconds after its
    creation, or after that many GETs of it (0 = delay only), whichever comes first. The fault
    switches `report_delay` and `report_outcome` change both for reports (and job runs: a report is
    one, `job_run_id`) requested afterwards; a report that ends `failed` or `cancelled` has no content
    and no summary.
    """

    def __init__(
        self,
        settings: EmulatorSection,
        *,
        host: str | None = None,
        port: int | None = None,
        seed: int | None = None,
        report_delay: float = 1.0,
        report_polls: int = 0,
    ) -> None:
        self.settings = settings
        self.token = settings.atlas_token.get_secret_value()
        self.faults = FaultInjector(settings.faults, seed=seed)
        self.store = AtlasStore(
            lambda: iso_at(self.faults.now()),
            time.monotonic,
            report_delay=report_delay,
            report_polls=report_polls,
            quirks=lambda: _quirks(self.faults.settings),
        )
        self.app = web.Application(
            client_max_size=MAX_REQUEST_BYTES,
            middlewares=[
                self.faults.middleware,
                bearer_auth_middleware(lambda: self.token, API_PREFIX, _unauthorized),
                error_middleware,
            ],
        )
        for method, path, handler in AtlasApi(self.store).routes():
            self.app.router.add_route(method, path, handler)
        add_admin_routes(self.app, self.faults, self.state, lambda: self.server)
        self.app.router.add_get(f"{ADMIN_PREFIX}/attachments/{{attachment_id}}", self._raw_attachment)
        self.server = EmulatorServer(
            self.app,
            host=host if host is not None else settings.host,
            port=port if port is not None else settings.atlas_port,
        )

    @property
    def base_url(self) -> str:
        """`ATLAS_URL` form: the API itself is at `base_url + "/api/v1"`."""
        return self.server.base_url

    @property
    def api_url(self) -> str:
        return self.server.base_url + API_PREFIX

    async def start(self) -> None:
        await self.server.start()
        log.info("atlas_emulator_started", url=self.base_url)

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> AtlasEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def state(self) -> Json:
        """What the emulated tenant holds (attachments as size + sha256), JSON-able, without the token."""
        return {
            "emulator": "atlas",
            "api_url": self.api_url,
            "faults": self.faults.settings.model_dump(),
            "faults_injected": dict(self.faults.injected),
            "requests": dict(self.faults.requests),
            **self.store.snapshot(),
        }

    def dump_state(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state(), indent=2), encoding="utf-8")

    def attachment_bytes(self, attachment_id: str) -> bytes:
        """The bytes uploaded as this attachment; KeyError when there is no such attachment."""
        try:
            return self.store.attachment_bytes(attachment_id)
        except NotFound:
            raise KeyError(attachment_id) from None

    def add_issue_file(self, issue_id: str, file_name: str, file_type: str, attachment_id: str) -> Json:
        """Populate `GET /issues/{id}/files` (live, Atlas itself attaches e.g. troubleshooting plans)."""
        return self.store.add_issue_file(issue_id, file_name, file_type, attachment_id)

    async def _raw_attachment(self, request: web.Request) -> web.Response:
        attachment = self.store.attachments.get(request.match_info["attachment_id"])
        if attachment is None:
            return _json({"detail": "Not found"}, 404)
        return web.Response(
            body=attachment.data,
            content_type=attachment.content_type.split(";")[0].strip() or "application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{attachment.name}"'},
        )
