"""The shared transport against real loopback servers: what counts as success, which redirects are
followed (and that a refused one sends nothing), Retry-After in both forms, retries, no-answer
outcomes and scrubbing of an echoed token."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from aiohttp import web
from http_helpers import Sleeps, json_answer, serve

from edge_agent.http import Failure, Kind, RetryPolicy, Transport

TOKEN = "Zq7vK2mP9xR4tW8yB3nL6cF1hJ5dG0sA"
POLICY = RetryPolicy(attempts=3, base=0.5, cap=5.0, max_retry_after=10.0)


def transport(base: str, sleeps: Sleeps | None = None, **kw: float) -> Transport:
    return Transport(
        base,
        TOKEN,
        service="test",
        connect_timeout=kw.get("connect_timeout", 2.0),
        read_timeout=kw.get("read_timeout", 5.0),
        retry=POLICY,
        sleep=sleeps or Sleeps(),
    )


def no_prefix(text: str) -> bool:
    return all(TOKEN[:n] not in text for n in range(4, len(TOKEN) + 1))


def redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


# -- success --------------------------------------------------------------------------------------


async def test_any_2xx_is_success_and_an_empty_body_is_fine_where_no_result_is_needed() -> None:
    async def no_content(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def empty(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"")

    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(status=202, text="<html>accepted</html>", content_type="text/html")

    routes = [("PATCH", "/step", no_content), ("POST", "/destroy", empty), ("DELETE", "/x", html)]
    routes += [
        ("GET", "/empty", empty),
        ("POST", "/create", no_content),
        ("GET", "/obj", json_answer({"a": 1}, 201)),
    ]
    async with serve(routes) as (base, seen):
        http = transport(base)
        try:
            assert (await http.request("PATCH", "/step", json_body={"s": 1}, need_body=False)).body is None
            assert (await http.request("POST", "/destroy", need_body=False)).body is None
            assert (await http.request("DELETE", "/x", need_body=False)).status == 202
            assert (await http.request("GET", "/obj")).body == {"a": 1}
            assert len(seen.requests) == 4  # one attempt each: a 204 is not an error to retry
            # Where a result is needed, an empty answer is a protocol failure: the server acted.
            with pytest.raises(Failure) as created:
                await http.request("POST", "/create", json_body={})
            assert created.value.kind is Kind.PROTOCOL and created.value.outcome_unknown
            assert created.value.status == 204 and len(seen.requests) == 5  # a POST is not re-sent
            with pytest.raises(Failure) as read:
                await http.request("GET", "/empty")
            assert read.value.kind is Kind.PROTOCOL and not read.value.outcome_unknown
        finally:
            await http.close()


# -- redirects ------------------------------------------------------------------------------------


async def test_same_origin_307_and_308_keep_method_body_and_credentials() -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        return redirect(307, "/new/issues?x=1")

    async def moved_abs(request: web.Request) -> web.StreamResponse:
        return redirect(308, f"http://127.0.0.1:{request.url.port}/new/step")

    async def new(request: web.Request) -> web.StreamResponse:
        return web.json_response({"got": await request.json(), "method": request.method})

    routes = [("POST", "/issues", moved), ("PATCH", "/step", moved_abs)]
    routes += [("POST", "/new/issues", new), ("PATCH", "/new/step", new)]
    async with serve(routes) as (base, seen):
        http = transport(base)
        try:
            reply = await http.request("POST", "/issues", json_body={"title": "t"})
            assert reply.body == {"got": {"title": "t"}, "method": "POST"}
            reply = await http.request("PATCH", "/step", json_body={"execution_status": "passed"})
            assert reply.body == {"got": {"execution_status": "passed"}, "method": "PATCH"}
        finally:
            await http.close()
    assert [(r.method, r.path) for r in seen.requests] == [
        ("POST", "/issues"), ("POST", "/new/issues"), ("PATCH", "/step"), ("PATCH", "/new/step"),
    ]  # fmt: skip
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in seen.requests)
    assert seen.requests[1].body == seen.requests[0].body and seen.requests[1].query == "x=1"
    assert http.redirects_followed == 2


async def test_a_multipart_upload_is_sent_whole_again_after_a_redirect(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.csv"
    evidence.write_bytes(b"t,v\n" + b"1,2\n" * 5000)

    async def moved(request: web.Request) -> web.StreamResponse:
        await request.read()
        return redirect(307, "/v2/upload")

    async def upload(request: web.Request) -> web.StreamResponse:
        reader = await request.multipart()
        files = []
        while (part := await reader.next()) is not None:
            files.append([part.filename, len(await part.read())])  # type: ignore[union-attr]
        return web.json_response(files)

    async with serve([("POST", "/upload", moved), ("POST", "/v2/upload", upload)]) as (base, _):
        http = transport(base)
        try:
            parts = [
                ("files", "evidence.csv", evidence, "text/csv"),
                ("files", "s.json", b"{}", "application/json"),
            ]
            reply = await http.request("POST", "/upload", files=parts)
        finally:
            await http.close()
    assert reply.body == [["evidence.csv", evidence.stat().st_size], ["s.json", 2]]


async def test_other_redirects_of_a_post_are_not_followed_but_a_get_may_be() -> None:
    async def see_other(request: web.Request) -> web.StreamResponse:
        return redirect(303, "/elsewhere")

    async def found(request: web.Request) -> web.StreamResponse:
        return redirect(302, "/elsewhere")

    routes = [("POST", "/x", see_other), ("GET", "/y", found), ("GET", "/elsewhere", json_answer([]))]
    async with serve(routes) as (base, seen):
        http = transport(base)
        try:
            with pytest.raises(Failure) as err:
                await http.request("POST", "/x", json_body={"a": 1})
            assert (await http.request("GET", "/y")).body == []
        finally:
            await http.close()
    assert err.value.status == 303 and err.value.kind is Kind.PERMANENT and not err.value.retryable
    assert "not followed" in str(err.value)
    assert [(r.method, r.path) for r in seen.requests] == [
        ("POST", "/x"),
        ("GET", "/y"),
        ("GET", "/elsewhere"),
    ]


@pytest.mark.parametrize("status", [307, 308, 301])
async def test_a_redirect_to_another_origin_is_refused_and_nothing_is_sent_there(status: int) -> None:
    async with serve([("*", "/{tail:.*}", json_answer({"stolen": True}))]) as (other, other_seen):

        async def away(request: web.Request) -> web.StreamResponse:
            return redirect(status, f"{other}/api/v1/sessions?access_token={TOKEN}")

        async def https_same_host(request: web.Request) -> web.StreamResponse:
            return redirect(status, f"https://127.0.0.1:{request.url.port}/api/v1/sessions")

        routes = [("GET", "/api/v1/sessions", away), ("GET", "/api/v1/https", https_same_host)]
        async with serve(routes) as (base, seen):
            http = transport(base + "/api/v1")
            try:
                with pytest.raises(Failure) as err:
                    await http.request("GET", "/sessions")
                with pytest.raises(Failure) as scheme_err:
                    await http.request("GET", "/https")
            finally:
                await http.close()
    assert other_seen.requests == []  # the token never went to the other host
    assert len(seen.requests) == 2  # refused at once: no retry of a permanent failure
    for failure in (err.value, scheme_err.value):
        assert failure.kind is Kind.PERMANENT and failure.status == status and not failure.retryable
        assert "another origin" in str(failure) and "not followed" in str(failure)
    assert other.removeprefix("http://") in str(err.value)  # says where it was sent
    assert no_prefix(str(err.value))  # the token in the Location is not repeated


async def test_a_redirect_loop_stops_at_the_hop_limit() -> None:
    async def loop(request: web.Request) -> web.StreamResponse:
        return redirect(307, "/loop")

    async with serve([("PUT", "/loop", loop)]) as (base, seen):
        http = transport(base)
        try:
            with pytest.raises(Failure) as err:
                await http.request("PUT", "/loop", json_body={}, retry=RetryPolicy(attempts=1))
        finally:
            await http.close()
    assert "more than 5 redirects" in str(err.value) and err.value.kind is Kind.PERMANENT
    assert len(seen.requests) == 6


# -- Retry-After, retries ---------------------------------------------------------------------------


class Script:
    """A handler that answers from a list, then repeats the last answer."""

    def __init__(self, *answers: tuple[int, dict[str, str], str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        status, headers, body = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        headers = {key: value() if callable(value) else value for key, value in headers.items()}  # type: ignore[operator]
        return web.Response(status=status, headers=headers, text=body, content_type="application/json")


async def test_retry_after_seconds_is_honoured_once() -> None:
    script = Script((429, {"Retry-After": "2"}, '{"detail": "slow"}'), (200, {}, '{"ok": true}'))
    sleeps = Sleeps()
    async with serve([("GET", "/x", script.handle)]) as (base, _):
        http = transport(base, sleeps)
        try:
            assert (await http.request("GET", "/x")).body == {"ok": True}
        finally:
            await http.close()
    assert script.calls == 2 and sleeps.delays == [2.0]


async def test_retry_after_http_date_is_read_on_the_servers_clock() -> None:
    # The server's clock is an hour ahead: its date means "3 s from my now", not "an hour and 3 s".
    ahead = 3600.0
    script = Script(
        (503, {"Date": lambda: formatdate(time.time() + ahead, usegmt=True),
               "Retry-After": lambda: formatdate(time.time() + ahead + 3, usegmt=True)}, "{}"),
        (200, {}, "[]"),
    )  # fmt: skip
    sleeps = Sleeps()
    async with serve([("GET", "/x", script.handle)]) as (base, _):
        http = transport(base, sleeps)
        try:
            await http.request("GET", "/x")
        finally:
            await http.close()
    assert script.calls == 2 and len(sleeps.delays) == 1
    assert 2.0 <= sleeps.delays[0] <= 4.0
    assert http.clock_offset is not None and abs(http.clock_offset) < 2.0  # the 200 carried the real Date


async def test_a_long_retry_after_goes_up_to_the_caller() -> None:
    script = Script((429, {"Retry-After": "120"}, "{}"))
    sleeps = Sleeps()
    async with serve([("GET", "/x", script.handle)]) as (base, _):
        http = transport(base, sleeps)
        try:
            with pytest.raises(Failure) as err:
                await http.request("GET", "/x")
        finally:
            await http.close()
    assert err.value.retry_after == 120.0 and err.value.retryable and not err.value.outcome_unknown
    assert script.calls == 1 and sleeps.delays == []


async def test_a_post_is_repeated_only_when_nothing_was_applied() -> None:
    busy = Script((503, {}, "{}"), (201, {}, '{"id": 1}'))
    limited = Script((429, {"Retry-After": "1"}, "{}"), (201, {}, '{"id": 2}'))
    async with serve([("POST", "/busy", busy.handle), ("POST", "/limited", limited.handle)]) as (base, _):
        http = transport(base)
        try:
            with pytest.raises(Failure) as err:
                await http.request("POST", "/busy", json_body={})
            assert err.value.outcome_unknown and err.value.status == 503
            assert (await http.request("POST", "/limited", json_body={})).body == {"id": 2}
        finally:
            await http.close()
    assert busy.calls == 1 and limited.calls == 2


async def test_idempotent_calls_are_retried_a_bounded_number_of_times() -> None:
    script = Script((502, {}, "<html><body>Bad Gateway</body></html>"))
    sleeps = Sleeps()
    async with serve([("DELETE", "/x", script.handle)]) as (base, _):
        http = transport(base, sleeps)
        try:
            with pytest.raises(Failure) as err:
                await http.request("DELETE", "/x", need_body=False)
        finally:
            await http.close()
    assert script.calls == 3 and len(sleeps.delays) == 2
    assert "Bad Gateway" in str(err.value) and "<html>" not in str(err.value)


# -- no answer ------------------------------------------------------------------------------------


async def test_no_answer_outcomes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = transport(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(Failure) as refused:
            await http.request("POST", "/x", json_body={})
    finally:
        await http.close()
    assert refused.value.status is None and refused.value.retryable and not refused.value.outcome_unknown

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2.0)
        return web.json_response({})

    async with serve([("POST", "/slow", slow)]) as (base, seen):
        http = transport(base, read_timeout=0.3)
        try:
            with pytest.raises(Failure) as late:
                await http.request("POST", "/slow", json_body={})
        finally:
            await http.close()
    assert late.value.status is None and late.value.outcome_unknown and len(seen.requests) == 1


# -- secrets --------------------------------------------------------------------------------------


async def test_an_error_page_echoing_the_token_cut_at_every_offset_leaks_no_prefix() -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        cut = int(request.query["cut"])
        header = request.headers["Authorization"]
        page = f"<html><body><h1>400</h1><pre>Authorization: {header}"
        page = page[: page.index(TOKEN) + cut]  # the proxy cut its page inside the token
        kind = request.query.get("kind", "html")
        if kind == "json":
            return web.Response(status=400, text=json.dumps({"detail": f"bad key {TOKEN[:cut]}"}))
        return web.Response(status=400 if kind == "html" else 502, text=page, content_type="text/html")

    async with serve([("GET", "/echo", echo)]) as (base, seen):
        http = transport(base)
        try:
            for kind in ("html", "json", "gateway"):
                for cut in range(len(TOKEN) + 1):
                    with pytest.raises(Failure) as err:
                        await http.request("GET", "/echo", params={"cut": str(cut), "kind": kind},
                                           retry=RetryPolicy(attempts=1))  # fmt: skip
                    failure = err.value
                    for text in (str(failure), repr(failure), failure.text, json.dumps(failure.body)):
                        assert no_prefix(text), (kind, cut, text)
        finally:
            await http.close()
    assert len(seen.requests) == 3 * (len(TOKEN) + 1)


async def test_the_token_is_not_in_the_transports_repr() -> None:
    http = transport("http://127.0.0.1:1")
    assert TOKEN not in repr(http) and TOKEN[:4] not in repr(http)


# -- streaming ------------------------------------------------------------------------------------


async def test_a_stream_follows_a_same_origin_redirect_and_fails_typed() -> None:
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\n\n".encode())
        return response

    async def moved(request: web.Request) -> web.StreamResponse:
        return redirect(307, "/events")

    async def gone(request: web.Request) -> web.StreamResponse:
        return web.json_response({"errors": ["Unknown session id: s"]}, status=404)

    routes = [("GET", "/events", events), ("GET", "/old", moved), ("GET", "/gone", gone)]
    async with serve(routes) as (base, _):
        http = transport(base)
        try:
            chunks = [
                c async for c in http.iter_chunks("GET", "/old", headers={"Accept": "text/event-stream"})
            ]
            with pytest.raises(Failure) as err:
                [c async for c in http.iter_chunks("GET", "/gone")]
        finally:
            await http.close()
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert err.value.kind is Kind.NOT_FOUND and err.value.body == {"errors": ["Unknown session id: s"]}
