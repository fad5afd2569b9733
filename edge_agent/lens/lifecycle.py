"""Lens session lifecycle: leftovers of an earlier run, lens registration, create, wait for
RUNNING, durable record, destroy.

Order matters for orphans (each holds one of the account's few runner slots, some accounts have
one): the session id is recorded the moment create answers, before anything can go wrong, and
unrecorded only after destroy succeeded or the server said it does not know the session.

A create whose answer is lost (read timeout, reset, 5xx, unreadable reply, a crash during the call)
may still have made a session, and its id is unknown. So the create is recorded as pending before it
is sent; while unknown creates are pending, the org's session list is searched for sessions of the
same lens registered in their time span (give or take `clock_skew`), not ours and with no client
connected, and those are destroyed. INFERRED: the service offers no idempotency key or client tag on
create (research/archetype-protocol.md), so time and lens are all there is to match on; an agent
sharing its lens with another agent's brand-new session could end it. `reap_unknown_creates = false`
turns the search off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.lens.client import NO_RETRY, LensClient, RetryPolicy, SessionInfo
from edge_agent.lens.errors import LensAuthError, LensError, LensNotFound
from edge_agent.lens.status import SessionStatus, status_of
from edge_agent.lens.store import LensRecord, LensState, PendingCreate, SessionRecord, SessionStore
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
    reap_unknown_creates: bool = True
    clock_skew: float = 60.0  # between this host's clock and the service's registration_timestamp
    create_timeout: float = 40.0  # the longest a create can be outstanding (connect + read timeouts)


@dataclass(slots=True)
class LifecycleStats:
    created: int = 0
    create_failures: int = 0
    destroyed: int = 0
    leftovers_destroyed: int = 0
    replaced: int = 0
    unknown_creates: int = 0
    orphans_destroyed: int = 0


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
        # Unknown creates may be on file (a crash during a create): look until a search settles them.
        self.unknown_creates_pending = True
        self._in_flight: PendingCreate | None = None

    async def destroy_leftovers(self) -> list[str]:
        """Destroy sessions (and delete lenses) recorded by an earlier run that did not end cleanly.
        Records whose destroy fails for a transient reason are kept for the next try."""
        state = await self._load()
        if state.records_lost_at is not None:
            await self._search_for_lost_records()
            state = await self._load()
        destroyed: list[str] = []
        for record in state.sessions:
            if await self._destroy(record.session_id, reason="leftover of an earlier run"):
                destroyed.append(record.session_id)
                self.stats.leftovers_destroyed += 1
        destroyed += await self.reap_unknown_creates()
        for lens in state.lenses:
            if lens.lens_id != self._lens_id:
                await self._delete_lens(lens.lens_id)
        return destroyed

    async def _load(self) -> LensState:
        return await asyncio.to_thread(self.store.load)

    async def _search_for_lost_records(self) -> None:
        """The record was damaged and set aside (store doc): what it listed is searched for in the
        org's session list as unknown creates of our lens, at any time up to the damage."""
        lens_id = self.settings.lens_id
        if not lens_id:
            # A lens registered by the lost record's process has an id nobody knows now.
            log.error(
                "lens_records_lost",
                detail="the lens state file was damaged; a lens registered by the earlier process"
                " and its sessions cannot be identified: see `edge-agent lens sessions`",
            )
            await asyncio.to_thread(self.store.fold_lost_records, None)
            return
        await asyncio.to_thread(self.store.fold_lost_records, lens_id)
        self.unknown_creates_pending = True
        if not self.settings.reap_unknown_creates:
            log.error(
                "lens_records_lost",
                detail="the lens state file was damaged and lens.reap_unknown_creates is off: sessions"
                " of the earlier process may hold runner slots; see `edge-agent lens sessions`",
            )
        else:
            log.warning("lens_records_lost", detail="searching the org's sessions for them", lens_id=lens_id)

    async def reap_unknown_creates(self) -> list[str]:
        """Destroy sessions made by creates whose answer was lost (module doc). A pending create is
        settled once a search ran after the service must have answered it and every match is gone."""
        if not self.settings.reap_unknown_creates or not self.unknown_creates_pending:
            return []
        state = await self._load()
        pending = [p for p in state.pending_creates if p != self._in_flight]
        if not pending:
            self.unknown_creates_pending = False
            return []
        try:
            listed = await self.client.list_sessions()
        except LensAuthError:
            raise
        except LensError as exc:
            log.warning("lens_orphan_search_failed", error=str(exc), unknown_creates=len(pending))
            return []
        ours = {record.session_id for record in state.sessions} | {self.opening}
        destroyed: list[str] = []
        failed = False
        candidates = orphans_of_unknown_creates(
            listed,
            pending,
            ours,
            listed_at=self._wall(),
            clock_skew=self.settings.clock_skew,
            create_timeout=self.settings.create_timeout,
            server_offset=self.client.server_clock_offset or 0.0,
        )
        for session_id in candidates:
            if await self._destroy(session_id, reason="made by a create whose answer was lost"):
                destroyed.append(session_id)
                self.stats.orphans_destroyed += 1
            else:
                failed = True
        now = self._wall()
        settled = [] if failed else [p for p in pending if now >= p.until + self.settings.create_timeout]
        if settled:
            await asyncio.to_thread(self.store.remove_pending_creates, settled)
        self.unknown_creates_pending = len(settled) < len(pending)
        return destroyed

    async def reap_until_settled(self, interval: float) -> None:
        """While unknown creates are pending (the service may register a late create after the first
        search), search again every `interval` seconds. Runs beside streaming; bounded by settling."""
        while self.settings.reap_unknown_creates and self.unknown_creates_pending:
            await self._sleep(interval)
            try:
                await self.reap_unknown_creates()
            except LensAuthError as exc:
                log.error("lens_orphan_search_refused", error=str(exc))
                return

    async def lens_id(self) -> str:
        """The configured lens, or the one registered from the config block (once per run)."""
        if self._lens_id:
            return self._lens_id
        lens_id = await self.client.register_lens(
            self.settings.register_name, dict(self.settings.register_config or {})
        )
        await asyncio.to_thread(self.store.add_lens, LensRecord(lens_id, self._wall()))
        log.info("lens_registered", lens_id=lens_id, lens_name=self.settings.register_name)
        self._lens_id = lens_id
        return lens_id

    async def open(self) -> SessionInfo:
        """A RUNNING, recorded session. Retries (with backoff) until it has one; only an auth
        failure or a bad request gets out."""
        while True:
            try:
                lens_id = await self.lens_id()
                await self.reap_unknown_creates()
                info = await self._create(lens_id)
            except LensError as exc:
                if isinstance(exc, LensAuthError) or not exc.retryable:
                    raise
                self.stats.create_failures += 1
                await self._wait_before_retry("lens_session_create_failed", exc)
                continue
            try:
                await asyncio.to_thread(
                    self.store.add_session,
                    SessionRecord(info.session_id, info.lens_id, self._wall()),
                    resolves=self._in_flight,
                )
                self._in_flight = None
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

    async def _create(self, lens_id: str) -> SessionInfo:
        """One create, recorded as pending before it is sent (module doc)."""
        now = self._wall()
        pending = PendingCreate(lens_id, now, now, in_flight=True)
        await asyncio.to_thread(self.store.add_pending_create, pending)
        self._in_flight = pending
        try:
            return await self.client.create_session(lens_id, retry=NO_RETRY)
        except LensError as exc:
            # The transport knows: a refused connection or a 429 made nothing; a 5xx, a timeout after
            # sending or an unreadable success may have made a session.
            unknown = exc.outcome_unknown
            self._in_flight = None
            await asyncio.to_thread(self.store.settle_pending_create, pending, outcome_known=not unknown)
            if unknown:
                self.stats.unknown_creates += 1
                self.unknown_creates_pending = True
                log.warning("lens_session_create_outcome_unknown", lens_id=lens_id, error=str(exc))
            raise

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
        await asyncio.to_thread(self.store.remove_session, session_id)
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
        await asyncio.to_thread(self.store.remove_lens, lens_id)
        log.info("lens_deleted", lens_id=lens_id)


def orphans_of_unknown_creates(
    listed: list[dict[str, Any]],
    pending: list[PendingCreate],
    ours: set[str | None],
    *,
    listed_at: float,
    clock_skew: float,
    create_timeout: float,
    server_offset: float = 0.0,
) -> list[str]:
    """Sessions of the org's list that a pending create may have made: same lens, registered within
    the creates' span (plus the longest a create can be outstanding, give or take `clock_skew`), not
    recorded by us, not ended, no client connected when the list says so. Pure; sans-I/O.

    `server_offset` (the service's clock minus ours, from its `Date` header) moves a
    `registration_timestamp` onto our clock, so the match does not need the two clocks to agree."""
    out: list[str] = []
    for item in listed:
        session_id = item.get("session_id")
        if not isinstance(session_id, str) or session_id in ours or status_of(item).is_terminal:
            continue
        registered = _registered_at(item, listed_at, server_offset)
        if registered is None:
            continue  # nothing to match on: never destroy a session on a guess
        if not any(
            p.lens_id == item.get("lens_id")
            and p.since - clock_skew <= registered <= p.until + create_timeout + clock_skew
            for p in pending
        ):
            continue
        connections = _number(item.get("num_active_connections"))
        if connections is not None and connections > 0:
            log.warning("lens_orphan_candidate_in_use", session_id=session_id, kept=True)
            continue
        out.append(session_id)
    return out


def _registered_at(item: dict[str, Any], listed_at: float, server_offset: float) -> float | None:
    """On our clock. The full record carries `registration_timestamp` (the service's clock); the
    documented list item only `session_duration_sec` (INFERRED: counted from registration)."""
    registered = _number(item.get("registration_timestamp"))
    if registered is not None:
        return registered - server_offset
    duration = _number(item.get("session_duration_sec"))
    return listed_at - duration if duration is not None else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
