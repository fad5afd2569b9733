"""Atlas API emulator: an aiohttp server speaking shared/api/atlas-*.md under `/api/v1`, Bearer auth.

Users demo offline against it and every test of the Atlas client talks to it over loopback, so it
follows the pages' paths, bodies, `{items, count}` envelopes and timestamps. The rules live in the
sans-I/O `AtlasStore`; the routes and handlers are atlas_api.py, the HTTP shapes atlas_http.py; this
module puts them together as a server, with the admin routes (faults, state, refuse, raw attachment
bytes).

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
from pathlib import Path
from types import TracebackType

from aiohttp import web

from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas_api import API_PREFIX as API_PREFIX  # tests and benchmarks build URLs with it
from edge_agent.emulators.atlas_api import AtlasApi
from edge_agent.emulators.atlas_http import error_middleware, reply, unauthorized
from edge_agent.emulators.atlas_records import Json, NotFound, Quirks
from edge_agent.emulators.atlas_store import AtlasStore
from edge_agent.emulators.common import add_admin_routes, iso_at
from edge_agent.emulators.faults import FaultInjector, FaultSettings
from edge_agent.emulators.server import ADMIN_PREFIX, EmulatorServer, bearer_auth_middleware
from edge_agent.logs import get_logger

log = get_logger(__name__)

# Evidence files are small, but a demo may upload a long capture; aiohttp's default is 1 MiB.
MAX_REQUEST_BYTES = 256 * 1024 * 1024


def _quirks(settings: FaultSettings) -> Quirks:
    return Quirks(
        oldest_first=settings.list_order == "oldest_first",
        null_attachment_id=settings.null_attachment_id,
        null_issue_status=settings.null_issue_status,
        soft_delete_comments=settings.soft_delete_comments,
        report_delay=settings.report_delay,
        report_outcome=settings.report_outcome,
    )


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
                bearer_auth_middleware(lambda: self.token, API_PREFIX, unauthorized),
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
            return reply({"detail": "Not found"}, 404)
        return web.Response(
            body=attachment.data,
            content_type=attachment.content_type.split(";")[0].strip() or "application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{attachment.name}"'},
        )
