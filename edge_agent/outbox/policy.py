"""Retry policy of the outbox, pure: which HTTP answers are retried, how long to wait, when to give up.

Choices (documented in the README section of the outbox):
- 408, 409, 425, 429 and every 5xx are retried; 409 also counts as an unknown outcome so the handler's
  `find_existing` runs first (a conflict on a create usually means the thing is already there).
- 401 and 403 are AUTH: a bad or expired token is not a bad job. Marking thousands of jobs failed
  because a token was rotated would lose them, so the worker instead pauses the whole queue, reports
  `blocked: auth` on /status, and probes with one job per `retry_cap` until a request succeeds.
- Any other 4xx (and an unexpected 1xx/3xx) is PERMANENT: kept as failed with the server's answer.
- Backoff: base * 2**n capped at `cap`, with half of it jittered (never shorter than half the raw delay,
  so a retry storm cannot collapse to zero); `Retry-After` wins when it is longer, up to
  `max_retry_after` (a server asking for a day must not stall evidence for a day without a human).
- Give up (job `failed`, reason recorded) after `max_attempts` attempts or `max_age` seconds since the
  job was created, whichever comes first. Defaults are generous: 7 days, 10,000 attempts (at the default
  60 s cap that is about 7 days of attempts too). Ages are on the outbox clock (clock.py): time the
  agent spent trying, blind to wall-clock steps and to downtime.
- A job waiting for a prerequisite (`Waiting`, or a 425 from a handler) fails after
  `prerequisite_wait` (5 minutes) of waiting. It holds nothing meanwhile (it steps aside in its group),
  so the bound only decides how long a late prerequisite is still welcome: long enough for an issue
  whose evidence upload is slow, short enough that a comment for an issue that was never made is on
  /status as failed (with its reason) within minutes, not a week. An outage does not count: a look-up
  without an answer is an ordinary retry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from edge_agent.backoff import Backoff
from edge_agent.config import OutboxSection
from edge_agent.http import Kind, classify
from edge_agent.http import parse_retry_after as parse_retry_after  # the one parser, re-exported
from edge_agent.outbox.model import DeliveryError, Permanent, Retryable

WAITING_STATUS = 425  # Too Early: what a handler answers when a job's prerequisite is not there yet
# Accepted: what a polling job answers while the remote work it waits for is still running (a report).
# Polled again with backoff; neither a failure of the job nor an outage, so nothing above debug.
NOT_FINISHED_STATUS = 202

DEFAULT_MAX_ATTEMPTS = 10_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
DEFAULT_MAX_RETRY_AFTER = 3600.0
DEFAULT_PREREQUISITE_WAIT = 300.0


class Verdict(StrEnum):
    RETRY = "retry"
    PERMANENT = "permanent"
    AUTH = "auth"


def classify_status(status: int) -> Verdict:
    """What to do about a non-2xx HTTP answer: the shared transport's table (edge_agent.http.errors)."""
    kind = classify(status).kind
    if kind is Kind.AUTH:
        return Verdict.AUTH
    if kind.retryable:
        return Verdict.RETRY
    return Verdict.PERMANENT


def error_for_status(status: int, body: str, retry_after: float | None = None) -> DeliveryError:
    """The error a handler raises for a non-2xx answer (AUTH is a Permanent the worker recognises)."""
    if classify_status(status) is Verdict.RETRY:
        return Retryable(status, retry_after, f"HTTP {status}: {body[:200]}")
    return Permanent(status, body)


def is_auth_failure(error: Permanent) -> bool:
    return error.status is not None and classify_status(error.status) is Verdict.AUTH


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    base: float = 0.5
    cap: float = 60.0
    jitter: float = 0.5
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_age: float = DEFAULT_MAX_AGE
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    prerequisite_wait: float = DEFAULT_PREREQUISITE_WAIT

    @classmethod
    def from_section(
        cls,
        section: OutboxSection,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_age: float = DEFAULT_MAX_AGE,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        prerequisite_wait: float = DEFAULT_PREREQUISITE_WAIT,
    ) -> RetryPolicy:
        return cls(
            base=section.retry_base,
            cap=max(section.retry_cap, section.retry_base),
            max_attempts=max_attempts,
            max_age=max_age,
            max_retry_after=max_retry_after,
            prerequisite_wait=prerequisite_wait,
        )

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the `failures`-th consecutive failure (1 = the first)."""
        backoff = Backoff(self.base, self.cap, jitter=self.jitter, attempts=max(0, failures - 1), rng=rng)
        wait = backoff.next_delay()
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    def waited_too_long(self, waiting_since: float, now: float) -> bool:
        return now - waiting_since >= self.prerequisite_wait

    def give_up_reason(self, attempts: int, created_at: float, now: float) -> str | None:
        if attempts >= self.max_attempts:
            return f"gave up after {attempts} attempts"
        if now - created_at >= self.max_age:
            return f"gave up after {now - created_at:.0f} s (max age {self.max_age:.0f} s)"
        return None
