"""The HTTP shapes of the Atlas emulator, as FastAPI would make them: JSON bodies and queries validated
into the pages' models (422 with `detail` items), the store's errors as 404/422 bodies, 401 without
a token, and the `files` parts of a multipart upload."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ValidationError

from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_records import InvalidReference, Json, NotFound
from edge_agent.emulators.server import Handler

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


def reply(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def no_content() -> web.Response:
    return web.Response(status=204)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns the store's and the parser's exceptions, and aiohttp's own 404/405, into FastAPI bodies."""
    try:
        return await handler(request)
    except NotFound:
        return reply({"detail": "Not found"}, 404)
    except InvalidReference as exc:
        return reply({"detail": [exc.item]}, 422)
    except RequestInvalid as exc:
        return reply({"detail": exc.items}, 422)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return reply({"detail": exc.reason}, exc.status)


def unauthorized() -> web.Response:
    return reply({"detail": "Not authenticated"}, 401)


async def read_uploads(request: web.Request) -> list[tuple[str, str, bytes]]:
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
