"""The outbox as an asyncio component: persists jobs, delivers them through their handlers, retries.

Scheduling: ready jobs (waiting, due, first live job of their group, every dependency delivered) are
claimed in id order, at most `concurrency` at a time across groups. All database work runs in one
dedicated thread, so the event loop never waits on SQLite or an fsync.

Whole-queue pauses, on top of each job's own backoff: Atlas is one service, and when it is down for
one job it is down for all of them. A failure without an answer, a 5xx or a 429 pauses every delivery
for a backoff that grows with the consecutive failures (Retry-After honoured), and until a request
succeeds again only one job is attempted at a time. 10,000 waiting jobs therefore cost one probe per
backoff period during an outage, not 10,000 requests and 20,000 fsyncs.

401/403 (`blocked_auth`): a bad token is not a bad job. The queue pauses, `/status` reports
`blocked: auth` with the server's answer, and one job probes every `retry_cap` until it succeeds.

Groups (model.py): a job waiting for a prerequisite (`Waiting`) steps aside and fails after the
policy's `prerequisite_wait`; `/status` lists each held group (its head, the head's state, why it
waits) and each job waiting for a prerequisite. All times are on the outbox clock (clock.py).

A full disk: an outcome (delivered, retry, failed) that cannot be recorded is kept in memory and
recorded again until it is (the job stays in flight meanwhile, so it is neither sent again nor lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.backoff import Backoff
from edge_agent.config import OutboxSection
from edge_agent.logs import get_logger
from edge_agent.outbox.clock import OutboxClock
from edge_agent.outbox.model import (
    Job,
    JobHandler,
    JobSpec,
    JobState,
    Json,
    OutboxError,
    Permanent,
    Retryable,
)
from edge_agent.outbox.policy import WAITING_STATUS, RetryPolicy, is_auth_failure
from edge_agent.outbox.recovery import RecoveryReport
from edge_agent.outbox.store import JobStore
from edge_agent.outbox.views import failures, group_heads, waiting_for_prerequisites
from edge_agent.state_files import StateFileHealth

log = get_logger(__name__)

DB_FILE_NAME = "outbox.sqlite3"
MAX_SHOWN = 20  # entries of each list on /status
# Safety net for the sleep between scheduling rounds: wall-clock jumps must not park the queue for long.
MAX_IDLE_WAIT = 30.0
_T = TypeVar("_T")


class Outbox:
    """`await start()`, `await enqueue(...)`, `await drain(deadline)` then `await close()` at shutdown."""

    def __init__(
        self,
        state_dir: Path,
        section: OutboxSection,
        handlers: Mapping[str, JobHandler] | None = None,
        *,
        concurrency: int = 4,
        attempt_timeout: float = 300.0,
        policy: RetryPolicy | None = None,
        synchronous: str = "FULL",
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        db_name: str = DB_FILE_NAME,
        health: StateFileHealth | None = None,
    ) -> None:
        self.section = section
        self.policy = policy or RetryPolicy.from_section(section)
        self._handlers: dict[str, JobHandler] = dict(handlers or {})
        self._concurrency = max(1, concurrency)
        self._attempt_timeout = attempt_timeout
        self.clock = OutboxClock(mono, wall)
        self._clock = self.clock.now
        self._wall = wall
        self._rng = rng or random.Random()
        self._store = JobStore(
            Path(state_dir) / db_name,
            max_jobs=section.max_jobs,
            max_disk_bytes=int(section.max_disk_mb * 1024 * 1024),
            files_root=Path(state_dir),
            synchronous=synchronous,
            clock=self.clock,
            health=health,
        )
        self._executor: ThreadPoolExecutor | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._service_failures = 0
        self._pause_until = 0.0
        self._blocked: Json | None = None
        self._missing_handlers: set[str] = set()
        self._background: set[str] = set()  # kinds a drain does not wait for (register)
        # Between a claim's commit and its tasks' creation the jobs are in no list: drain must wait.
        self._claiming = False

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> RecoveryReport | None:
        """Open the database (recovering a damaged one) and start delivering."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        report = await self._call(self._store.open)
        self._loop_task = asyncio.create_task(self._run(), name="outbox")
        counts = await self._call(self._store.counts)
        log.info("outbox_started", path=str(self._store.path), **counts)
        return report

    def register(self, kind: str, handler: JobHandler, *, background: bool = False) -> None:
        """`background`: jobs of this kind wait on a server's progress, not on delivery (polling a
        report until it is done): `drain` does not wait for them; they go on at the next start."""
        self._handlers[kind] = handler
        self._missing_handlers.discard(kind)
        if background:
            self._background.add(kind)
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    async def drain(self, deadline: float | None = None) -> bool:
        """Keep delivering until nothing is ready, in flight or due for a retry before the end, or
        `deadline` seconds passed (default `drain_deadline`). True when no job is left waiting; jobs
        still waiting (Atlas down, a Retry-After past the end) stay on disk and give False. Background
        kinds (`register`) are not waited for: they are not deliveries but polls, and go on at the
        next start; one in flight is still let finish (or cut off by `close`)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + (self.section.drain_deadline if deadline is None else deadline)
        background = sorted(self._background)
        while True:
            if not self._tasks and not self._claiming:
                left = end - loop.time()
                # Read the clock before asking what is ready: a job that comes due between the two
                # questions is then either ready or still counted as due later, never neither (that
                # gap once ended a drain with a retry 60 ms away).
                now = self._clock()
                paused_past_end = self._pause_until - now > left
                if paused_past_end or not await self._call(self._store.has_ready, background):
                    # A job backing off after a transient failure (a 503, a dropped connection) is
                    # retried if its turn comes before the end: a short outage at shutdown loses nothing.
                    due = await self._call(self._store.next_due, now, background)
                    if due is None:
                        return True
                    if paused_past_end or due - now > left:
                        return False
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            self.wake()
            await asyncio.sleep(min(0.02, remaining))

    async def close(self) -> None:
        """Stop: attempts still running are cut off and wait again with their outcome unknown."""
        self._stopping = True
        tasks = list(self._tasks.values())
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        if self._executor is not None:
            with contextlib.suppress(Exception):
                await self._call(self._store.release_in_flight)
            await self._call(self._store.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- adding jobs ------------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        group: str,
        payload: Json | None = None,
        *,
        deps: Sequence[int] = (),
        priority: int = 0,
    ) -> int:
        """Persist one job (committed before this returns) and wake the worker; returns its id."""
        ids = await self.enqueue_many([JobSpec(kind, group, payload or {}, tuple(deps), priority)])
        return ids[0]

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[int]:
        """Persist jobs atomically (all or none); `BatchRef(i)` in deps names the batch's i-th job."""
        try:
            ids = await self._call(self._store.add, list(specs))
        except ValueError:
            raise
        except Exception as exc:  # sqlite3.Error, OSError: the caller must know nothing was persisted
            raise OutboxError(f"could not persist {len(specs)} job(s): {exc}") from exc
        self.wake()
        return ids

    # --- reading ----------------------------------------------------------------------------------

    async def job(self, job_id: int) -> Job | None:
        return await self._call(self._store.get, job_id)

    async def jobs(self, state: JobState | None = None, limit: int = 1000) -> list[Job]:
        return await self._call(self._store.jobs, state, limit)

    async def latest(self, kind: str, state: JobState, limit: int = 50) -> list[Job]:
        return await self._call(self._store.latest, kind, state, limit)

    async def counts(self) -> dict[str, int]:
        return await self._call(self._store.counts)

    async def backlog(self) -> tuple[dict[str, int], float]:
        """For the metrics: depth by state, and the age in seconds of the oldest job not yet
        delivered (0 when none waits), in one trip to the database thread."""

        def read() -> tuple[dict[str, int], float]:
            oldest = self._store.oldest_live_created_at()
            age = 0.0 if oldest is None else max(0.0, self._clock() - oldest)
            return self._store.counts(), age

        return await self._call(read)

    @property
    def blocked_reason(self) -> str | None:
        """Why the whole queue is paused (`auth`: Atlas refuses the token), or None while it is not."""
        return None if self._blocked is None else str(self._blocked.get("reason"))

    @property
    def counters(self) -> dict[str, int]:
        """Since the database was created: enqueued, delivered, adopted, retries, failed, purged,
        shed.<reason>, corrupt_recovered."""
        return dict(self._store.counters)

    async def status(self) -> Json:
        """For `/status`: depth by state, the failed jobs with the server's answers, pauses, counters."""

        def snapshot() -> Json:
            oldest = self._store.oldest_live_created_at()
            return {
                "depth": self._store.counts(),
                "oldest_waiting_s": None if oldest is None else max(0.0, self._clock() - oldest),
                "failures": failures(self._store.db, 20),
                "disk_bytes": self._store.bytes,
                "rows": self._store.rows,
            }

        snap = await self._call(snapshot)
        recovery = self._store.recovery
        restored = self._store.restored
        return {
            **snap,
            "held_groups": (await self.held_groups())[:MAX_SHOWN],
            "waiting_for_prerequisites": await self._call(
                waiting_for_prerequisites,
                self._store.db,
                self._clock(),
                self.policy.prerequisite_wait,
                MAX_SHOWN,
            ),
            "lost_commits": restored.as_dict() if restored else None,
            "in_flight": len(self._tasks),
            "blocked": dict(self._blocked) if self._blocked else None,
            "paused_for_s": max(0.0, self._pause_until - self._clock()),
            "service_failures": self._service_failures,
            "missing_handlers": sorted(self._missing_handlers),
            "counters": self.counters,
            "quota": {"max_jobs": self._store.max_jobs, "max_disk_bytes": self._store.max_disk_bytes},
            "recovery": recovery.as_dict() if recovery else None,
        }

    async def held_groups(self) -> list[Json]:
        """Each group whose head is not being delivered now, with the head and why (worker doc)."""
        now = self._clock()
        heads = await self._call(group_heads, self._store.db, now)
        pause: str | None = None
        if self._blocked is not None:
            pause = f"queue paused: Atlas refuses the credential (HTTP {self._blocked.get('status')})"
        elif self._pause_until > now:
            pause = f"queue paused {self._pause_until - now:.1f} s more: Atlas unreachable or overloaded"
        held = []
        for head in heads:
            if pause is not None and head["head"]["state"] != JobState.IN_FLIGHT:
                head["why"] = pause + (f"; {head['why']}" if head["why"] else "")
            if head["why"] is not None:
                held.append(head)
        return held

    # --- the delivery loop ------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self._executor is None:
            raise OutboxError("outbox is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _run(self) -> None:
        failing: str | None = None  # the loop's error while it lasts: logged once, not every second
        while not self._stopping:
            self._wakeup.clear()
            try:
                claimed_at = await self._dispatch()
                wait = await self._idle_wait(claimed_at)
            except Exception as exc:  # disk full, I/O error: keep the agent alive and try again
                error = f"{type(exc).__name__}: {exc}"
                if error != failing:
                    log.exception("outbox_loop_error")
                failing = error
                wait = 1.0
            else:
                if failing is not None:
                    log.warning("outbox_loop_recovered", was=failing)
                failing = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def healthy(self) -> bool:
        """False while deliveries fail for the service's sake (outage, 5xx, 429, auth block)."""
        return not self._probing()

    def _probing(self) -> bool:
        return self._service_failures > 0 or self._blocked is not None

    async def _dispatch(self) -> float | None:
        """Claim and start what is ready; returns the time the claim looked at (None: no claim made)."""
        if self._stopping or self._clock() < self._pause_until:
            return None
        limit = (1 if self._probing() else self._concurrency) - len(self._tasks)
        if limit <= 0:
            return None  # a completion wakes the loop
        now = self._clock()
        self._claiming = True
        try:
            claimed = await self._call(self._store.claim, limit, now)
        finally:
            self._claiming = False
        for job, deps in claimed:
            task = asyncio.create_task(self._attempt(job, deps), name=f"outbox-job-{job.id}")
            self._tasks[job.id] = task
            task.add_done_callback(functools.partial(self._finished, job.id))
        return now

    def _finished(self, job_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox_attempt_crashed", job_id=job_id, error=repr(task.exception()))
        self.wake()

    async def _idle_wait(self, claimed_at: float | None) -> float:
        now = self._clock()
        if self._pause_until > now:
            return min(MAX_IDLE_WAIT, self._pause_until - now)
        if claimed_at is None:
            return MAX_IDLE_WAIT
        next_due = await self._call(self._store.next_due, claimed_at)
        if next_due is None:
            return MAX_IDLE_WAIT
        return min(MAX_IDLE_WAIT, max(0.0, next_due - now))

    async def _attempt(self, job: Job, deps: dict[int, Json]) -> None:
        handler = self._handlers.get(job.kind)
        if handler is None:
            # The reporter may register its handlers after start: wait, visibly, rather than fail.
            if job.kind not in self._missing_handlers:
                self._missing_handlers.add(job.kind)
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
                    self._service_ok()
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
            self._service_ok()

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

    def _service_ok(self) -> None:
        if self._blocked is not None:
            log.warning("outbox_unblocked", was=self._blocked.get("reason"))
        self._blocked = None
        self._service_failures = 0
        self._pause_until = 0.0

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
            self._service_failures += 1
            pause = self.policy.delay(self._service_failures, retry_after, self._rng)
            self._pause_until = max(self._pause_until, now + pause)
        log.info(
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
        if self._blocked is None:
            log.error("outbox_blocked_auth", status=err.status, body=err.body[:500])
        self._blocked = {"reason": "auth", "status": err.status, "body": err.body, "since": now}
        self._pause_until = now + self.policy.cap
        await self._record(
            self._store.mark_retry, job.id, now + self.policy.cap, err.message, outcome_unknown=unknown
        )

    async def _fail(self, job: Job, failure: Json) -> None:
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
