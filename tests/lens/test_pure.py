"""Sans-I/O parts: status forms, pacing, SSE parsing, reply/outputs decoding, error typing, state file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.lens.errors import (
    LensAuthError,
    LensNoRunner,
    LensNotFound,
    LensRateLimited,
    LensRequestError,
    LensServerError,
    error_texts,
    http_error,
)
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.protocol import (
    STATUS,
    UPDATE,
    decode_reply,
    encode,
    output_error,
    parse_label,
    read_messages,
    sensor_timestamp_of,
    update_event,
)
from edge_agent.lens.sse import SseParser
from edge_agent.lens.status import SessionStatus, parse_status, status_of
from edge_agent.lens.store import LensRecord, PendingCreate, SessionRecord, SessionStore
from edge_agent.lens.windower import Window
from edge_agent.state_health import StateFileHealth


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("LensSessionStatus.SESSION_STATUS_RUNNING", SessionStatus.RUNNING),
        ("SESSION_STATUS_RUNNING", SessionStatus.RUNNING),
        ("RUNNING", SessionStatus.RUNNING),
        ("3", SessionStatus.RUNNING),
        (3, SessionStatus.RUNNING),
        ("LensSessionStatus.SESSION_STATUS_FAILED", SessionStatus.FAILED),
        ("6", SessionStatus.FAILED),
        ("LensSessionStatus.SESSION_STATUS_REGISTERED", SessionStatus.REGISTERED),
        ("SESSION_STATUS_DESTROYED", SessionStatus.DESTROYED),
        ("SESSION_STATUS_STALE", SessionStatus.STALE),
        ("4", SessionStatus.UNKNOWN),
        ("banana", SessionStatus.UNKNOWN),
        (None, SessionStatus.UNKNOWN),
        (True, SessionStatus.UNKNOWN),
    ],
)
def test_status_forms(raw: object, expected: SessionStatus) -> None:
    assert parse_status(raw) is expected


def test_status_of_records() -> None:
    assert status_of({"session_status": "3"}) is SessionStatus.RUNNING
    assert status_of({"status": "SESSION_STATUS_CREATED"}) is SessionStatus.CREATED
    assert status_of({"event_data": {"session_status": "6"}}).is_terminal
    assert status_of([]) is SessionStatus.UNKNOWN


def test_pacer_rate_in_flight_drop_oldest_and_send_the_newest() -> None:
    pacer: WindowPacer[int] = WindowPacer(max_per_second=2.0, max_in_flight=2, queue_limit=3)
    assert pacer.ready_at(0.0) is None
    assert pacer.slot_at(0.0) == 0.0  # nothing sent yet: a window offered now leaves at once
    for item in range(5):
        pacer.offer(item)
    assert pacer.stats.dropped_queue_full == 2 and pacer.waiting == 3
    assert pacer.ready_at(10.0) == 10.0
    assert pacer.take(10.0) == 4  # the newest goes; 2 and 3 would reach the lens late: superseded
    assert (pacer.stats.superseded, pacer.waiting, pacer.stats.sent) == (2, 0, 1)
    assert pacer.ready_at(10.1) is None and pacer.slot_at(10.1) == pytest.approx(10.5)
    pacer.offer(5)
    assert pacer.ready_at(10.1) == pytest.approx(10.5)
    assert pacer.take(10.5) == 5  # alone: nothing superseded
    assert pacer.stats.superseded == 2
    pacer.offer(6)
    assert pacer.ready_at(11.0) is None and pacer.slot_at(11.0) is None  # two in flight
    pacer.acked()
    assert pacer.ready_at(11.0) == 11.0
    pacer.new_connection()
    assert (pacer.stats.lost_in_flight, pacer.stats.dropped_reconnect, pacer.waiting) == (1, 1, 0)


def test_pacer_with_an_unlimited_rate_sends_every_window_in_order() -> None:
    """No rate limit: windows wait only for acknowledgements, and each goes, oldest first."""
    unlimited: WindowPacer[int] = WindowPacer(float("inf"), 2, 10)
    for item in range(5):
        unlimited.offer(item)
    sent = []
    for now in range(20):
        while (ready := unlimited.ready_at(float(now))) is not None and ready <= now:
            sent.append(unlimited.take(float(now)))
        unlimited.acked()
    assert sent == [0, 1, 2, 3, 4]
    assert unlimited.stats.superseded == 0


def test_pacer_bounds_its_queue_in_bytes_keeping_the_newest() -> None:
    """Items of different sizes against a 100-byte budget: the oldest go until the rest fit (counted
    with the count drops), the bytes waiting never pass the budget, and an item bigger than the whole
    budget is still kept alone (the newest window is always sent)."""
    pacer: WindowPacer[int] = WindowPacer(1.0, 1, 100, queue_bytes=100, cost=lambda item: item)
    for item in (30, 30, 30):
        pacer.offer(item)
    assert (pacer.waiting, pacer.queued_bytes, pacer.stats.dropped_queue_full) == (3, 90, 0)
    pacer.offer(40)  # 130 > 100: the first 30 goes
    assert (pacer.waiting, pacer.queued_bytes, pacer.stats.dropped_queue_full) == (3, 100, 1)
    assert pacer.take(0.0) == 40  # the newest; the two 30s are superseded
    assert (pacer.waiting, pacer.queued_bytes, pacer.stats.superseded) == (0, 0, 2)
    for item in (30, 30):
        pacer.offer(item)
    pacer.offer(250)  # alone over the budget: everything older goes, it stays
    assert (pacer.waiting, pacer.queued_bytes, pacer.stats.dropped_queue_full) == (1, 250, 3)
    assert pacer.stats.peak_queued_bytes == 250
    pacer.offer(10)  # and goes itself as soon as a newer one comes
    assert (pacer.waiting, pacer.queued_bytes) == (1, 10)
    pacer.new_connection()
    assert (pacer.waiting, pacer.queued_bytes) == (0, 0)
    with pytest.raises(ValueError, match="byte bound"):
        WindowPacer(1.0, 1, 10, queue_bytes=100)


SSE_TEXT = (
    b": comment\r\n"
    b"event: message\r\n"
    b'data: {"type": "sse.stream.start"}\r\n'
    b"id: 7\r\n\r\n"
    b"data: line1\ndata: line2\n\n"
    b"id: 8\rdata: x\r\r"
    b"event: other\ndata: caf\xc3\xa9\n\n"
)


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SSE_TEXT)), max_size=10))
def test_sse_parser_is_chunking_independent(cuts: list[int]) -> None:
    parser = SseParser()
    events = []
    start = 0
    for cut in [*sorted(cuts), len(SSE_TEXT)]:
        events.extend(parser.feed(SSE_TEXT[start:cut]))
        start = max(start, cut)
    assert [(e.event, e.data, e.id) for e in events] == [
        ("message", '{"type": "sse.stream.start"}', "7"),
        ("message", "line1\nline2", "7"),
        ("message", "x", "8"),
        ("other", "café", "8"),
    ]
    assert parser.last_event_id == "8"


def window() -> Window:
    return Window("bench", 0, ("a", "b"), [[1.0, 2.0], [3.0, 4.0]], 1.5, 2.5, 10.0, 11.0)


def test_update_event_shape() -> None:
    event = update_event(window(), "")
    assert event == {
        "type": "session.update",
        "event_data": {
            "type": "data.json",
            "event_data": {
                "sensor_data": [[1.0, 2.0], [3.0, 4.0]],
                "sensor_metadata": {"sensor_timestamp": 1.5, "sensor_id": "bench"},
            },
        },
    }
    assert json.loads(encode(event)) == event
    bad = Window("bench", 0, ("a",), [[float("nan")]], 0, 0, 0, 0)
    with pytest.raises(ValueError):
        encode(update_event(bad, "s"))


def test_reply_correlation_by_type() -> None:
    assert decode_reply('{"type": "session.update.response", "event_data": null}').answers == UPDATE
    record = decode_reply('{"session_id": "lsn-1", "session_status": "3"}')
    assert record.answers == STATUS and record.error is None
    err = decode_reply('{"type": "error", "message": "Unknown session id: lsn-x"}')
    assert err.answers == "" and err.error == "Unknown session id: lsn-x"
    timed_out = decode_reply('{"type": "model.query.response", "message": "Response timed out"}')
    assert timed_out.answers == "model.query" and timed_out.error == "Response timed out"
    read = decode_reply('{"type": "session.read.response", "event_data": {"messages": [{"type": "x"}, 3]}}')
    assert read_messages(read) == [{"type": "x"}]
    assert read_messages(decode_reply('{"type": "session.read.response", "event_data": null}')) == []
    with pytest.raises(ValueError):
        decode_reply("[1]")


def test_inference_parsing() -> None:
    result = {
        "type": "inference.result",
        "event_data": {
            "response": ["fault", {"fault": 0.8, "normal": 0.2, "bad": "x"}],
            "query_metadata": {"sensor_metadata": {"sensor_timestamp": 12.5}},
        },
    }
    assert parse_label(result) == ("fault", {"fault": 0.8, "normal": 0.2})
    assert sensor_timestamp_of(result) == 12.5
    assert parse_label({"event_data": {"response": "normal"}}) == ("normal", {})
    assert parse_label({"event_data": {"response": {"class_name": "x"}}}) == ("x", {})
    assert parse_label({"event_data": {"response": []}}) is None
    assert sensor_timestamp_of({"event_data": {"response": []}}) is None
    error = output_error({"type": "inference.error", "event_data": {"error_messages": ["boom"]}})
    assert error is not None and (error.kind, error.text) == ("inference.error", "boom")
    assert output_error(result) is None


def test_error_typing() -> None:
    assert isinstance(http_error(401, "x", [], None, None), LensAuthError)
    assert isinstance(http_error(403, "x", [], None, None), LensAuthError)
    limited = http_error(429, "x", ["rate limited"], None, 2.0)
    assert isinstance(limited, LensRateLimited) and limited.retryable and limited.retry_after == 2.0
    assert isinstance(http_error(503, "x", [], None, None), LensServerError)
    runner = http_error(
        200, "x", ["Failed to allocate lens runner - try stopping an older session!"], None, None
    )
    assert isinstance(runner, LensNoRunner) and runner.retryable
    assert isinstance(http_error(400, "x", ["Unknown session id: lsn-1"], None, None), LensNotFound)
    bad = http_error(422, "POST /x", ["bad field"], "nope", None)
    assert isinstance(bad, LensRequestError) and not bad.retryable
    assert (bad.status, bad.errors, bad.message) == (422, ["bad field"], "nope")
    assert "HTTP 422" in str(bad) and "bad field" in str(bad)
    assert error_texts({"errors": [{"code": "E1"}, "two"], "detail": "d"}) == (["E1", "two"], "d")


def test_session_store_round_trip_and_atomicity(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state")
    assert store.load().sessions == []
    store.add_session(SessionRecord("lsn-1", "lns-a", 1.0))
    store.add_session(SessionRecord("lsn-2", "lns-a", 2.0))
    store.add_lens(LensRecord("lns-a", 0.5))
    client_id = store.client_id()
    assert client_id == store.client_id() and client_id.startswith("edge-agent-")
    assert store.client_id("mine") == "mine"
    store.remove_session("lsn-1")
    state = SessionStore(tmp_path / "state").load()
    assert state.sessions == [SessionRecord("lsn-2", "lns-a", 2.0)]
    assert state.lenses == [LensRecord("lns-a", 0.5)]
    store.remove_lens("lns-a")
    assert store.load().lenses == []
    assert sorted(os.listdir(tmp_path / "state")) == ["lens_sessions.json"]  # no temp files left


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe garbage", b"{not json", b"", b'{"sessions": [{"session_id": 1}]}', b"[1, 2]"],
    ids=["not-utf8", "not-json", "empty", "wrong-record", "wrong-top-level"],
)
def test_damaged_state_file_is_set_aside_and_the_loss_recorded_for_the_orphan_search(
    tmp_path: Path, content: bytes
) -> None:
    health = StateFileHealth()
    store = SessionStore(tmp_path, health=health, wall_clock=lambda: 1234.5)
    store.path.write_bytes(content)
    state = store.load()  # never raises: a damaged record must not stop the agent
    assert state.sessions == [] and state.records_lost_at == 1234.5
    (aside,) = tmp_path.glob("lens_sessions.json.damaged-*")
    assert aside.read_bytes() == content
    assert health.damaged_total == 1
    # The loss is durable until the lifecycle turns it into a search of the org's sessions.
    assert SessionStore(tmp_path).load().records_lost_at == 1234.5
    assert store.fold_lost_records("lns-a") is True
    state = store.load()
    assert state.records_lost_at is None
    assert state.pending_creates == [PendingCreate("lns-a", 0.0, 1234.5)]
    assert store.fold_lost_records("lns-a") is False


def test_outputs_become_inferences_with_window_spans() -> None:
    from edge_agent.lens.outputs import OutputHandler
    from edge_agent.lens.protocol import LensInference

    got: list[LensInference] = []
    handler = OutputHandler("bench", got.append)
    windows = [Window("bench", seq, ("a",), [[0.0]], 10.0 * seq, 10.0 * seq + 5, 0, 0) for seq in range(4)]
    for w in windows:
        handler.ledger.sent(w)
    handler.ledger.forget(1)  # the lens refused window 1 (its buffer was full)
    result = {"type": "inference.result", "event_data": {"response": ["fault", {"fault": 1.0}]}}
    handler.handle(result, "lsn-1", 99.0)
    handler.handle(result, "lsn-1", 99.5)
    assert [(i.window_start, i.window_end) for i in got] == [(0.0, 5.0), (20.0, 25.0)]
    assert got[0].label == "fault" and got[0].session_id == "lsn-1" and got[0].received_at == 99.0
    # An echoed sensor_timestamp wins over order, and skips what the lens passed over.
    echoed = {
        "type": "inference.result",
        "event_data": {"response": ["normal", {}], "sensor_timestamp": 30.0},
    }
    handler.handle(echoed, "lsn-1", 100.0)
    assert (got[-1].window_start, got[-1].label) == (30.0, "normal")
    handler.handle(result, "lsn-1", 101.0)  # nothing left to match: the span is unknown, not invented
    assert got[-1].window_start is None and handler.stats.unmatched == 1
    error = {"type": "inference.error", "event_data": {"error_messages": ["query_id: q-1 failed!"]}}
    for _ in range(3):
        handler.handle(error, "lsn-1", 102.0)
    handler.handle({"type": "sse.stream.heartbeat"}, "lsn-1", 103.0)
    handler.handle({"type": "surprise"}, "lsn-1", 103.0)
    assert handler.stats.errors["inference.error"] == 3
    assert handler.stats.other == {"surprise": 1}
    assert handler.stats.results == 4
