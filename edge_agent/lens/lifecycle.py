"""Lens session lifecycle: leftovers of an earlier run, lens registration, create, wait for
RUNNING, durable record, destroy.

Order matters for orphans (each holds one of the account's few runner slots): the session id is
recorded the moment create answers, before anything can go wrong, and unrecorded only after
destroy succeeded or the server said it does not know the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge_agent.backoff import Backoff
from edge_agent.lens.client import NO_RETRY, LensClient, RetryPolicy, SessionInfo
from edge_agent.lens.errors import LensAuthError, LensError, LensNotFound
from edge_agent.lens.status import SessionStatus
from edge_agent.lens.store import LensRecord, SessionRecord, SessionStore, StateFileError
from edge_agent.logs import get_logger

log = get_logger(__name__)


class SessionFailed(LensError):
    """The session never became usable (FAILED, ended, or not RUNNING within `ready_timeout`)."""

    retryable = True


@dataclass(slots=True)
class LifecycleSettings:
    lens_id: str = ""
    register_name: str = ""
    register_config: dict[str, object] | None = None
    ready_timeout: float = 120.0
    status_poll_interval: float = 1.0
    retry_base: float = 1.0
    retry_cap: float = 60.0


@dataclass(slots=True)
class LifecycleStats:
    created: int = 0
    create_failures: int = 0
    destroyed: int = 0
    leftovers_destroyed: int = 0
    replaced: int = 0


class SessionLifecycle:
    def __init__(
        self,
        client: LensClient,
        store: SessionStore,
        settings: LifecycleSettings,
        *,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.lens_id and not settings.register_name:
            raise ValueError("lens: configure lens_id or a [lens.register] block")
        self.client = client
        self.store = store
        self.settings = settings
        self.stats = LifecycleStats()
        # A session created but not yet RUNNING: a stop in that window must still destroy it.
        self.opening: str | None = None
        self._wall = wall_clock
        self._sleep = sleep
        self._lens_id = settings.lens_id
        self.backoff = Backoff(base=settings.retry_base, cap=settings.retry_cap, jitter=1.0)

    async def destroy_leftovers(self) -> list[str]:
        """Destroy sessions (and delete lenses) recorded by an earlier run that did not end cleanly.
        Records whose destroy fails for a transient reason are kept for the next try."""
        try:
            state = self.store.load()
        except StateFileError as exc:
            # The unreadable file was moved aside (not lost); its sessions need `edge-agent lens sessions`.
            log.error("lens_state_file_unreadable", error=str(exc))
            return []
        destroyed: list[str] = []
        for record in state.sessions:
            if await self._destroy(record.session_id, reason="leftover of an earlier run"):
                destroyed.append(record.session_id)
                self.stats.leftovers_destroyed += 1
        for lens in state.lenses:
            if lens.lens_id != self._lens_id:
                await self._delete_lens(lens.lens_id)
        return destroyed

    async def lens_id(self) -> str:
        """The configured lens, or the one registered from the config block (once per run)."""
        if self._lens_id:
            return self._lens_id
        lens_id = await self.client.register_lens(
            self.settings.register_name, dict(self.settings.register_config or {})
        )
        self.store.add_lens(LensRecord(lens_id, self._wall()))
        log.info("lens_registered", lens_id=lens_id, lens_name=self.settings.register_name)
        self._lens_id = lens_id
        return lens_id

    async def open(self) -> SessionInfo:
        """A RUNNING, recorded session. Retries (with backoff) until it has one; only an auth
        failure or a bad request gets out."""
        while True:
            try:
                lens_id = await self.lens_id()
                info = await self.client.create_session(lens_id, retry=NO_RETRY)
            except LensError as exc:
                if isinstance(exc, LensAuthError) or not exc.retryable:
                    raise
                self.stats.create_failures += 1
                await self._wait_before_retry("lens_session_create_failed", exc)
                continue
            try:
                self.store.add_session(SessionRecord(info.session_id, info.lens_id, self._wall()))
            except OSError:
                # Unrecorded, a crash would orphan it: give the runner slot back rather than stream.
                await self._destroy(info.session_id, reason="could not be recorded")
                raise
            self.stats.created += 1
            log.info("lens_session_created", session_id=info.session_id, lens_id=info.lens_id)
            self.opening = info.session_id
            try:
                await self._wait_running(info)
            except LensError as exc:
                self.opening = None
                if isinstance(exc, LensAuthError):
                    raise
                await self.close(info.session_id)
                self.stats.create_failures += 1
                if not exc.retryable:
                    raise
                await self._wait_before_retry("lens_session_not_ready", exc)
                continue
            self.opening = None
            return info

    async def _wait_before_retry(self, event: str, exc: LensError) -> None:
        delay = self.backoff.next_delay()
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.warning(event, error=str(exc), retry_in=round(delay, 2))
        await self._sleep(delay)

    async def _wait_running(self, info: SessionInfo) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        status = info.status
        while status is not SessionStatus.RUNNING:
            if status.is_terminal:
                raise SessionFailed(f"session {info.session_id} is {status.value} before it ran")
            if time.monotonic() >= deadline:
                raise SessionFailed(
                    f"session {info.session_id} not RUNNING after {self.settings.ready_timeout:g}s "
                    f"(last status {status.value})"
                )
            await self._sleep(self.settings.status_poll_interval)
            try:
                status = await self.client.session_status(info.session_id, retry=RetryPolicy(attempts=2))
            except LensNotFound:
                raise SessionFailed(f"session {info.session_id} vanished before it ran") from None
            except LensError as exc:
                if not exc.retryable:
                    raise
                log.warning("lens_status_poll_failed", session_id=info.session_id, error=str(exc))
        log.info("lens_session_running", session_id=info.session_id)

    async def status(self, session_id: str) -> SessionStatus | None:
        """The session's status now; None when it cannot be learnt (network), GONE-like statuses
        when the server no longer knows it."""
        try:
            return await self.client.session_status(session_id, retry=RetryPolicy(attempts=2))
        except LensNotFound:
            return SessionStatus.DESTROYED
        except LensAuthError:
            raise
        except LensError:
            return None

    async def close(self, session_id: str) -> bool:
        """Destroy a session of this run and unrecord it; False (record kept) if that failed."""
        return await self._destroy(session_id, reason="closing")

    async def _destroy(self, session_id: str, reason: str) -> bool:
        try:
            await self.client.destroy_session(session_id, retry=RetryPolicy(attempts=3, base=0.2, cap=2.0))
        except LensNotFound:
            pass  # already gone (destroyed server-side, expired): nothing holds a slot
        except LensAuthError:
            raise
        except LensError as exc:
            log.warning(
                "lens_session_destroy_failed", session_id=session_id, error=str(exc), kept_for_retry=True
            )
            return False
        self.store.remove_session(session_id)
        self.stats.destroyed += 1
        log.info("lens_session_destroyed", session_id=session_id, reason=reason)
        return True

    async def delete_registered_lens(self) -> None:
        """Lenses persist server-side; one this run registered is deleted when the run ends."""
        if self._lens_id and not self.settings.lens_id:
            await self._delete_lens(self._lens_id)
            self._lens_id = ""

    async def _delete_lens(self, lens_id: str) -> None:
        try:
            await self.client.delete_lens(lens_id)
        except LensNotFound:
            pass
        except LensAuthError:
            raise
        except LensError as exc:
            log.warning("lens_delete_failed", lens_id=lens_id, error=str(exc), kept_for_retry=True)
            return
        self.store.remove_lens(lens_id)
        log.info("lens_deleted", lens_id=lens_id)
