"""The S3 client: boto3 (botocore) in a small thread pool.

Why boto3 in threads rather than aiobotocore: the test suite's S3 server (moto) depends on boto3 and
botocore, and aiobotocore pins botocore to the narrow range it patches, which then has to match the
boto3 that moto wants; boto3 alone has no such coupling. Uploads are a few calls a minute, each a
blocking call in a worker thread: the event loop never waits, and the outbox's attempt timeout ends a
stuck attempt (its thread finishes on botocore's own read timeout).

Credentials: the standard AWS chain (AWS_* environment, `s3.profile` / ~/.aws, container and instance
roles), unless systemd credentials or the config give keys (config_sources). The resolved key id,
secret and token are handed to the log redactor. botocore retries a failed call twice itself (its
"standard" mode: throttling, 5xx, connection errors); what still fails is the outbox's to retry.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from edge_agent.config import S3Section
from edge_agent.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client as Boto3S3Client

log = get_logger(__name__)

_T = TypeVar("_T")
THREADS = 4
BOTOCORE_ATTEMPTS = 3

# S3 error codes a human fixes without restarting the agent (a bucket created, a key or policy
# corrected): retried slowly instead of failing the job for good.
FIXABLE_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
    }
)


class S3Failure(Exception):
    """A call failed. `status`: the HTTP status (None: no answer); `code`: S3's error code;
    `retryable`: worth trying again; `sent`: the request may have reached the server."""

    def __init__(self, message: str, *, status: int | None, code: str, retryable: bool, sent: bool) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable
        self.sent = sent


class S3Client:
    def __init__(self, section: S3Section, *, add_secret: Callable[[str], None] | None = None) -> None:
        self.section = section
        self._add_secret = add_secret
        self._pool: ThreadPoolExecutor | None = None
        self._client: Boto3S3Client | None = None

    @property
    def bucket(self) -> str:
        return self.section.bucket

    def _make(self) -> Boto3S3Client:
        import boto3
        from botocore.config import Config

        s = self.section
        session = boto3.session.Session(
            profile_name=s.profile or None,
            region_name=s.region or None,
            aws_access_key_id=s.access_key_id.get_secret_value() if s.access_key_id else None,
            aws_secret_access_key=s.secret_access_key.get_secret_value() if s.secret_access_key else None,
            aws_session_token=s.session_token.get_secret_value() if s.session_token else None,
        )
        credentials = session.get_credentials()
        if credentials is not None and self._add_secret is not None:
            frozen = credentials.get_frozen_credentials()
            for value in (frozen.access_key, frozen.secret_key, frozen.token):
                if value:
                    self._add_secret(value)
        config = Config(
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            retries={"max_attempts": BOTOCORE_ATTEMPTS, "mode": "standard"},
            s3={"addressing_style": s.addressing_style},
            # The default (when_supported) adds CRC checksums that some S3-compatible servers refuse.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return session.client("s3", endpoint_url=s.endpoint_url or None, config=config)

    def _ensure(self) -> Boto3S3Client:
        if self._client is None:
            self._client = self._make()
        return self._client

    async def run(self, operation: Callable[[Boto3S3Client], _T], *, sends: bool = True) -> _T:
        """Run `operation(client)` in a worker thread; failures become `S3Failure`."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="s3")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(self._call, operation, sends))

    def _call(self, operation: Callable[[Boto3S3Client], _T], sends: bool) -> _T:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            return operation(self._ensure())
        except ClientError as err:
            raise _client_failure(err, sends) from None
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise S3Failure(
                f"no usable AWS credentials ({type(err).__name__}): set the AWS chain (environment,"
                " profile, instance role) or systemd credentials aws_access_key_id/aws_secret_access_key",
                status=None, code="NoCredentials", retryable=True, sent=False,
            ) from None  # fmt: skip
        except (EndpointConnectionError, ConnectTimeoutError) as err:
            raise S3Failure(
                f"S3 unreachable: {err}", status=None, code="Unreachable", retryable=True, sent=False
            ) from None
        except BotoCoreError as err:  # read timeouts, connections closed mid-answer, ...
            raise S3Failure(
                f"S3 call failed: {type(err).__name__}: {err}",
                status=None, code=type(err).__name__, retryable=True, sent=sends,
            ) from None  # fmt: skip

    def close(self) -> None:
        if self._pool is not None:
            # Calls still running end on botocore's own timeouts; shutdown must not wait for them.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _client_failure(err: Any, sends: bool) -> S3Failure:
    response = getattr(err, "response", {}) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(response.get("Error", {}).get("Code", "")) or "Unknown"
    message = str(response.get("Error", {}).get("Message", "")) or str(err)
    retryable = (
        status is None
        or status >= 500
        or status in (408, 409, 425, 429)
        or code in FIXABLE_CODES
        or code in ("RequestTimeout", "SlowDown", "NoSuchUpload")
    )
    return S3Failure(
        f"S3 {code} (HTTP {status}): {message}", status=status, code=code, retryable=retryable, sent=sends
    )
