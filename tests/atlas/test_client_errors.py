"""Error and timeout discipline of the Atlas client, against the emulator's real faults: typed errors
with status and `detail`, no blind POST retries, bounded GET retries, `outcome_unknown` telling a refused
connection (nothing sent) from a timeout after sending, and the token kept out of errors and logs."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import pytest
from atlas_client_helpers import SYSTEM_ID, SleepRecorder, count_requests, requests_seen

from edge_agent.atlas import (
    AtlasAuthError,
    AtlasClient,
    AtlasError,
    AtlasNotFound,
    AtlasRetryableError,
    AtlasRetryPolicy,
    AtlasValidationError,
    parse_retry_after,
)
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.logs import setup_logging

WRONG_TOKEN = "wrong-token-9d41c7e2"


def client_for(
    emulator: AtlasEmulator, sleeps: SleepRecorder, token: str | None = None, **kw: float
) -> AtlasClient:
    return AtlasClient(
        emulator.api_url,
        token or emulator.token,
        connect_timeout=kw.get("connect_timeout", 2.0),
        read_timeout=kw.get("read_timeout", 5.0),
        upload_timeout=kw.get("upload_timeout", 10.0),
        retry=AtlasRetryPolicy(attempts=3, base=0.5, cap=5.0, max_retry_after=10.0),
        sleep=sleeps,
    )


async def test_401_is_typed_with_login_hint_and_never_retried(
    atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    count_requests(atlas_emulator)
    async with client_for(atlas_emulator, sleeps, token=WRONG_TOKEN) as bad:
        with pytest.raises(AtlasAuthError) as get_err:
            await bad.list_sessions()  # idempotent, yet not retried: a bad token stays bad
        with pytest.raises(AtlasAuthError) as post_err:
            await bad.create_issue("x")
    for err in (get_err.value, post_err.value):
        assert err.status == 401 and err.detail == "Not authenticated"
        assert not err.retryable and not err.outcome_unknown
        assert "atlas login" in str(err) and "ATLAS_TOKEN" in str(err)
        assert WRONG_TOKEN not in str(err) and WRONG_TOKEN not in repr(err)
    assert requests_seen(atlas_emulator) == 2
    assert sleeps.delays == []


async def test_422_carries_the_field_list(atlas: AtlasClient) -> None:
    with pytest.raises(AtlasValidationError) as err:
        await atlas.create_test_run("run", "not-a-uuid")
    exc = err.value
    assert exc.status == 422 and not exc.retryable
    assert isinstance(exc.detail, list)
    assert [item["loc"] for item in exc.detail] == [["body", "system_id"]]
    assert "body.system_id" in str(exc) and exc.method == "POST" and exc.path == "/test-runs"


async def test_404_is_typed(atlas: AtlasClient) -> None:
    with pytest.raises(AtlasNotFound) as err:
        await atlas.get_issue("00000000-0000-0000-0000-000000000000")
    assert err.value.status == 404 and err.value.detail == "Not found" and not err.value.retryable


async def test_5xx_post_sent_once_outcome_unknown(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    atlas_emulator.faults.update({"error_rate": 1.0, "error_status": 502, "latency": 1e-6})
    with pytest.raises(AtlasRetryableError) as err:
        await atlas.create_issue("once only")
    exc = err.value
    assert exc.status == 502 and exc.retryable and exc.outcome_unknown
    assert exc.detail == "injected server error"
    assert requests_seen(atlas_emulator) == 1 and sleeps.delays == []


async def test_5xx_get_retried_with_backoff_then_raised(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    atlas_emulator.faults.update({"error_rate": 1.0, "error_status": 503, "latency": 1e-6})
    with pytest.raises(AtlasRetryableError) as err:
        await atlas.list_issues()
    assert err.value.status == 503
    assert requests_seen(atlas_emulator) == 3
    assert len(sleeps.delays) == 2 and all(0 < d <= 5.0 for d in sleeps.delays)


async def test_get_recovers_when_the_fault_clears(
    atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    class ClearingSleep(SleepRecorder):
        async def __call__(self, delay: float) -> None:
            self.delays.append(delay)
            atlas_emulator.faults.reset()  # the outage ends while we wait

    sleeper = ClearingSleep()
    made = None
    async with client_for(atlas_emulator, sleeps) as setup:
        made = await setup.create_session("s")
    atlas_emulator.faults.update({"error_rate": 1.0})
    async with AtlasClient(atlas_emulator.api_url, atlas_emulator.token, sleep=sleeper) as client:
        got = await client.get_session(made.session_id)
    assert got.session_id == made.session_id and len(sleeper.delays) == 1


async def test_429_retry_after_typed_and_honoured(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    atlas_emulator.faults.update({"rate_limit_rate": 1.0, "retry_after": 7, "latency": 1e-6})
    with pytest.raises(AtlasRetryableError) as post_err:
        await atlas.create_session("limited")
    assert post_err.value.status == 429 and post_err.value.retry_after == 7.0
    assert not post_err.value.outcome_unknown  # a 429 was not processed: safe to re-send as is
    assert requests_seen(atlas_emulator) == 1

    with pytest.raises(AtlasRetryableError):
        await atlas.list_sessions()
    assert requests_seen(atlas_emulator) == 4 and sleeps.delays == [7.0, 7.0]

    # Longer than the client will wait in-line: raised at once for the outbox to schedule durably.
    atlas_emulator.faults.update({"retry_after": 120})
    with pytest.raises(AtlasRetryableError) as long_err:
        await atlas.list_sessions()
    assert long_err.value.retry_after == 120.0 and requests_seen(atlas_emulator) == 5


def test_retry_after_is_the_one_parser() -> None:
    # Its forms are tested with the transport (tests/http); Atlas re-exports it, it does not have its own.
    import edge_agent.http

    assert parse_retry_after is edge_agent.http.parse_retry_after


async def test_refused_connection_is_retryable_and_known_unsent(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    await atlas_emulator.server.refuse_for(30)
    with pytest.raises(AtlasRetryableError) as post_err:
        await atlas.create_session("during outage")
    exc = post_err.value
    assert exc.status is None and exc.retryable
    assert not exc.outcome_unknown, str(exc)
    assert "cannot connect" in str(exc)
    with pytest.raises(AtlasRetryableError) as get_err:
        await atlas.list_sessions()
    assert not get_err.value.outcome_unknown and len(sleeps.delays) == 2


async def test_connection_dropped_after_send_is_outcome_unknown(
    atlas: AtlasClient, atlas_emulator: AtlasEmulator
) -> None:
    atlas_emulator.faults.update({"latency": 1.0})
    pending = asyncio.create_task(atlas.create_issue("in flight", tags=["edge-agent:t-2"]))
    await asyncio.sleep(0.3)  # the request is sent and the server is sitting on it
    await atlas_emulator.server.refuse_for(30)  # drops every open connection
    with pytest.raises(AtlasRetryableError) as err:
        await asyncio.wait_for(pending, 5.0)
    assert err.value.status is None and err.value.outcome_unknown
    assert "connection lost" in str(err.value)


async def test_never_listening_port_is_refused(sleeps: SleepRecorder) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AtlasClient(f"http://127.0.0.1:{port}/api/v1", "tok-abcdef", sleep=sleeps) as client:
        with pytest.raises(AtlasRetryableError) as err:
            await client.create_issue("x")
    assert err.value.status is None and not err.value.outcome_unknown


async def test_timeout_after_send_is_outcome_unknown(
    atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    atlas_emulator.faults.update({"latency": 1.0})
    async with client_for(atlas_emulator, sleeps, read_timeout=0.2) as slow:
        with pytest.raises(AtlasRetryableError) as err:
            await slow.create_issue("maybe created", tags=["edge-agent:t-1"])
    exc = err.value
    assert exc.status is None and exc.retryable and exc.outcome_unknown
    assert "timed out" in str(exc)
    assert sleeps.delays == []  # a create is never re-sent by the client


async def test_slow_upload_within_upload_timeout(
    atlas_emulator: AtlasEmulator, sleeps: SleepRecorder
) -> None:
    """The upload gets `upload_timeout`, not `read_timeout`: the server is silent until it has it all."""
    payload = bytes(range(256)) * 1024  # 256 KiB at 512 KiB/s: about half a second of silence
    async with client_for(atlas_emulator, sleeps, read_timeout=0.2, upload_timeout=10.0) as client:
        session = await client.create_session("slow")
        atlas_emulator.faults.update({"upload_bytes_per_sec": 512 * 1024, "path_prefix": "/api/v1/sessions/"})
        (att,) = await client.upload_files(
            session.session_id, [("slow.bin", payload, "application/octet-stream")]
        )
    assert atlas_emulator.attachment_bytes(str(att.attachment_id)) == payload


async def test_token_never_in_errors_or_logs(atlas_emulator: AtlasEmulator, sleeps: SleepRecorder) -> None:
    stream = io.StringIO()
    setup_logging("debug", stream=stream, json=True)  # no secrets registered: nothing to hide behind
    token = atlas_emulator.token
    errors: list[AtlasError] = []
    async with client_for(atlas_emulator, sleeps) as atlas:
        # The server echoes the whole request body in a 422 `input`: the token sent as a title.
        try:
            await atlas.call("POST", "/test-runs", json_body={"title": token})
        except AtlasValidationError as exc:
            errors.append(exc)
        atlas_emulator.faults.update({"error_rate": 1.0})
        try:
            await atlas.list_issues()  # retried: logs a debug line per retry
        except AtlasRetryableError as exc:
            errors.append(exc)
        atlas_emulator.faults.reset()
        await atlas.create_test_run("fine", SYSTEM_ID)
    async with client_for(atlas_emulator, sleeps, token=WRONG_TOKEN) as bad:
        try:
            await bad.get_issue("x")
        except AtlasAuthError as exc:
            errors.append(exc)
    assert len(errors) == 3
    assert "***" in json.dumps(errors[0].detail)  # the echo was there, and was scrubbed
    logged = stream.getvalue()
    assert "atlas_api_retry" in logged and "atlas_api_call" in logged
    for secret in (token, WRONG_TOKEN):
        assert secret not in logged
        for error in errors:
            assert secret not in str(error) and secret not in repr(error)
            assert secret not in json.dumps(error.detail)
