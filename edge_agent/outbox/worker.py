"""The outbox as an asyncio component: persists jobs, delivers them through their handlers, retries.

Scheduling: ready jobs (waiting, due, first live job of their group, every dependency delivered) are
claimed in id order, at most `concurrency` at a time across groups. All database work runs in one
dedicated thread, so the event loop never waits on SQLite or an fsync.

One job's attempt and the recording of its outcome: delivery.py. The whole queue's pause while
Atlas is down, overloaded or refuses the token: pause.py. `/status` lists each held group (its head,
the head's state, why it waits) and each job waiting for a prerequisite. All times are on the outbox
clock (clock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.config import OutboxSection
from edge_agent.logs import get_logger
from edge_agent.outbox.clock import OutboxClock
from edge_agent.outbox.delivery import JobDelivery
from edge_agent.outbox.model import Job, JobHandler, JobSpec, JobState, Json, OutboxError
from edge_agent.outbox.pause import QueuePause
from edge_agent.outbox.policy import RetryPolicy
from edge_agent.outbox.recovery import RecoveryReport
from edge_agent.outbox.store import JobStore
from edge_agent.outbox.views import failures, group_heads, waiting_for_prerequisites
from edge_agent.state_health import StateFileHealth

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
        self._concurrency = max(1, concurrency)
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
        self._pause = QueuePause(self.policy, self._rng)
        self._delivery = JobDelivery(
            self._store,
            self._call,
            self._clock,
            self.policy,
            self._rng,
            self._pause,
            dict(handlers or {}),
            attempt_timeout,
        )
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
        self._delivery.add_handler(kind, handler)
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
                paused_past_end = self._pause.until - now > left
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
        blocked = self._pause.blocked
        return None if blocked is None else str(blocked.get("reason"))

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
                "failures": failures(self._store.db, self._clock(), 20),
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
            "blocked": self._pause.shown_blocked(self._clock()),
            "paused_for_s": self._pause.remaining(self._clock()),
            "service_failures": self._pause.service_failures,
            "missing_handlers": sorted(self._delivery.missing_handlers),
            "counters": self.counters,
            "quota": {"max_jobs": self._store.max_jobs, "max_disk_bytes": self._store.max_disk_bytes},
            "recovery": recovery.as_dict() if recovery else None,
        }

    async def held_groups(self) -> list[Json]:
        """Each group whose head is not being delivered now, with the head and why (worker doc)."""
        now = self._clock()
        heads = await self._call(group_heads, self._store.db, now)
        pause = self._pause.why(now)
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
        return not self._pause.probing()

    async def _dispatch(self) -> float | None:
        """Claim and start what is ready; returns the time the claim looked at (None: no claim made)."""
        if self._stopping or self._clock() < self._pause.until:
            return None
        limit = (1 if self._pause.probing() else self._concurrency) - len(self._tasks)
        if limit <= 0:
            return None  # a completion wakes the loop
        now = self._clock()
        self._claiming = True
        try:
            claimed = await self._call(self._store.claim, limit, now)
        finally:
            self._claiming = False
        for job, deps in claimed:
            task = asyncio.create_task(self._delivery.attempt(job, deps), name=f"outbox-job-{job.id}")
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
        if self._pause.until > now:
            return min(MAX_IDLE_WAIT, self._pause.until - now)
        if claimed_at is None:
            return MAX_IDLE_WAIT
        next_due = await self._call(self._store.next_due, claimed_at)
        if next_due is None:
            return MAX_IDLE_WAIT
        return min(MAX_IDLE_WAIT, max(0.0, next_due - now))
