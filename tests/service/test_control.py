"""The control API served on 127.0.0.1 (ephemeral port) and spoken to with a real aiohttp client.

The backend is a small step book-keeper written here: the API's job is HTTP (auth, validation,
status codes), the agent's state is the supervisor's, which has its own tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.control import ControlServer, StepStateError, create_control_app, is_loopback, parse_listen
from edge_agent.metrics import Metrics, Sample

TOKEN = "control-token-for-tests"


class StepBook:
    """Steps by name; at most one running. Readiness is a dict the test flips."""

    def __init__(self) -> None:
        self.running: str | None = None
        self.done: list[tuple[str, str | None]] = []
        self.notes: list[str | None] = []
        self.runs_ended: list[str | None] = []
        self.checks = {"serial": "ok", "lens": "ok", "atlas": "ok"}

    async def status(self) -> Mapping[str, Any]:
        return {"current_step": self.running, "steps_done": len(self.done)}

    def readiness(self) -> tuple[bool, Mapping[str, str]]:  # a plain (sync) one: both kinds work
        return all(v == "ok" for v in self.checks.values()), self.checks

    async def start_step(self, name: str, card: str | None) -> Mapping[str, Any]:
        if self.running is not None:
            raise StepStateError(f"step {self.running!r} is still running")
        self.running = name
        return {"step": name, "card": card, "state": "running"}

    async def end_step(self, name: str, verdict: str | None, note: str | None) -> Mapping[str, Any]:
        if self.running != name:
            raise StepStateError(f"step {name!r} is not running")
        self.running = None
        self.done.append((name, verdict))
        self.notes.append(note)
        return {"step": name, "verdict": verdict, "state": "ended"}

    async def end_run(self, note: str | None) -> Mapping[str, Any]:
        if self.running is not None:
            raise StepStateError("a fixed run")  # how the backend says it cannot end the run
        self.runs_ended.append(note)
        return {"ended_run": f"run-{len(self.runs_ended)}"}


class Api:
    def __init__(
        self, server: ControlServer, http: aiohttp.ClientSession, backend: StepBook, metrics: Metrics
    ):
        self.server, self.http, self.backend, self.metrics = server, http, backend, metrics

    async def get(self, path: str, token: str | None = TOKEN) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.server.url + path, headers=headers) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (await resp.json() if "json" in ctype else body.decode()), resp

    async def post(
        self, path: str, body: Any, token: str | None = TOKEN, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
            async with self.http.post(self.server.url + path, data=raw, headers=headers) as resp:
                return resp.status, await resp.json()
        async with self.http.post(self.server.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()


async def serve(token: str | None) -> AsyncIterator[Api]:
    backend, metrics = StepBook(), Metrics()
    server = ControlServer(create_control_app(backend, metrics, token), "127.0.0.1:0")
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            yield Api(server, http, backend, metrics)
    finally:
        await server.stop()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for value in serve(TOKEN):
        yield value


@pytest.fixture
async def open_api() -> AsyncIterator[Api]:
    async for value in serve(None):
        yield value


async def test_binds_an_ephemeral_loopback_port(api: Api) -> None:
    assert api.server.host == "127.0.0.1" and api.server.port > 0
    status, body, _ = await api.get("/healthz")
    assert (status, body) == (200, {"status": "ok"})


async def test_token_required_everywhere_but_healthz(api: Api) -> None:
    assert (await api.get("/healthz", token=None))[0] == 200
    for path in ("/readyz", "/status", "/metrics"):
        assert (await api.get(path, token=None))[0] == 401
        assert (await api.get(path, token="wrong"))[0] == 401
        assert (await api.get(path))[0] == 200
    assert (await api.post("/steps/start", {"name": "a"}, token=None))[0] == 401
    assert (await api.post("/steps/start", {"name": "a"}, token=TOKEN[:-1]))[0] == 401
    assert api.backend.running is None  # refused requests changed nothing
    status, body, _ = await api.get("/status", token="wrong")
    assert (status, body) == (401, {"error": "unauthorized"})


async def test_no_token_configured_means_open(open_api: Api) -> None:
    status, body, _ = await open_api.get("/status", token=None)
    assert (status, body) == (200, {"current_step": None, "steps_done": 0})


async def test_readyz_200_then_503_with_the_failing_check(api: Api) -> None:
    status, body, _ = await api.get("/readyz")
    assert status == 200 and body == {"ready": True, "checks": {"serial": "ok", "lens": "ok", "atlas": "ok"}}
    api.backend.checks["lens"] = "no session running"
    status, body, _ = await api.get("/readyz")
    assert status == 503
    assert body == {"ready": False, "checks": {"serial": "ok", "lens": "no session running", "atlas": "ok"}}


async def test_step_start_end_and_conflicts(api: Api) -> None:
    assert await api.post("/steps/start", {"name": "power-on", "card": "PSU"}) == (
        200, {"step": "power-on", "card": "PSU", "state": "running"},
    )  # fmt: skip
    assert (await api.get("/status"))[1] == {"current_step": "power-on", "steps_done": 0}
    status, body = await api.post("/steps/start", {"name": "other"})
    assert status == 409 and body == {"error": "step 'power-on' is still running"}
    status, body = await api.post("/steps/end", {"name": "other", "verdict": "PASS"})
    assert status == 409 and "not running" in body["error"]
    assert await api.post("/steps/end", {"name": "power-on", "verdict": "FAIL"}) == (
        200, {"step": "power-on", "verdict": "FAIL", "state": "ended"},
    )  # fmt: skip
    assert await api.post("/steps/start", {"name": "soak"}) == (
        200, {"step": "soak", "card": None, "state": "running"},
    )  # fmt: skip
    assert (await api.post("/steps/end", {"name": "soak", "verdict": None}))[0] == 200
    assert api.backend.done == [("power-on", "FAIL"), ("soak", None)]
    # ERROR and SKIP (the pytest plugin's verdicts) and a note reach the backend.
    for name, verdict, note in (("broken", "ERROR", "fixture failed"), ("later", "SKIP", " no rig ")):
        await api.post("/steps/start", {"name": name})
        assert (await api.post("/steps/end", {"name": name, "verdict": verdict, "note": note}))[0] == 200
    assert api.backend.done[-2:] == [("broken", "ERROR"), ("later", "SKIP")]
    assert api.backend.notes == [None, None, "fixture failed", "no rig"]


async def test_run_end_answers_the_backend_or_409_and_needs_the_token(api: Api) -> None:
    assert await api.post("/runs/end", {}) == (200, {"ended_run": "run-1"})
    assert await api.post("/runs/end", {"note": "lot 7 done"}) == (200, {"ended_run": "run-2"})
    assert api.backend.runs_ended == [None, "lot 7 done"]
    assert (await api.post("/runs/end", {}, token=None))[0] == 401
    status, body = await api.post("/runs/end", {"note": 5})
    assert status == 422 and "note" in str(body["detail"])
    status, body = await api.post("/runs/end", None, raw=b"end")
    assert status == 400
    await api.post("/steps/start", {"name": "x"})
    assert await api.post("/runs/end", {}) == (409, {"error": "a fixed run"})
    assert api.backend.runs_ended == [None, "lot 7 done"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/steps/start", {}, "name"),
        ("/steps/start", {"name": ""}, "name"),
        ("/steps/start", {"name": "x" * 101}, "name"),
        ("/steps/start", {"name": "a", "colour": "red"}, "colour"),
        ("/steps/start", {"name": 5}, "name"),
        ("/steps/end", {"name": "a", "verdict": "MAYBE"}, "verdict"),
        ("/steps/end", {"name": "a", "note": "n" * 501}, "note"),
        ("/runs/end", {"colour": "red"}, "colour"),
        ("/steps/end", ["a"], None),
    ],
)
async def test_bad_bodies_are_422_with_detail(api: Api, path: str, body: Any, field: str | None) -> None:
    status, answer = await api.post(path, body)
    assert status == 422
    assert answer["error"] == "invalid request body"
    if field is not None:
        assert field in [str(part) for item in answer["detail"] for part in item["loc"]]
    assert api.backend.running is None and api.backend.done == []


async def test_non_json_body_is_400(api: Api) -> None:
    status, answer = await api.post("/steps/start", None, raw=b"name=power-on")
    assert status == 400 and answer["error"] == "body is not JSON"
    status, answer = await api.post("/steps/start", None, raw=b"\xff\xfe{")
    assert status == 400 and "UTF-8" in answer["error"]


async def test_metrics_parse_and_counters_move(api: Api) -> None:
    frames = {"bench": 0}
    api.metrics.add_source(
        "serial:bench",
        lambda: [
            Sample("serial_frames_total", {"source": "bench"}, frames["bench"]),
            Sample("serial_decode_errors_total", {"source": "bench", "reason": "not_numeric"}, 2),
        ],
    )

    async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text, resp = await api.get("/metrics")
        assert status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4;")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    first = await scrape()
    assert first[("edge_agent_serial_frames_total", (("source", "bench"),))] == 0
    assert first[("edge_agent_lens_windows_sent_total", ())] == 0
    frames["bench"] = 1234
    api.metrics.inc("anomalies_opened_total", kind="limits", severity="high")
    api.metrics.inc("lens_inferences_total", 3, label="fault")
    second = await scrape()
    assert second[("edge_agent_serial_frames_total", (("source", "bench"),))] == 1234
    key = ("edge_agent_serial_decode_errors_total", (("reason", "not_numeric"), ("source", "bench")))
    assert second[key] == 2
    assert second[("edge_agent_anomalies_opened_total", (("kind", "limits"), ("severity", "high")))] == 1
    assert second[("edge_agent_lens_inferences_total", (("label", "fault"),))] == 3


async def test_metrics_speak_openmetrics_when_asked(api: Api) -> None:
    api.metrics.add_source("lens", lambda: [Sample("lens_windows_sent_total", {}, 7)])
    accept = "application/openmetrics-text; version=1.0.0"
    async with api.http.get(
        api.server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Accept": accept}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await resp.text()
    families = openmetrics_families(text)  # type: ignore[no-untyped-call]
    samples = {s.name: s.value for f in families for s in f.samples if not s.labels}
    assert samples["edge_agent_lens_windows_sent_total"] == 7


def test_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:8321") == ("127.0.0.1", 8321)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8321", ":8321", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("bench-pc")
