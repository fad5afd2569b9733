"""The status table of the shared transport, and the two clients and the outbox reading it the same way."""

from __future__ import annotations

import pytest

from edge_agent.atlas.errors import (
    AtlasAuthError,
    AtlasError,
    AtlasNotFound,
    AtlasRequestError,
    AtlasRetryableError,
    AtlasValidationError,
    from_failure,
)
from edge_agent.http import Failure, Kind, classify
from edge_agent.lens import errors as lens_errors
from edge_agent.outbox import Verdict, classify_status

TABLE = [
    # status, kind, outcome_unknown
    (200, Kind.SUCCESS, False),
    (201, Kind.SUCCESS, False),
    (202, Kind.SUCCESS, False),
    (204, Kind.SUCCESS, False),
    (299, Kind.SUCCESS, False),
    (100, Kind.PERMANENT, False),
    (301, Kind.PERMANENT, False),
    (304, Kind.PERMANENT, False),
    (307, Kind.PERMANENT, False),  # when it reaches the table, it was not followed
    (400, Kind.PERMANENT, False),
    (401, Kind.AUTH, False),
    (403, Kind.AUTH, False),
    (404, Kind.NOT_FOUND, False),
    (405, Kind.PERMANENT, False),
    (408, Kind.TRANSIENT, False),
    (409, Kind.TRANSIENT, True),
    (410, Kind.NOT_FOUND, False),
    (413, Kind.PERMANENT, False),
    (422, Kind.INVALID, False),
    (425, Kind.TRANSIENT, False),
    (429, Kind.TRANSIENT, False),
    (451, Kind.PERMANENT, False),
    (500, Kind.TRANSIENT, True),
    (502, Kind.TRANSIENT, True),
    (503, Kind.TRANSIENT, True),
    (504, Kind.TRANSIENT, True),
    (599, Kind.TRANSIENT, True),
]


@pytest.mark.parametrize(("status", "kind", "unknown"), TABLE)
def test_classification_table(status: int, kind: Kind, unknown: bool) -> None:
    verdict = classify(status)
    assert verdict.kind is kind and verdict.outcome_unknown is unknown


@pytest.mark.parametrize(("status", "kind", "unknown"), [row for row in TABLE if row[1] is not Kind.SUCCESS])
def test_outbox_verdicts_follow_the_table(status: int, kind: Kind, unknown: bool) -> None:
    expected = {Kind.AUTH: Verdict.AUTH, Kind.TRANSIENT: Verdict.RETRY}.get(kind, Verdict.PERMANENT)
    assert classify_status(status) is expected


ATLAS_NAMES: dict[int, type[AtlasError]] = {
    401: AtlasAuthError,
    403: AtlasAuthError,
    404: AtlasNotFound,
    422: AtlasValidationError,
    413: AtlasRequestError,
    400: AtlasRequestError,
    409: AtlasRetryableError,
    429: AtlasRetryableError,
    503: AtlasRetryableError,
}


@pytest.mark.parametrize(("status", "name"), ATLAS_NAMES.items())
def test_atlas_names_keep_the_transport_verdict(status: int, name: type[AtlasError]) -> None:
    verdict = classify(status)
    failure = Failure("POST", "/x", verdict.kind, status=status, outcome_unknown=verdict.outcome_unknown)
    err = from_failure(failure)
    assert type(err) is name
    assert err.retryable is verdict.kind.retryable and err.outcome_unknown is verdict.outcome_unknown


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (401, lens_errors.LensAuthError),
        (404, lens_errors.LensNotFound),
        (408, lens_errors.LensServerError),
        (413, lens_errors.LensRequestError),
        (429, lens_errors.LensRateLimited),
        (503, lens_errors.LensServerError),
    ],
)
def test_lens_names_keep_the_transport_verdict(status: int, name: type[lens_errors.LensError]) -> None:
    verdict = classify(status)
    failure = Failure("POST", "/x", verdict.kind, status=status, outcome_unknown=verdict.outcome_unknown)
    err = lens_errors.from_failure(failure)
    assert type(err) is name
    assert err.retryable is verdict.kind.retryable and err.outcome_unknown is verdict.outcome_unknown


def test_runner_errors_are_retryable_whatever_the_status() -> None:
    for text in (
        "Failed to allocate lens runner - try stopping an older session!",
        "Failed to fetch session_runner!",
    ):
        err = lens_errors.http_error(200, "POST /lens/sessions/create", [text], None, None)
        assert isinstance(err, lens_errors.LensNoRunner) and err.retryable and not err.outcome_unknown


def test_413_says_what_happened() -> None:
    failure = Failure("POST", "/sessions/s/upload-files", Kind.PERMANENT, status=413, reason="too large")
    err = from_failure(failure)
    assert not err.retryable and "HTTP 413" in str(err)
