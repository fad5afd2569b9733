"""The plumbing every Atlas call goes through: the shared transport (`edge_agent.http`), one call with
its retry rule (POST once, idempotent methods a few times), the answer read into its model, a PATCH
of only the fields given. The calls themselves are grouped by resource (session_calls, issue_calls,
run_calls) and put together as `AtlasClient` (client.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from edge_agent.atlas.errors import LOGIN_HINT, AtlasProtocolError, from_failure, invalid
from edge_agent.atlas.models import Page
from edge_agent.config import AtlasSection
from edge_agent.http import NO_RETRY, Failure, RetryPolicy, Transport

IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})

_M = TypeVar("_M", bound=BaseModel)


AtlasRetryPolicy = RetryPolicy  # the transport's in-call retries, under the name callers know


def segment(value: str) -> str:
    """An id as one path segment: ids come from the server and must not be able to change the path."""
    return quote(value, safe="")


class AtlasApi:
    """The client's transport and the helpers its calls share; `AtlasClient` is the one to use."""

    def __init__(
        self,
        api_base: str,
        token: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        upload_timeout: float = 120.0,
        retry: AtlasRetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ValueError(f"no Atlas token configured: {LOGIN_HINT}")
        if not api_base.startswith(("http://", "https://")):
            raise ValueError("no Atlas URL configured: set atlas.url or ATLAS_URL, or run `atlas login`")
        self.api_base = api_base.rstrip("/")
        self.retry = retry or AtlasRetryPolicy()
        self._upload_timeout = upload_timeout
        self.transport = Transport(
            self.api_base,
            token,
            service="atlas",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=self.retry,
            sleep=sleep,
            clock=clock,
        )

    @classmethod
    def from_config(cls, section: AtlasSection, **kwargs: Any) -> Self:
        token = section.token.get_secret_value() if section.token is not None else ""
        if not section.url:
            raise ValueError("no Atlas URL configured: set atlas.url or ATLAS_URL, or run `atlas login`")
        return cls(
            section.api_base,
            token,
            connect_timeout=section.connect_timeout,
            read_timeout=section.read_timeout,
            upload_timeout=section.upload_timeout,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"AtlasClient({self.api_base!r})"  # never the token

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    @property
    def server_clock_offset(self) -> float | None:
        """Atlas's clock minus this host's, from the latest answer's `Date` header (None before one)."""
        return self.transport.clock_offset

    async def _patch(self, path: str, fields: dict[str, Any], problems: list[str]) -> Any:
        """PATCH only the fields given (None = leave as is); local problems raise before sending.
        None when the server answered without a body (204): the update was applied all the same."""
        body = {k: v for k, v in fields.items() if v is not None}
        if not body:
            problems.append("nothing to update")
        if problems:
            raise invalid("PATCH", path, problems)
        return await self.call("PATCH", path, json_body=body, need_body=False)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
        files: Sequence[tuple[str, str, bytes | Path, str]] = (),
        read_timeout: float | None = None,
        retry: AtlasRetryPolicy | None = None,
        need_body: bool = True,
    ) -> Any:
        """One API call: the decoded JSON body (None for an empty answer when `need_body` is False).
        Idempotent methods are retried by `retry` (default: the client's policy); POST is sent once."""
        method = method.upper()
        policy = retry or self.retry
        try:
            reply = await self.transport.request(
                method,
                path,
                json_body=json_body,
                params=params,
                files=files,
                read_timeout=read_timeout,
                retry=policy if method in IDEMPOTENT_METHODS else NO_RETRY,
                need_body=need_body,
            )
        except Failure as failure:
            raise from_failure(failure) from None
        return reply.body

    def _model(self, model: type[_M], body: Any, method: str, path: str) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
            raise AtlasProtocolError(
                method,
                path,
                reason=f"unexpected answer shape for {model.__name__} (fields: {fields})",
                outcome_unknown=method != "GET",
            ) from None

    def _page(self, model: type[_M], body: Any, method: str, path: str) -> Page[_M]:
        page_model: type[Page[_M]] = Page[model]  # type: ignore[valid-type]
        return self._model(page_model, body, method, path)
