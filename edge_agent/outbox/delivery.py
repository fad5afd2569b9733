"""One claimed job through its handler, and its outcome recorded: delivered (or adopted: found already
made by an attempt whose answer was lost), retried after its backoff, waiting for a prerequisite,
failed, or holding the whole queue (pause.py) when the service, not the job, is at fault.

Groups (model.py): a job waiting for a prerequisite (`Waiting`) steps aside and fails after the
policy's `prerequisite_wait`. All times are on the outbox clock (clock.py).

Logs: a retry is logged per attempt at debug only. The condition behind it is logged once when it
begins and once when it ends: a service-wide failure by the queue's pause (pause.py), a job's own
failure (a retryable 4xx, a handler error) by `outbox_job_retrying` and then
`outbox_job_delivered_after_retries` or `outbox_job_failed`. A poll's "not yet" (NOT_FINISHED_STATUS: the
report it waits for is still running) is no failure: debug only.

A full disk: an outcome (delivered, retry, failed) that cannot be recorded is kept in memory and
recorded again until it is (the job stays in flight meanwhile, so it is neither sent again nor lost).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from edge_agent.backoff import Backoff
from edge_agent.logs import get_logger
from edge_agent.outbox.model import Job, JobHandler, Json, Permanent, Retryable
from edge_agent.outbox.pause import QueuePause
from edge_agent.outbox.policy import NOT_FINISHED_STATUS, WAITING_STATUS, RetryPolicy, is_auth_failure
from edge_agent.outbox.store import JobStore

log = get_logger(__name__)

_T = TypeVar("_T")


class DatabaseCall(Protocol):
    """Runs `fn(*args, **kwargs)` on the outbox's database thread (`Outbox._call`)."""

    def __call__(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Awaitable[_T]: ...


class JobDelivery:
    def __init__(
        self,
        store: JobStore,
        call: DatabaseCall,
        clock: Callable[[], float],
        policy: RetryPolicy,
        rng: random.Random,
        pause: QueuePause,
        handlers: dict[str, JobHandler],
        attempt_timeout: float,
    ) -> None:
        self._store = store
        self._call = call
        self._clock = clock
        self.policy = policy
        self._rng = rng
        self._pause = pause
        self.handlers = handlers
        self.missing_handlers: set[str] = set()  # kinds with a job and no handler yet (/status)
        self._retrying: set[int] = set()  # jobs retried for their own sake, `outbox_job_retrying` logged
        self._attempt_timeout = attempt_timeout

    def add_handler(self, kind: str, handler: JobHandler) -> None:
        self.handlers[kind] = handler
        self.missing_handlers.discard(kind)

    async def attempt(self, job: Job, deps: dict[int, Json]) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            # The reporter may register its handlers after start: wait, visibly, rather than fail.
            if job.kind not in self.missing_handlers:
                self.missing_handlers.add(job.kind)
                log.error("outbox_no_handler", kind=job.kind, job_id=job.id)
            await self._record(
                self._store.mark_retry,
                job.id,
                self._clock() + self.policy.cap,
                f"no handler for kind {job.kind!r}",
                outcome_unknown=job.attempt_started,
            )
            return
        missing = [d for d in job.deps if d not in deps]
        if missing:
            await self._fail(job, {"reason": f"dependency result missing (jobs {missing})"})
            return
        sending = False
        try:
            async with asyncio.timeout(self._attempt_timeout):
                result: Json | None = None
                if job.attempt_started:
                    result = await handler.find_existing(job, deps)
                adopted = result is not None
                if result is None:
                    sending = True
                    result = await handler.deliver(job, deps)
            if not isinstance(result, dict):
                raise TypeError(f"handler for {job.kind!r} returned {type(result).__name__}, not a dict")
        except Retryable as err:
            # A failed look-up leaves the earlier unknown outcome unknown.
            unknown = err.outcome_unknown if sending else True
            if err.status == WAITING_STATUS:
                await self._wait_for_prerequisite(job, err, unknown)
            else:
                await self._retry(
                    job, err.status, err.retry_after, err.message, unknown, service=err.service_wide
                )
        except Permanent as err:
            if is_auth_failure(err):
                await self._block_auth(job, err, unknown=job.attempt_started and not sending)
            else:
                if err.status is not None:
                    self._pause.service_ok(self._clock())
                reason = "rejected by server" if err.status is not None else err.message
                await self._fail(
                    job, {"reason": reason, "status": err.status, "body": err.body, "error": err.message}
                )
        except TimeoutError:
            await self._retry(job, None, None, f"no outcome within {self._attempt_timeout:g} s", True)
        except Exception as exc:  # a handler bug must not kill the worker, nor lose the job
            log.exception("outbox_handler_error", job_id=job.id, kind=job.kind)
            await self._retry(
                job, None, None, f"handler error: {type(exc).__name__}: {exc}", True, service=False
            )
        else:
            await self._record(self._store.mark_done, job.id, result, adopted=adopted)
            if adopted:
                log.info("outbox_job_adopted", job_id=job.id, kind=job.kind, group=job.group)
            if job.id in self._retrying:
                self._retrying.discard(job.id)
                log.info(
                    "outbox_job_delivered_after_retries", job_id=job.id, kind=job.kind, attempts=job.attempts
                )
            self._pause.service_ok(self._clock())

    async def _record(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Record an attempt's outcome; while the disk refuses (SQLITE_FULL, an I/O error) keep it
        and try again, so a delivered job is neither sent again nor left in flight for good. Closing
        the outbox cancels this: the job then waits at the next start with its outcome unknown."""
        backoff = Backoff(0.25, 5.0)
        while True:
            try:
                return await self._call(fn, *args, **kwargs)
            except (sqlite3.OperationalError, OSError) as exc:
                delay = backoff.next_delay()
                if backoff.attempts == 1:
                    log.error("outbox_outcome_not_recorded", error=str(exc), kept_in_memory=True)
                await asyncio.sleep(delay)

    async def _wait_for_prerequisite(self, job: Job, err: Retryable, unknown: bool) -> None:
        """The handler says what the job needs is not there yet (model.py `Waiting`)."""
        now = self._clock()
        since = job.waiting_since if job.waiting_since is not None else now
        if self.policy.waited_too_long(since, now):
            reason = f"prerequisite never appeared within {self.policy.prerequisite_wait:g} s: {err.message}"
            await self._fail(job, {"reason": reason, "status": None, "body": None, "error": err.message})
            return
        delay = self.policy.delay(job.attempts, err.retry_after, self._rng)
        delay = min(delay, max(0.0, since + self.policy.prerequisite_wait - now))
        await self._record(
            self._store.mark_retry,
            job.id,
            now + delay,
            err.message,
            outcome_unknown=unknown,
            waiting_since=since,
        )
        if job.waiting_since is None:
            log.warning(
                "outbox_job_waiting_for_prerequisite",
                job_id=job.id,
                kind=job.kind,
                group=job.group,
                error=err.message[:200],
                gives_up_in_s=self.policy.prerequisite_wait,
            )

    async def _retry(
        self,
        job: Job,
        status: int | None,
        retry_after: float | None,
        message: str,
        outcome_unknown: bool,
        *,
        service: bool = True,
    ) -> None:
        now = self._clock()
        reason = self.policy.give_up_reason(job.attempts, job.created_at, now)
        if reason is not None:
            await self._fail(job, {"reason": reason, "status": status, "body": None, "error": message})
            return
        delay = self.policy.delay(job.attempts, retry_after, self._rng)
        await self._record(
            self._store.mark_retry, job.id, now + delay, message, outcome_unknown=outcome_unknown
        )
        if service and (status is None or status >= 500 or status == 429):
            self._pause.service_failed(now, retry_after, status=status, error=message)
        elif status != NOT_FINISHED_STATUS and job.id not in self._retrying:
            self._retrying.add(job.id)
            log.warning(
                "outbox_job_retrying", job_id=job.id, kind=job.kind, group=job.group, status=status,
                error=message[:200],
            )  # fmt: skip
        log.debug(
            "outbox_retry",
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempts,
            status=status,
            delay_s=round(delay, 3),
            outcome_unknown=outcome_unknown,
            error=message[:200],
        )

    async def _block_auth(self, job: Job, err: Permanent, *, unknown: bool) -> None:
        now = self._clock()
        self._pause.block_auth(now, err.status, err.body)
        await self._record(
            self._store.mark_retry, job.id, now + self.policy.cap, err.message, outcome_unknown=unknown
        )

    async def _fail(self, job: Job, failure: Json) -> None:
        self._retrying.discard(job.id)
        cascaded = await self._record(self._store.mark_failed, job.id, failure)
        log.error(
            "outbox_job_failed",
            job_id=job.id,
            kind=job.kind,
            group=job.group,
            reason=failure.get("reason"),
            status=failure.get("status"),
            body=str(failure.get("body") or "")[:500],
            dependants_failed=cascaded,
        )
