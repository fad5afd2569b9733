"""Outbox job: register an uploaded segment on its Atlas test run (`POST /test-runs/{id}/data`),
associated with its step and card (or with the run alone, for frames between steps).

Payload `{file_name, content_type, run_id?, card_id?, step_id?}`; deps: the S3 upload job (its result
gives `s3_url` and `file_size`) and, when their ids were not known at enqueue time, the step's (or the
run's) creation job, whose result gives the ids. Result `{data_id, s3_url}`.

No duplicates after an unknown outcome: the page documents `GET /test-runs/{id}/data` (every
registered file with its `s3_url`), and each segment has its own S3 URL. The handler looks the URL
up before every POST, not only after an unknown outcome: a segment enqueued twice (a crash between
the enqueue and the record of it) still gets one registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.errors import AtlasError
from edge_agent.atlas.job_support import delivery_error, resolve
from edge_agent.outbox import Job, Json, Permanent

KIND_REGISTER = "atlas.test_run_data"


def _data_path(run_id: str) -> str:
    return f"/test-runs/{quote(run_id, safe='')}/data"


class RegisterHandler:
    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    def _fields(self, job: Job, deps: Mapping[int, Json]) -> tuple[str, Json]:
        p = job.payload
        run_id = str(resolve(p, deps, "run_id"))
        s3_url, size = resolve(p, deps, "s3_url"), resolve(p, deps, "file_size")
        body: Json = {
            "file_name": str(p["file_name"]),
            "s3_url": str(s3_url),
            "file_size": int(size),
            "content_type": str(p.get("content_type") or "application/octet-stream"),
        }
        association: dict[str, str] = {}
        if p.get("associate") == "step":
            association = {
                "test_card_id": str(resolve(p, deps, "card_id")),
                "test_step_id": str(resolve(p, deps, "step_id")),
            }
        if association:
            body["associate_with"] = association
        return run_id, body

    async def _find(self, run_id: str, s3_url: str) -> Json | None:
        try:
            answer = await self.client.call("GET", f"/test-runs/{quote(run_id, safe='')}/data")
        except AtlasError as err:
            raise delivery_error(err) from None
        items: Any = answer.get("items", []) if isinstance(answer, dict) else answer
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("s3_url") == s3_url and item.get("uuid"):
                return {"data_id": str(item["uuid"]), "s3_url": s3_url}
        return None

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        run_id, body = self._fields(job, deps)
        found = await self._find(run_id, str(body["s3_url"]))
        if found is not None:
            return found
        try:
            answer = await self.client.call(
                "POST", f"/test-runs/{quote(run_id, safe='')}/data", json_body=body
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        if not isinstance(answer, dict) or not answer.get("uuid"):
            raise Permanent(None, f"unexpected answer to the data registration: {str(answer)[:300]}")
        return {"data_id": str(answer["uuid"]), "s3_url": body["s3_url"]}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        run_id, body = self._fields(job, deps)
        return await self._find(run_id, str(body["s3_url"]))
