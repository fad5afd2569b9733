"""One lens session of the Archetype lens emulator, sans-I/O: its status (warm-up, running, ended),
the window buffer a `session.update` fills, inference into outputs, the `session.read` mailboxes,
and the records the REST calls and the websocket return for it. Lenses and the status names are
here too. Every method that depends on time takes `now` (Unix seconds).

Sources for shapes and rules are in shared/research/archetype-protocol.md (§ numbers below);
what no source settles is marked INFERRED.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.emulators.lens_model import LensModel

STATUS_PREFIX = "LensSessionStatus."
REGISTERED = "SESSION_STATUS_REGISTERED"
RUNNING = "SESSION_STATUS_RUNNING"
FAILED = "SESSION_STATUS_FAILED"
DESTROYED = "SESSION_STATUS_DESTROYED"
STALE = "SESSION_STATUS_STALE"
# A session in one of these states still holds its runner slot (orphans do: §7).
SLOT_HOLDING = frozenset({REGISTERED, RUNNING, FAILED})
TERMINAL = frozenset({DESTROYED, STALE})

NO_RUNNER_ERROR = "Failed to allocate lens runner - try stopping an older session!"  # §2.2, verbatim
DEFAULT_TTL_SEC = 86400
DEFAULT_LENS_CONFIG: dict[str, Any] = {
    "model_pipeline": [{"processor_name": "lens_timeseries_state_processor", "processor_config": {}}]
}

Event = dict[str, Any]
# Where a lens delivers its outputs: the real service routes them to the SSE consumer or to the
# `session.read` mailboxes, never both (§5.1); "both" is the emulator's lenient default.
Route = str
BOTH, SESSION_READ, SSE = "both", "session_read", "sse"


def _both() -> Route:
    return BOTH


def prefixed(status: str) -> str:
    """The WS `session.status` reply and the create response use the enum-prefixed form (§2.3)."""
    return STATUS_PREFIX + status


def error_event(message: str) -> Event:
    """The event-level error shape captured live (§2.4)."""
    return {"type": "error", "message": message}


def unknown_session(session_id: str) -> Event:
    return error_event(f"Unknown session id: {session_id}")


@dataclass
class Lens:
    lens_id: str
    lens_name: str
    lens_config: dict[str, Any]
    lens_modifiable: bool
    registration_timestamp: float

    def metadata(self) -> dict[str, Any]:
        return {
            "lens_id": self.lens_id,
            "lens_name": self.lens_name,
            "lens_config": self.lens_config,
            "lens_modifiable": self.lens_modifiable,
            "registration_timestamp": self.registration_timestamp,
        }


@dataclass
class Counts:
    events: int = 0
    updates: int = 0  # session.update events received, valid or not
    invalid_updates: int = 0
    windows_accepted: int = 0
    windows_dropped: int = 0  # buffer full: the real service drops them silently (§7 "102 pushes")
    inferences: int = 0
    inference_errors: int = 0
    reads: int = 0
    heartbeats: int = 0
    mailbox_overflow: int = 0


@dataclass
class Output:
    """One produced output: its SSE id and the event as both SSE and session.read deliver it."""

    event_id: int
    event: Event


@dataclass
class LensSession:
    session_id: str
    lens: Lens
    org_id: str
    runner: str
    endpoint: str
    registration_timestamp: float
    ready_at: float
    model: LensModel
    buffer_windows: int
    retain_outputs: int
    status: str = REGISTERED
    last_event_timestamp: float = 0.0
    last_update_timestamp: float = 0.0
    session_start_timestamp: float | None = None
    session_destroyed_timestamp: float | None = None
    active_connections: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    buffer: deque[list[list[float]]] = field(default_factory=deque)
    mailboxes: dict[str, deque[Event]] = field(default_factory=dict)
    outputs: deque[Output] = field(default_factory=deque)
    last_frame_id: int = 0
    route: Callable[[], Route] = _both

    # -- lifecycle -------------------------------------------------------------------------------

    def refresh(self, now: float) -> None:
        """Warm-up is over once `now` passes `ready_at`: REGISTERED -> RUNNING."""
        if self.status == REGISTERED and now >= self.ready_at:
            self.status = RUNNING
            self.session_start_timestamp = self.ready_at
            self.last_update_timestamp = max(self.last_update_timestamp, self.ready_at)

    @property
    def live(self) -> bool:
        return self.status not in TERMINAL

    def terminate(self, status: str, now: float) -> None:
        self.status = status
        self.session_destroyed_timestamp = now
        self.last_update_timestamp = now
        self.buffer.clear()

    # -- data path ---------------------------------------------------------------------------------

    def push(self, window: list[list[float]]) -> bool:
        """Queue one window for inference; False (and counted) when the buffer is full."""
        if len(self.buffer) >= self.buffer_windows:
            self.counts.windows_dropped += 1
            return False
        self.buffer.append(window)
        self.counts.windows_accepted += 1
        return True

    def next_frame_id(self) -> int:
        """SSE ids are per session and monotonic over every frame, so Last-Event-ID is a position."""
        self.last_frame_id += 1
        return self.last_frame_id

    def infer(self, now: float, query_time_sec: float) -> Output | None:
        """Classify the oldest buffered window and deliver the result to every mailbox."""
        if not self.buffer or self.status != RUNNING:
            return None
        window = self.buffer.popleft()
        try:
            label, scores = self.model.classify(window)
        except ValueError as exc:
            self.counts.inference_errors += 1
            # Shape seen on SSE (§2.4): the real service names every lens query session-modify-qry-.
            query_id = f"session-modify-qry-{self.counts.inferences + self.counts.inference_errors}"
            event: Event = {
                "type": "inference.error",
                "event_data": {"error_messages": [f"query_id: {query_id} failed! {exc}"]},
                "timestamp": now,
            }
        else:
            self.counts.inferences += 1
            event = {
                "type": "inference.result",
                "event_data": {
                    "response": [label, scores],
                    # Only query_timestamp is attested for pushed windows (§5.2); sensor_id is not echoed
                    # ("Newton doesn't echo this back today", §4.1), so clients must map results to pushes
                    # by FIFO order, as they must against the real service. Float seconds: INFERRED.
                    "query_metadata": {"query_timestamp": now},
                    "query_time_sec": query_time_sec,
                },
                "timestamp": now,
            }
        self.last_update_timestamp = now
        output = Output(self.next_frame_id(), event)
        self.outputs.append(output)
        while len(self.outputs) > self.retain_outputs:
            self.outputs.popleft()
        if self.route() == SSE:
            return output  # an SSE-routed lens leaves the mailboxes empty (§5.1)
        for mailbox in self.mailboxes.values():
            if len(mailbox) >= self.retain_outputs:
                mailbox.popleft()
                self.counts.mailbox_overflow += 1
            mailbox.append(event)
        return output

    def read(self, client_id: str) -> list[Event] | None:
        """Drain `client_id`'s mailbox; None when it is empty (§5.3 `event_data: null`).

        A client_id seen for the first time starts from the retained outputs: the docs say "use a
        new client_id to reset message stream playback" (§5.3).
        """
        self.counts.reads += 1
        mailbox = self.mailboxes.get(client_id)
        if mailbox is None:
            replay = self.outputs if self.route() != SSE else ()
            mailbox = deque(output.event for output in replay)
            self.mailboxes[client_id] = mailbox
        if not mailbox:
            return None
        messages = list(mailbox)
        mailbox.clear()
        return messages

    # -- records -----------------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """The create-response record (§2.2) without `api_key` (only the create call echoes it)."""
        return {
            "org_id": self.org_id,
            "session_id": self.session_id,
            "lens_id": self.lens.lens_id,
            "lens_name": self.lens.lens_name,
            "input_data_stream_id": None,
            "output_data_stream_id": None,
            "registration_timestamp": self.registration_timestamp,
            "last_event_timestamp": self.last_event_timestamp,
            "last_update_timestamp": self.last_update_timestamp,
            "session_start_timestamp": self.session_start_timestamp,
            "session_destroyed_timestamp": self.session_destroyed_timestamp,
            "num_active_connections": self.active_connections,
            "num_updates": self.counts.updates,
            "num_inputs": self.counts.windows_accepted,
            "num_outputs": self.counts.inferences + self.counts.inference_errors,
            "num_events": self.counts.events,
            "lens_config": self.lens.lens_config,
            "session_status": prefixed(self.status),
            "session_runner": self.runner,
            "session_endpoint": self.endpoint,
            "node_tag": "default",
            "session_ttl_sec": DEFAULT_TTL_SEC,
        }

    def metadata_item(self, now: float) -> dict[str, Any]:
        """`/lens/sessions/metadata` item (D-meta): bare status."""
        return {
            "session_id": self.session_id,
            "lens_id": self.lens.lens_id,
            "last_update_timestamp": self.last_update_timestamp,
            "session_status": self.status,
            "session_endpoint": self.endpoint,
            "session_duration_sec": self._duration(now),
        }

    def destroy_item(self, now: float) -> dict[str, Any]:
        """`/lens/sessions/destroy` reply (D-destroy, current revision)."""
        return {
            "session_id": self.session_id,
            "lens_id": self.lens.lens_id,
            "last_update_timestamp": self.last_update_timestamp,
            "session_status": self.status,
            "session_runner": self.runner,
            "session_endpoint": self.endpoint,
            "session_duration_sec": self._duration(now),
        }

    def _duration(self, now: float) -> float:
        end = self.session_destroyed_timestamp if self.session_destroyed_timestamp is not None else now
        return max(0.0, end - self.registration_timestamp)

    def state(self, now: float) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "lens_id": self.lens.lens_id,
            "status": self.status,
            "runner": self.runner,
            "registration_timestamp": self.registration_timestamp,
            "session_start_timestamp": self.session_start_timestamp,
            "session_destroyed_timestamp": self.session_destroyed_timestamp,
            "duration_sec": self._duration(now),
            "active_connections": self.active_connections,
            "buffered_windows": len(self.buffer),
            "clients": sorted(self.mailboxes),
            "counts": {
                "events": self.counts.events,
                "updates_received": self.counts.updates,
                "invalid_updates": self.counts.invalid_updates,
                "windows_accepted": self.counts.windows_accepted,
                "windows_dropped": self.counts.windows_dropped,
                "inferences": self.counts.inferences,
                "inference_errors": self.counts.inference_errors,
                "reads": self.counts.reads,
                "heartbeats": self.counts.heartbeats,
                "mailbox_overflow": self.counts.mailbox_overflow,
            },
        }
