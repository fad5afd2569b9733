"""The one Retry-After parser: both forms of RFC 9110, garbage refused, huge values capped."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

import pytest

from edge_agent.http import MAX_RETRY_AFTER, parse_retry_after

NOW = 1_800_000_000.0


def http_date(at: float) -> str:
    return format_datetime(datetime.fromtimestamp(at, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("7", 7.0),
        (" 2.5 ", 2.5),  # not RFC, but some servers send it and it is unambiguous
        (http_date(NOW + 42), 42.0),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # RFC 850 form, long past
        ("Sun Nov  6 08:49:37 1994", None),  # asctime form has no zone: not a valid HTTP date here
        (http_date(NOW - 60), 0.0),  # a past date means now
    ],
)
def test_forms(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    "garbage",
    [None, "", "   ", "soon", "-5", "-3", "1.5e3", "inf", "nan", "0x10", "5 s", "Mon, 13 Apr 2026 10:30:00"],
)
def test_garbage_is_none(garbage: str | None) -> None:
    assert parse_retry_after(garbage, NOW) is None


def test_huge_values_are_capped() -> None:
    assert parse_retry_after("99999999999999999999999999999", NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("9" * 400, NOW) == MAX_RETRY_AFTER  # would be float('inf') uncapped
    assert parse_retry_after(http_date(NOW + 30 * 86_400), NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("600", NOW, cap=60.0) == 60.0
    assert parse_retry_after(http_date(NOW + 600), NOW, cap=60.0) == 60.0


def test_the_outbox_uses_the_same_parser() -> None:
    from edge_agent import outbox
    from edge_agent.atlas import errors

    assert outbox.parse_retry_after is parse_retry_after
    assert errors.parse_retry_after is parse_retry_after
