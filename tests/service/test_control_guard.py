"""The control API against what a web page on the bench PC can send (issue 12 item 7), over loopback to
the real server: cross-site POSTs, DNS rebinding (a foreign Host), and malformed bodies. The backend is
a small step book: the assertion is always that a refused request changed nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from edge_agent.control import MAX_BODY_BYTES, ControlServer, StepStateError, create_control_app
from edge_agent.control_guard import HostPolicy, split_host
from edge_agent.metrics import Metrics

TOKEN = "control-token-for-guard-tests"
EVIL = "http://evil.example"
ROUTES = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/status"), ("GET", "/metrics"),
          ("POST", "/steps/start"), ("POST", "/steps/end"), ("POST", "/runs/end"),
          ("GET", "/no-such-route")]  # fmt: skip


class StepBook:
    def __init__(self) -> None:
        self.running: str | None = None
        self.ended: list[tuple[str, str | None]] = []

    async def status(self) -> Mapping[str, Any]:
        return {"current_step": self.running}

    def readiness(self) -> tuple[bool, Mapping[str, str]]:
        return True, {"serial": "ok"}

    async def start_step(self, name: str, card: str | None) -> Mapping[str, Any]:
        if self.running is not None:
            raise StepStateError(f"step {self.running!r} is still running")
        self.running = name
        return {"step": name, "state": "running"}

    async def end_step(self, name: str, verdict: str | None, note: str | None) -> Mapping[str, Any]:
        if self.running != name:
            raise StepStateError(f"step {name!r} is not running")
        self.running = None
        self.ended.append((name, verdict))
        return {"step": name, "verdict": verdict, "state": "ended"}

    async def end_run(self, note: str | None) -> Mapping[str, Any]:
        return {"ended_run": "r"}


class Api:
    def __init__(self, server: ControlServer, http: aiohttp.ClientSession, book: StepBook) -> None:
        self.server, self.http, self.book = server, http, book

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def send(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request; the answer as JSON when it is JSON, else as text (which a test then rejects)."""
        async with self.http.request(
            method, self.server.url + path, data=body, headers=dict(headers or {})
        ) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def post_json(self, path: str, payload: Any, **headers: str) -> tuple[int, Any]:
        return await self.send(
            "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
        )


async def serve(token: str | None, allowed_hosts: tuple[str, ...] = ()) -> AsyncIterator[Api]:
    book = StepBook()
    app = create_control_app(book, Metrics(), token, listen="127.0.0.1:0", allowed_hosts=allowed_hosts)
    server = ControlServer(app, "127.0.0.1:0")
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            yield Api(server, http, book)
    finally:
        await server.stop()


@pytest.fixture
async def open_api() -> AsyncIterator[Api]:
    """No token: the default, and the case a web page can exploit."""
    async for api in serve(None, allowed_hosts=("bench-03.lab",)):
        yield api


@pytest.fixture
async def token_api() -> AsyncIterator[Api]:
    async for api in serve(TOKEN):
        yield api


class ServerLog:
    """Everything the server logged: stdlib records (aiohttp's own loggers) and structlog's lines,
    which go to stdout or through stdlib depending on how logging was set up in this process."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
        self.caplog, self.capsys = caplog, capsys

    def assert_no_traceback(self, answer: Any) -> None:
        printed = self.capsys.readouterr()
        assert "Traceback" not in json.dumps(answer)
        for text in (self.caplog.text, printed.out, printed.err):
            assert "Traceback" not in text, text
        assert not [r for r in self.caplog.records if r.exc_info], [
            r.getMessage() for r in self.caplog.records
        ]


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> ServerLog:
    caplog.set_level(logging.DEBUG)
    return ServerLog(caplog, capsys)


# -- cross-site requests ----------------------------------------------------------------------------------


async def test_evil_origin_text_plain_post_is_refused_and_the_step_unchanged(open_api: Api) -> None:
    assert (await open_api.post_json("/steps/start", {"name": "soak"}))[0] == 200
    fail_it = json.dumps({"name": "soak", "verdict": "FAIL"}).encode()
    # What a form or fetch(..., {mode: "no-cors"}) on any page can send without a CORS preflight.
    status, answer = await open_api.send(
        "POST", "/steps/end", fail_it, {"Content-Type": "text/plain", "Origin": EVIL}
    )
    assert status == 403 and answer == {"error": "cross-origin requests are refused"}
    # Still refused when it claims JSON (a page needs a preflight for that, but refuse it regardless).
    status, _ = await open_api.send(
        "POST", "/steps/end", fail_it, {"Content-Type": "application/json", "Origin": EVIL}
    )
    assert status == 403
    # Origins that are not this API's: another port of the same host, a sandboxed page, garbage.
    for origin in (f"http://127.0.0.1:{open_api.server.port + 1}", "null", "file://", f"{EVIL}/path"):
        status, _ = await open_api.send(
            "POST", "/steps/end", fail_it, {"Content-Type": "application/json", "Origin": origin}
        )
        assert status == 403, origin
    assert open_api.book.running == "soak" and open_api.book.ended == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None,
     "application/json; charset=latin-1", "application/jsonx"],
)  # fmt: skip
async def test_posts_must_be_application_json(open_api: Api, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer = await open_api.send("POST", "/steps/start", b'{"name": "soak"}', headers)
    assert status == 415 and "application/json" in answer["error"]
    assert open_api.book.running is None


async def test_same_origin_requests_work_with_the_token_rules(token_api: Api) -> None:
    """A page served by the API itself (same origin) may drive it, and still needs the token."""
    own = f"http://{token_api.host}"
    status, _ = await token_api.post_json("/steps/start", {"name": "soak"}, Origin=own)
    assert status == 401
    bearer = f"Bearer {TOKEN}"
    status, answer = await token_api.post_json(
        "/steps/start", {"name": "soak"}, Origin=own, Authorization=bearer
    )
    assert (status, answer) == (200, {"step": "soak", "state": "running"})
    status, _ = await token_api.post_json(
        "/steps/end", {"name": "soak", "verdict": "PASS"}, Origin=EVIL, Authorization=bearer
    )
    assert status == 403  # a stolen token does not help a foreign page either
    status, _ = await token_api.post_json(
        "/steps/end", {"name": "soak", "verdict": "PASS"}, Authorization=bearer
    )  # a sequencer (no Origin)
    assert status == 200 and token_api.book.ended == [("soak", "PASS")]
    status, answer = await token_api.send("GET", "/status", headers={"Origin": own, "Authorization": bearer})
    assert status == 200 and answer == {"current_step": None}


# -- DNS rebinding ------------------------------------------------------------------------------------------


FOREIGN_HOSTS = ["evil.example", "evil.example:8321", "127.0.0.1.nip.io", "localhost.evil.example",
                 "bench-03.lab.evil.example", "", "127.0.0.1:notaport", "::1"]  # fmt: skip


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
async def test_a_foreign_host_is_refused_on_every_route(open_api: Api, token_api: Api, host: str) -> None:
    for api, auth in ((open_api, {}), (token_api, {"Authorization": f"Bearer {TOKEN}"})):
        for method, path in ROUTES:
            body = b'{"name": "soak"}' if method == "POST" else None
            headers = {"Host": host, "Content-Type": "application/json", **auth}
            status, answer = await api.send(method, path, body, headers)
            assert status == 403, (host, method, path, status, answer)
            assert "Host" in answer["error"]
        assert api.book.running is None


async def test_hosts_of_this_api_are_served(open_api: Api) -> None:
    port = open_api.server.port
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}",
                 f"10.1.2.3:{port}", f"bench-03.lab:{port}", "Bench-03.Lab"):  # fmt: skip
        status, answer = await open_api.send("GET", "/status", headers={"Host": host})
        assert (status, answer) == (200, {"current_step": None}), host


async def test_http_1_0_without_host_is_served(open_api: Api) -> None:
    """Old tools send no Host at all: not a browser, not a rebinding."""
    reader, writer = await asyncio.open_connection("127.0.0.1", open_api.server.port)
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:80]


async def test_prometheus_and_health_check_requests_still_work(token_api: Api) -> None:
    # What Prometheus sends: Host of the target, an Accept header, the bearer token; no Origin.
    headers = {
        "Host": token_api.host,
        "Accept": "text/plain;version=0.0.4",
        "Authorization": f"Bearer {TOKEN}",
    }
    status, text = await token_api.send("GET", "/metrics", headers=headers)
    assert status == 200 and "edge_agent_" in text
    status, answer = await token_api.send("GET", "/healthz", headers={"Host": token_api.host})
    assert (status, answer) == (200, {"status": "ok"})


# -- malformed bodies -------------------------------------------------------------------------------------


NESTED = b"[" * 10_000 + b"]" * 10_000
MALFORMED = {
    "nested_10000_levels": (NESTED, 400),
    "nested_objects": (b'{"name":' * 5_000 + b'"x"' + b"}" * 5_000, 400),  # 45 kB: under the size limit
    "invalid_utf8": (b'{"name": "\xff\xfe"}', 400),
    "truncated": (b'{"name": "so', 400),
    "empty": (b"", 400),
    "not_json": (b"name=soak", 400),
    "nan_literal": (b'{"name": NaN}', 422),  # pydantic reads NaN as a float: not a name
    "a_list": (b'["soak"]', 422),
    "a_string": (b'"soak"', 422),
    "null": (b"null", 422),
    "name_a_number": (b'{"name": 5}', 422),
    "name_an_object": (b'{"name": {"a": 1}}', 422),
    "name_null": (b'{"name": null}', 422),
    "unknown_field": (b'{"name": "soak", "colour": "red"}', 422),
    "huge_number": (b'{"name": "soak", "card": 1' + b"0" * 5000 + b"}", 400),
    "card_a_number": (b'{"name": "soak", "card": 7}', 422),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_bodies_are_4xx_with_a_reason_and_no_traceback(
    open_api: Api, server_log: ServerLog, case: str
) -> None:
    body, expected = MALFORMED[case]
    status, answer = await open_api.send("POST", "/steps/start", body, {"Content-Type": "application/json"})
    assert status == expected, (status, answer)
    assert isinstance(answer, dict) and answer["error"], answer
    server_log.assert_no_traceback(answer)
    assert open_api.book.running is None
    assert (await open_api.send("GET", "/healthz"))[0] == 200  # and the server is fine


async def test_a_10_mb_body_is_413(open_api: Api, server_log: ServerLog) -> None:
    body = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    status, answer = await open_api.send("POST", "/steps/start", body, {"Content-Type": "application/json"})
    assert status == 413 and str(MAX_BODY_BYTES) in answer["error"]
    server_log.assert_no_traceback(answer)
    assert open_api.book.running is None


async def test_an_oversized_chunked_body_is_413(open_api: Api, server_log: ServerLog) -> None:
    """No Content-Length to refuse up front: the limit applies while reading."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 64 * 1024
        yield b'"}'

    async with open_api.http.post(
        open_api.server.url + "/steps/start", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        answer = await response.json()
    server_log.assert_no_traceback(answer)
    assert open_api.book.running is None


async def test_framework_errors_are_json_too(open_api: Api) -> None:
    status, answer = await open_api.send("GET", "/no-such-route")
    assert status == 404 and answer == {"error": "Not Found"}
    status, answer = await open_api.send("DELETE", "/healthz", headers={"Content-Type": "application/json"})
    assert status == 405 and answer == {"error": "Method Not Allowed"}


# -- the pure parts -----------------------------------------------------------------------------------------


def test_host_header_parsing() -> None:
    assert split_host("127.0.0.1:8321") == ("127.0.0.1", 8321)
    assert split_host("[::1]:8321") == ("::1", 8321)
    assert split_host("Bench.Example.") == ("bench.example", None)
    for bad in ("", ":80", "::1", "[::1", "[::1]x", "host:port", "host:99999", "a:b:c"):
        assert split_host(bad) is None, bad


def test_origin_matching() -> None:
    same = HostPolicy.same_origin
    assert same("http://127.0.0.1:8321", "127.0.0.1:8321")
    assert same("http://localhost", "localhost:80") and same("https://x.lab", "x.lab:443")
    assert not same("http://127.0.0.1:8322", "127.0.0.1:8321")
    assert not same("http://evil.example", "127.0.0.1:8321")
    assert not same("http://127.0.0.1:8321/x", "127.0.0.1:8321")
    assert not same("ws://127.0.0.1:8321", "127.0.0.1:8321")
    assert not same("http://127.0.0.1:8321", None)
    policy = HostPolicy.of("127.0.0.1", ["bench-03.lab"])
    assert policy.host_ok("bench-03.lab:1") and policy.host_ok("[fe80::1]:1") and policy.host_ok(None)
    assert not policy.host_ok("bench-04.lab:1")
