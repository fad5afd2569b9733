"""The whole-queue pause, on top of each job's own backoff: Atlas is one service, and when it is down
for one job it is down for all of them. A failure without an answer, a 5xx or a 429 pauses every
delivery for a backoff that grows with the consecutive failures (Retry-After honoured), and until a
request succeeds again only one job is attempted at a time. 10,000 waiting jobs therefore cost one
probe per backoff period during an outage, not 10,000 requests and 20,000 fsyncs.

401/403 (`blocked_auth`): a bad token is not a bad job. The queue pauses, `/status` reports
`blocked: auth` with the server's answer, and one job probes every `retry_cap` until it succeeds.

State only, on the outbox clock (clock.py): the delivery of a job tells it how the service answered,
the scheduling loop asks it whether to wait and how many jobs to try. Each pause is logged once when it
begins and once when it ends (`outbox_paused`/`outbox_resumed`, `outbox_blocked_auth`/`outbox_unblocked`),
never per probe.
"""

from __future__ import annotations

import random

from edge_agent.logs import get_logger
from edge_agent.outbox.model import Json
from edge_agent.outbox.policy import RetryPolicy

log = get_logger(__name__)


class QueuePause:
    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        # The outbox's one generator, shared with the jobs' own backoff (the same draws as before).
        self._rng = rng
        self.service_failures = 0
        self.failing_since = 0.0  # when the failures in a row began (outbox clock)
        self.until = 0.0
        self.blocked: Json | None = None

    def probing(self) -> bool:
        """True while deliveries fail for the service's sake: one job at a time until one succeeds."""
        return self.service_failures > 0 or self.blocked is not None

    def service_ok(self, now: float) -> None:
        """A request was answered (delivered, or refused for the job's own sake): the pause ends."""
        if self.blocked is not None:
            log.warning("outbox_unblocked", was=self.blocked.get("reason"))
        if self.service_failures:
            log.info(
                "outbox_resumed",
                failed_attempts=self.service_failures,
                paused_s=round(max(0.0, now - self.failing_since), 3),
            )
        self.blocked = None
        self.service_failures = 0
        self.until = 0.0

    def service_failed(
        self, now: float, retry_after: float | None, *, status: int | None, error: str
    ) -> None:
        """No answer, a 5xx or a 429: the whole queue waits, longer after each failure in a row."""
        if not self.service_failures:
            self.failing_since = now
            log.warning(
                "outbox_paused",
                reason="Atlas unreachable or overloaded: one job probes until a request succeeds",
                status=status,
                error=error[:200],
            )
        self.service_failures += 1
        pause = self._policy.delay(self.service_failures, retry_after, self._rng)
        self.until = max(self.until, now + pause)

    def block_auth(self, now: float, status: int | None, body: str) -> None:
        """Atlas refuses the credential: the queue waits `retry_cap` between probes."""
        if self.blocked is None:
            log.error("outbox_blocked_auth", status=status, body=body[:500])
        self.blocked = {"reason": "auth", "status": status, "body": body, "since": now}
        self.until = now + self._policy.cap

    def shown_blocked(self, now: float) -> Json | None:
        """`blocked` for /status, with the last refusal as an age (`refused_ago_s`; the outbox clock's
        times are ages, not dates: clock.py)."""
        if self.blocked is None:
            return None
        shown = {key: value for key, value in self.blocked.items() if key != "since"}
        return {**shown, "refused_ago_s": round(max(0.0, now - float(self.blocked["since"])), 3)}

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)

    def why(self, now: float) -> str | None:
        """Why no job is being sent now, for `/status`'s held groups; None while the queue runs."""
        if self.blocked is not None:
            return f"queue paused: Atlas refuses the credential (HTTP {self.blocked.get('status')})"
        if self.until > now:
            return f"queue paused {self.until - now:.1f} s more: Atlas unreachable or overloaded"
        return None
