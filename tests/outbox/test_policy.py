"""The pure retry policy: classification, Retry-After parsing, backoff bounds, giving up."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import OutboxSection
from edge_agent.outbox import Permanent, Retryable, RetryPolicy, Verdict, classify_status, error_for_status
from edge_agent.outbox.policy import parse_retry_after


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (400, Verdict.PERMANENT),
        (404, Verdict.PERMANENT),
        (413, Verdict.PERMANENT),
        (422, Verdict.PERMANENT),
        (401, Verdict.AUTH),
        (403, Verdict.AUTH),
        (408, Verdict.RETRY),
        (409, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (302, Verdict.PERMANENT),
    ],
)
def test_classify_status(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


def test_error_for_status_and_unknown_outcomes() -> None:
    too_many = error_for_status(429, "slow down", 3.0)
    assert isinstance(too_many, Retryable) and too_many.retry_after == 3.0 and not too_many.outcome_unknown
    assert isinstance(error_for_status(503, ""), Retryable) and error_for_status(503, "").outcome_unknown  # type: ignore[attr-defined]
    conflict = error_for_status(409, "exists")
    assert isinstance(conflict, Retryable) and conflict.outcome_unknown  # look before re-sending
    rejected = error_for_status(422, '{"detail": "bad"}')
    assert isinstance(rejected, Permanent) and rejected.status == 422 and rejected.body == '{"detail": "bad"}'
    assert Retryable(None).outcome_unknown and not Retryable(None, outcome_unknown=False).outcome_unknown
    assert len(Permanent(400, "x" * 100_000).body) == 4000


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0, abs=1.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad, now) is None


@given(failures=st.integers(1, 60), seed=st.integers(0, 2**32), retry_after=st.none() | st.floats(0, 10_000))
def test_delay_is_bounded_and_honours_retry_after(
    failures: int, seed: int, retry_after: float | None
) -> None:
    policy = RetryPolicy(base=0.5, cap=60.0, max_retry_after=3600.0)
    raw = min(60.0, 0.5 * 2 ** (failures - 1))
    delay = policy.delay(failures, retry_after, random.Random(seed))
    assert raw / 2 <= delay <= max(raw, min(retry_after or 0.0, 3600.0))
    if retry_after is not None:
        assert delay >= min(retry_after, 3600.0)


def test_give_up_by_attempts_or_age() -> None:
    policy = RetryPolicy.from_section(OutboxSection(), max_attempts=5, max_age=100.0)
    assert policy.give_up_reason(4, created_at=0.0, now=99.0) is None
    assert policy.give_up_reason(5, created_at=0.0, now=1.0) == "gave up after 5 attempts"
    assert "max age" in (policy.give_up_reason(1, created_at=0.0, now=100.0) or "")
    defaults = RetryPolicy.from_section(OutboxSection())
    assert defaults.max_attempts == 10_000 and defaults.max_age == 7 * 24 * 3600.0
    assert (defaults.base, defaults.cap) == (0.5, 60.0)
