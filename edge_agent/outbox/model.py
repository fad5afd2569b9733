"""The outbox's vocabulary: jobs, their states, the errors a handler raises, and the handler protocol.

The outbox is generic: it knows nothing about Atlas. A *kind* names a handler (the Atlas reporter
registers "upload_evidence", "create_issue", ...); a *group* is an ordering key (an anomaly id). A job
may need the *results* of earlier jobs (an issue needs the session id and the attachment ids): those
are its `deps`, and the handler receives them.

What a group guarantees: its jobs are delivered in id order, one at a time, and a job that is waiting
to be retried (an outage, a 5xx) holds the rest of its group. Two kinds of job never hold it:
- one that can never be delivered: failed for good (rejected, given up, `Unsatisfiable`, a failed or
  shed dependency) is skipped, with its reason kept on /status, and its dependants fail with it; the
  rest of the group goes on in order;
- one waiting for a prerequisite (`Waiting`: "the issue this comment is for is not there yet") steps
  aside: later jobs of its group go ahead (order is kept among them), and it is delivered when its
  prerequisite appears or fails after the policy's `prerequisite_wait`. A job that must come after it
  declares it as a dependency, not only by sharing the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

Json = dict[str, Any]

# Bodies kept for /status are the server's answer, trimmed: enough for a human, bounded on disk.
MAX_BODY_CHARS = 4000


class JobState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"
    SHED = "shed"


LIVE_STATES = (JobState.PENDING, JobState.IN_FLIGHT)
TERMINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.SHED)


@dataclass(slots=True, frozen=True)
class Job:
    """One stored job. `attempt_started` is set (durably) before a send and cleared when an outcome is
    recorded: found set on a pending job, it means an earlier attempt may have reached the server."""

    id: int
    kind: str
    group: str
    payload: Json
    deps: tuple[int, ...]
    priority: int
    state: JobState
    attempts: int
    next_attempt_at: float
    attempt_started: bool
    last_error: str | None
    result: Json | None
    failure: Json | None
    created_at: float
    updated_at: float
    size_bytes: int
    files: tuple[str, ...]
    waiting_since: float | None = None  # waiting for a prerequisite since (outbox clock): stepped aside


@dataclass(slots=True, frozen=True)
class BatchRef:
    """In `enqueue_many`, a dependency on the batch's job at this index (its id is not known yet)."""

    index: int


@dataclass(slots=True, frozen=True)
class JobSpec:
    """A job to add. `payload["files"]` (a list of paths) are evidence files owned by the job: they count
    to the disk quota and are deleted once the job is done or shed."""

    kind: str
    group: str
    payload: Json = field(default_factory=dict)
    deps: tuple[int | BatchRef, ...] = ()
    priority: int = 0  # higher is more important: shed last


class DeliveryError(Exception):
    """Base of what a handler raises to tell the outbox how an attempt ended."""


class Retryable(DeliveryError):
    """Try again later. `status` None = no HTTP answer (timeout, connection refused or lost).

    `outcome_unknown`: the request may have been acted on (timeout, connection lost after sending, a
    5xx, a 409): before the next send the outbox asks the handler's `find_existing`. Defaults to True
    unless the server answered 408/425/429 (request not processed). A handler that knows nothing was
    sent (connection refused) passes False.

    `service_wide`: the failure says the service as a whole is failing (a 5xx, a 429, no answer), so
    the worker pauses every delivery for a while. A handler that knows the failure is this job's
    request alone (an upload path refusing while the rest of the API answers) passes False: the job
    backs off (at least `retry_after`) and the other jobs go on.
    """

    def __init__(
        self,
        status: int | None = None,
        retry_after: float | None = None,
        message: str = "",
        *,
        outcome_unknown: bool | None = None,
        service_wide: bool = True,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.service_wide = service_wide
        self.message = message or (f"HTTP {status}" if status is not None else "no answer")
        if outcome_unknown is None:
            outcome_unknown = status is None or status >= 500 or status == 409
        self.outcome_unknown = outcome_unknown
        super().__init__(self.message)


class Waiting(Retryable):
    """The job's prerequisite is not there yet (the issue a comment is for has not been found, the
    previous issue of a repeat is not made yet). Not an outage: the queue is not paused. The job steps
    aside in its group (module doc), is tried again after `retry_after` (or the backoff), and fails
    with this message as its reason once it has waited the policy's `prerequisite_wait`.

    A `Retryable` with status 425 (Too Early) from a handler is read the same way."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(425, retry_after, message, outcome_unknown=False)


class Permanent(DeliveryError):
    """Never retry: the job is kept as `failed` with the server's answer for a human (on /status).

    401/403 are the exception: the worker treats them as a bad credential, not a bad job (see worker).
    """

    def __init__(self, status: int | None, body: str, message: str = "") -> None:
        self.status = status
        self.body = body[:MAX_BODY_CHARS]
        self.message = message or (f"HTTP {status}" if status is not None else "rejected")
        super().__init__(self.message)


class Unsatisfiable(Permanent):
    """The job can never be delivered: what it needs can never exist (its issue was never created,
    a payload it needs can never be produced). Fails at once with `reason`; never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, "", reason)


class JobHandler(Protocol):
    """Delivers one kind of job. `deps` maps each dependency's job id to its recorded result."""

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        """Send the job; return what later jobs need (ids). Raise Retryable or Permanent."""
        ...

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        """Called before re-sending a job whose earlier attempt has an unknown outcome: look for what
        that attempt may have created (e.g. the `edge-agent:<anomaly-id>` tag among recent issues) and
        return it as the job's result, or None if it is not there. May raise Retryable."""
        ...


class OutboxError(Exception):
    """The outbox could not do what was asked (e.g. a job could not be persisted: disk full)."""
