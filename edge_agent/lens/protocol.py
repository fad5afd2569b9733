"""Sans-I/O lens wire protocol: the events this agent sends and how replies and outputs are read.

The session websocket is request/response: every event gets exactly one reply, typed
`<event>.response`, except `session.status`, whose reply is the session record itself. Errors come
back as `{"type": "error", "message": ...}`. Replies are matched to requests by their type, never
by position alone (a heartbeat's reply must not be taken for an update's).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from edge_agent.lens.windower import Window

UPDATE = "session.update"
READ = "session.read"
STATUS = "session.status"
HEARTBEAT = "session.heartbeat"
RESPONSE_SUFFIX = ".response"
ERROR = "error"


def update_event(window: Window, sensor_id: str) -> dict[str, Any]:
    """The `session.update` event carrying one channel-first window (`data.json`)."""
    return {
        "type": UPDATE,
        "event_data": {
            "type": "data.json",
            "event_data": {
                "sensor_data": [list(column) for column in window.data],
                "sensor_metadata": {
                    "sensor_timestamp": window.start_wall,
                    "sensor_id": sensor_id or window.source,
                },
            },
        },
    }


def read_event(client_id: str) -> dict[str, Any]:
    return {"type": READ, "event_data": {"client_id": client_id}}


def status_event() -> dict[str, Any]:
    return {"type": STATUS}


def heartbeat_event() -> dict[str, Any]:
    return {"type": HEARTBEAT}


def encode(event: dict[str, Any]) -> str:
    # allow_nan=False: a NaN that slipped past the windower must fail here, loudly, not reach the lens.
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


@dataclass(slots=True, frozen=True)
class Reply:
    """A decoded websocket message. `answers` is the request type it replies to ("" for an error
    or anything not recognisable as a reply)."""

    answers: str
    body: dict[str, Any]
    error: str | None = None


def decode_reply(raw: str | bytes) -> Reply:
    """Decode one websocket message; raises ValueError if it is not a JSON object."""
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("reply is not a JSON object")
    kind = body.get("type")
    if isinstance(kind, str):
        if kind.endswith(RESPONSE_SUFFIX):
            error = _error_text(body) if _is_failure(body) else None
            return Reply(kind[: -len(RESPONSE_SUFFIX)], body, error)
        if kind in (ERROR, "error_message"):
            return Reply("", body, _error_text(body) or "error")
    if "session_status" in body or "session_id" in body:
        return Reply(STATUS, body)
    return Reply("", body, _error_text(body) if _is_failure(body) else None)


def _is_failure(body: dict[str, Any]) -> bool:
    data = body.get("event_data")
    if isinstance(data, dict) and (
        data.get("is_valid") is False or data.get("errors") or data.get("error_messages")
    ):
        return True
    return bool(body.get("errors")) or (body.get("event_data") is None and "message" in body)


def _error_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for holder in (body, body.get("event_data")):
        if not isinstance(holder, dict):
            continue
        for key in ("message", "error_messages", "errors"):
            value = holder.get(key)
            if isinstance(value, list):
                parts.extend(str(v) for v in value)
            elif value:
                parts.append(str(value))
    return "; ".join(parts)


@dataclass(slots=True, frozen=True)
class LensInference:
    """One lens output about one window, as detection consumes it."""

    label: str
    scores: dict[str, float]
    source: str
    session_id: str
    window_start: float | None  # Unix seconds of the window's first and last samples, when known
    window_end: float | None
    received_at: float
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(slots=True, frozen=True)
class OutputError:
    """An `inference.error` or `error` output: logged once per kind, counted always."""

    kind: str
    text: str


def update_accepted(reply: Reply) -> bool:
    """Whether the lens queued the window (`accepted: false` = its buffer was full). A reply that
    does not say is taken as accepted."""
    data = reply.body.get("event_data")
    return not (isinstance(data, dict) and data.get("accepted") is False) and reply.error is None


def read_messages(reply: Reply) -> list[dict[str, Any]]:
    """The outputs carried by a `session.read` reply (`event_data.messages`, or none: null)."""
    data = reply.body.get("event_data")
    if not isinstance(data, dict):
        return []
    messages = data.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def sensor_timestamp_of(message: dict[str, Any]) -> float | None:
    """The `sensor_timestamp` an output echoes, wherever it is carried (not all lenses echo it)."""
    holders: list[Any] = [message, message.get("event_data"), message.get("data")]
    data = message.get("event_data")
    if isinstance(data, dict):
        meta = data.get("query_metadata")
        holders.append(meta)
        if isinstance(meta, dict):
            holders.append(meta.get("query_metadata"))
            holders.append(meta.get("sensor_metadata"))
        holders.append(data.get("sensor_metadata"))
    for holder in holders:
        if isinstance(holder, dict):
            value = holder.get("sensor_timestamp")
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
    return None


def parse_label(message: dict[str, Any]) -> tuple[str, dict[str, float]] | None:
    """(label, scores) of an `inference.result`, from `event_data.response` = [label, {scores}]
    (the attested shape) or the looser forms some parsers accept; None if there is no label."""
    data = message.get("event_data")
    if not isinstance(data, dict):
        data = message.get("data")
    if not isinstance(data, dict):
        return None
    response = data.get("response", data.get("result"))
    label: Any = None
    scores_raw: Any = None
    if isinstance(response, list) and response:
        label = response[0]
        scores_raw = response[1] if len(response) > 1 else None
    elif isinstance(response, str):
        label = response
    elif isinstance(response, dict):
        label = response.get("label", response.get("class_name", response.get("prediction")))
        scores_raw = response.get("scores")
    if not isinstance(label, str) or not label:
        return None
    scores: dict[str, float] = {}
    if isinstance(scores_raw, dict):
        for key, value in scores_raw.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                scores[str(key)] = float(value)
    return label, scores


def output_error(message: dict[str, Any]) -> OutputError | None:
    """An error-type output (`inference.error`, `error`, `error_message`), else None."""
    kind = message.get("type")
    if not isinstance(kind, str) or not (kind == "inference.error" or kind.startswith("error")):
        return None
    return OutputError(kind, _error_text(message) or kind)
