"""The Atlas emulator's `/api/v1` routes and their handlers: each parses its request, calls the store
(atlas_store.py) and shapes the answer (status codes as the module doc of atlas.py says)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_http import no_content, parse_body, parse_query, read_uploads, reply
from edge_agent.emulators.atlas_store import AtlasStore

API_PREFIX = "/api/v1"


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
        return reply(self.store.create_session(await parse_body(request, m.SessionCreate)), 201)

    async def list_sessions(self, request: web.Request) -> web.Response:
        return reply(self.store.list_sessions())

    async def get_session(self, request: web.Request) -> web.Response:
        return reply(self.store.get_session(request.match_info["session_id"]))

    async def update_session(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        self.store.get_session(sid)  # 404 before 422, as a path parameter is resolved first
        return reply(self.store.update_session(sid, await parse_body(request, m.SessionUpdate)))

    async def delete_session(self, request: web.Request) -> web.Response:
        self.store.delete_session(request.match_info["session_id"])
        return no_content()

    async def upload_files(self, request: web.Request) -> web.Response:
        sid = request.match_info["session_id"]
        self.store.get_session(sid)
        return reply(self.store.upload(sid, await read_uploads(request)))

    async def delete_attachment(self, request: web.Request) -> web.Response:
        self.store.delete_attachment(request.match_info["session_id"], request.match_info["attachment_id"])
        return no_content()

    # issues
    async def create_issue(self, request: web.Request) -> web.Response:
        return reply(self.store.create_issue(await parse_body(request, m.IssueCreate)), 201)

    async def list_issues(self, request: web.Request) -> web.Response:
        return reply(self.store.list_issues(parse_query(request, m.IssueListQuery)))

    async def metrics(self, request: web.Request) -> web.Response:
        return reply(self.store.metrics())

    async def get_issue(self, request: web.Request) -> web.Response:
        return reply(self.store.get_issue(request.match_info["issue_id"]))

    async def update_issue(self, request: web.Request) -> web.Response:
        iid = request.match_info["issue_id"]
        self.store.get_issue(iid)
        return reply(self.store.update_issue(iid, await parse_body(request, m.IssueUpdate)))

    async def delete_issue(self, request: web.Request) -> web.Response:
        self.store.delete_issue(request.match_info["issue_id"])
        return no_content()

    async def list_comments(self, request: web.Request) -> web.Response:
        query = parse_query(request, m.CommentListQuery)
        return reply(self.store.list_comments(request.match_info["issue_id"], query))

    async def add_comment(self, request: web.Request) -> web.Response:
        iid = request.match_info["issue_id"]
        self.store.get_issue(iid)
        return reply(self.store.add_comment(iid, await parse_body(request, m.CommentCreate)), 201)

    async def update_comment(self, request: web.Request) -> web.Response:
        iid, cid = request.match_info["issue_id"], request.match_info["comment_id"]
        body = await parse_body(request, m.CommentUpdate)
        return reply(self.store.update_comment(iid, cid, body))

    async def delete_comment(self, request: web.Request) -> web.Response:
        self.store.delete_comment(request.match_info["issue_id"], request.match_info["comment_id"])
        return no_content()

    async def issue_files(self, request: web.Request) -> web.Response:
        query = parse_query(request, m.IssueFilesQuery)
        return reply(self.store.issue_files(request.match_info["issue_id"], query))

    # test runs
    async def create_test_run(self, request: web.Request) -> web.Response:
        return reply(self.store.create_test_run(await parse_body(request, m.TestRunCreate)), 201)

    async def list_test_runs(self, request: web.Request) -> web.Response:
        return reply(self.store.list_test_runs(parse_query(request, m.TestRunListQuery)))

    async def search_test_runs(self, request: web.Request) -> web.Response:
        return reply(self.store.search_test_runs(parse_query(request, m.TestRunSearchQuery)))

    async def get_test_run(self, request: web.Request) -> web.Response:
        return reply(self.store.get_test_run(request.match_info["run_id"]))

    async def update_test_run(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return reply(self.store.update_test_run(rid, await parse_body(request, m.TestRunUpdate)))

    async def delete_test_run(self, request: web.Request) -> web.Response:
        self.store.delete_test_run(request.match_info["run_id"])
        return no_content()

    async def add_data(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return reply(self.store.add_data(rid, await parse_body(request, m.DataFileCreate)), 201)

    async def list_data(self, request: web.Request) -> web.Response:
        return reply(self.store.list_data(request.match_info["run_id"]))

    async def delete_data(self, request: web.Request) -> web.Response:
        self.store.delete_data(request.match_info["run_id"], request.match_info["file_id"])
        return no_content()

    async def add_card(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return reply(self.store.add_card(rid, await parse_body(request, m.CardCreate)), 201)

    async def update_card(self, request: web.Request) -> web.Response:
        rid, cid = request.match_info["run_id"], request.match_info["card_id"]
        return reply(self.store.update_card(rid, cid, await parse_body(request, m.CardUpdate)))

    async def delete_card(self, request: web.Request) -> web.Response:
        self.store.delete_card(request.match_info["run_id"], request.match_info["card_id"])
        return no_content()

    async def add_step(self, request: web.Request) -> web.Response:
        rid, cid = request.match_info["run_id"], request.match_info["card_id"]
        return reply(self.store.add_step(rid, cid, await parse_body(request, m.StepCreate)), 201)

    async def update_step(self, request: web.Request) -> web.Response:
        mi = request.match_info
        body = await parse_body(request, m.StepUpdate)
        return reply(self.store.update_step(mi["run_id"], mi["card_id"], mi["step_id"], body))

    async def delete_step(self, request: web.Request) -> web.Response:
        mi = request.match_info
        self.store.delete_step(mi["run_id"], mi["card_id"], mi["step_id"])
        return no_content()

    async def create_report(self, request: web.Request) -> web.Response:
        rid = request.match_info["run_id"]
        self.store.get_test_run(rid)
        return reply(self.store.create_report(rid, await parse_body(request, m.ReportCreate)), 201)

    async def list_reports(self, request: web.Request) -> web.Response:
        return reply(self.store.list_reports(request.match_info["run_id"]))

    async def get_report(self, request: web.Request) -> web.Response:
        return reply(self.store.get_report(request.match_info["run_id"], request.match_info["report_id"]))

    # jobs
    async def job_schemas(self, request: web.Request) -> web.Response:
        return reply(self.store.job_schemas())

    async def create_job(self, request: web.Request) -> web.Response:
        return reply(self.store.create_job(await parse_body(request, m.JobCreate)), 201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        return reply(self.store.list_jobs(parse_query(request, m.JobListQuery)))

    async def get_job(self, request: web.Request) -> web.Response:
        return reply(self.store.get_job(request.match_info["job_id"]))

    async def latest_run(self, request: web.Request) -> web.Response:
        run = self.store.latest_run(request.match_info["job_id"])
        return no_content() if run is None else reply(run)

    async def update_job(self, request: web.Request) -> web.Response:
        jid = request.match_info["job_id"]
        self.store.get_job(jid)
        return reply(self.store.update_job(jid, await parse_body(request, m.JobUpdate)))

    async def delete_job(self, request: web.Request) -> web.Response:
        return reply(self.store.delete_job(request.match_info["job_id"]))

    async def create_job_run(self, request: web.Request) -> web.Response:
        return reply(self.store.create_job_run(await parse_body(request, m.JobRunCreate)), 201)

    async def list_job_runs(self, request: web.Request) -> web.Response:
        return reply(self.store.list_job_runs(parse_query(request, m.JobRunListQuery)))

    async def get_job_run(self, request: web.Request) -> web.Response:
        return reply(self.store.get_job_run(request.match_info["job_run_id"]))

    async def cancel_job_run(self, request: web.Request) -> web.Response:
        return reply(self.store.cancel_job_run(request.match_info["job_run_id"]))
