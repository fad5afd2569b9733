"""Lens outputs -> `LensInference` for detection (sans-I/O: messages and times are passed in).

An output is tied back to the window it is about by the `sensor_timestamp` it echoes, when the
lens echoes one; otherwise by order (results arrive in push order), which is only as good as the
lens's promise not to skip windows, so such spans are best-effort.

Errors (`inference.error`, `error`) are logged once per kind and counted every time: a lens that
fails every window must not write a log line a second.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.lens.protocol import LensInference, output_error, parse_label, sensor_timestamp_of
from edge_agent.lens.windower import Window
from edge_agent.logs import get_logger

log = get_logger(__name__)

IGNORED_OUTPUT_TYPES = frozenset(
    {
        "sse.stream.start",
        "sse.stream.heartbeat",
        "sse.stream.end",
        "log.info",
        "frame.processed",
        "session.modify.result",
        "stream.null",
        "stream.status",
        "stream.start",
        "stream.end",
        "inference.start",
        "inference.reset",
    }
)


# SSE framing, not lens outputs: an SSE consumer gets these even when the lens routes elsewhere.
SSE_ENVELOPE_TYPES = frozenset({"sse.stream.start", "sse.stream.heartbeat", "sse.stream.end"})


@dataclass(slots=True)
class OutputStats:
    messages: int = 0  # lens outputs of any type (not SSE framing): the route's proof of life
    results: int = 0
    unlabelled: int = 0  # inference.result without a readable label
    unmatched: int = 0  # results whose window span could not be found
    errors: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)


class WindowLedger:
    """Spans of the windows the lens accepted and has not answered yet, oldest first, so that each
    inference can be given the time span of the window it is about."""

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        # seq -> (start_wall, end_wall); the window's start_wall is its sensor_timestamp.
        self._spans: OrderedDict[int, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._spans)

    def sent(self, window: Window) -> None:
        self._spans[window.seq] = (window.start_wall, window.end_wall)
        while len(self._spans) > self._limit:
            self._spans.popitem(last=False)

    def forget(self, seq: int) -> None:
        """The lens did not take this window (buffer full, or the connection died unanswered)."""
        self._spans.pop(seq, None)

    def match(self, sensor_timestamp: float | None) -> tuple[float, float] | None:
        if sensor_timestamp is None:
            return self._spans.popitem(last=False)[1] if self._spans else None
        for seq, span in self._spans.items():
            if span[0] == sensor_timestamp:
                # Everything sent before it was either answered already or skipped by the lens.
                while self._spans:
                    first, _ = self._spans.popitem(last=False)
                    if first == seq:
                        return span
        return None

    def clear(self) -> None:
        self._spans.clear()


class OutputHandler:
    def __init__(
        self,
        source: str,
        on_inference: Callable[[LensInference], None],
        ledger: WindowLedger | None = None,
    ) -> None:
        self.source = source
        self.on_inference = on_inference
        self.ledger = ledger or WindowLedger()
        self.stats = OutputStats()
        self._logged_kinds: set[str] = set()

    def handle(self, message: dict[str, Any], session_id: str, now_wall: float) -> None:
        kind = message.get("type")
        kind = kind if isinstance(kind, str) else ""
        if kind not in SSE_ENVELOPE_TYPES:
            self.stats.messages += 1
        if kind == "inference.result":
            self._result(message, session_id, now_wall)
            return
        error = output_error(message)
        if error is not None:
            self.stats.errors[error.kind] += 1
            if error.kind not in self._logged_kinds:
                self._logged_kinds.add(error.kind)
                log.warning(
                    "lens_output_error", kind=error.kind, detail=error.text[:300], session_id=session_id,
                    note="logged once per kind; see counters",
                )  # fmt: skip
            return
        if kind not in IGNORED_OUTPUT_TYPES:
            self.stats.other[kind or "(untyped)"] += 1

    def _result(self, message: dict[str, Any], session_id: str, now_wall: float) -> None:
        parsed = parse_label(message)
        if parsed is None:
            self.stats.unlabelled += 1
            if "unlabelled" not in self._logged_kinds:
                self._logged_kinds.add("unlabelled")
                log.warning("lens_result_without_label", session_id=session_id)
            return
        label, scores = parsed
        span = self.ledger.match(sensor_timestamp_of(message))
        if span is None:
            self.stats.unmatched += 1
        self.stats.results += 1
        self.on_inference(
            LensInference(
                label=label,
                scores=scores,
                source=self.source,
                session_id=session_id,
                window_start=span[0] if span else None,
                window_end=span[1] if span else None,
                received_at=now_wall,
                raw=message,
            )
        )
