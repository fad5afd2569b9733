"""Outbox job: upload one finished recording segment to S3, idempotent and resumable.

Payload `{path, bucket, key, content_type}` -> result `{s3_url, bucket, key, file_size, content_type,
sha256}`. The key is fixed per segment, so every attempt writes the same object:
- The object carries its file's SHA-256 as metadata (`x-amz-meta-sha256`). An attempt first asks for
  the object (HEAD): there with the same digest and size, the upload is done (an earlier attempt
  finished and the process died before recording it).
- Up to one part's size: a single PUT (replacing is harmless).
- Larger: a multipart upload. A later attempt (a retry, or after a SIGKILL) lists the key's multipart
  uploads, keeps the one with the most parts that match the file (same size and MD5 ETag as the local
  part), aborts the others, uploads only the missing parts and completes. Parts that do not match are
  uploaded again. After completing, any other upload of the key is aborted: no orphans stay behind.
- The file gone (the disk budget deleted it before it could be sent): the key's multipart uploads are
  aborted and the job fails for good, with that reason.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.logs import get_logger
from edge_agent.outbox import Job, Json, Permanent, Retryable
from edge_agent.s3.client import FIXABLE_CODES, S3Client, S3Failure

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client as Boto3S3Client

log = get_logger(__name__)

KIND_UPLOAD = "s3.upload"
DIGEST_KEY = "sha256"
HASH_BLOCK = 1 << 20
# A misconfigured bucket or credential waits for a human: retried about once a minute.
FIXABLE_RETRY_AFTER = 60.0


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _read_part(path: Path, number: int, part_size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek((number - 1) * part_size)
        return handle.read(part_size)


def _md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def _error(failure: S3Failure) -> Retryable | Permanent:
    if failure.retryable:
        retry_after = FIXABLE_RETRY_AFTER if failure.code in FIXABLE_CODES else None
        # S3 is not Atlas: its outage must not pause the Atlas jobs (a whole-queue pause is for the
        # service every job talks to); the upload backs off on its own.
        return Retryable(
            failure.status, retry_after, str(failure), outcome_unknown=failure.sent, service_wide=False
        )
    return Permanent(failure.status, str(failure), str(failure))


class UploadHandler:
    def __init__(
        self,
        client: S3Client,
        part_size: int,
        on_uploaded: Callable[[Job, Json], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.part_size = part_size
        self._on_uploaded = on_uploaded
        self.multipart_resumed = 0
        self.parts_reused = 0
        self.orphans_aborted = 0

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        try:
            result = await self._upload(job)
        except S3Failure as failure:
            raise _error(failure) from None
        if self._on_uploaded is not None:
            await self._on_uploaded(job, result)
        return result

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        p = job.payload
        path = Path(p["path"])
        try:
            size, digest = await self._digest(path)
        except FileNotFoundError:
            return None  # deliver says why it cannot be sent
        try:
            found = await self._existing(str(p["bucket"]), str(p["key"]), size, digest)
        except S3Failure as failure:
            raise _error(failure) from None
        if found is None:
            return None
        result = self._result(p, size, digest)
        if self._on_uploaded is not None:
            await self._on_uploaded(job, result)
        return result

    # -- the steps ----------------------------------------------------------------------------------

    async def _digest(self, path: Path) -> tuple[int, str]:
        return await asyncio.to_thread(_file_digest, path)

    def _result(self, p: Mapping[str, Any], size: int, digest: str) -> Json:
        bucket, key = str(p["bucket"]), str(p["key"])
        return {
            "s3_url": s3_url(bucket, key),
            "bucket": bucket,
            "key": key,
            "file_size": size,
            "content_type": str(p.get("content_type", "application/octet-stream")),
            "sha256": digest,
        }

    async def _existing(self, bucket: str, key: str, size: int, digest: str) -> dict[str, Any] | None:
        def head(s3: Boto3S3Client) -> dict[str, Any] | None:
            from botocore.exceptions import ClientError

            try:
                answer = s3.head_object(Bucket=bucket, Key=key)
            except ClientError as err:
                if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise
            return dict(answer)

        answer = await self.client.run(head, sends=False)
        if answer is None:
            return None
        same = answer.get("Metadata", {}).get(DIGEST_KEY) == digest and answer.get("ContentLength") == size
        return answer if same else None

    async def _upload(self, job: Job) -> Json:
        p = job.payload
        path, bucket, key = Path(p["path"]), str(p["bucket"]), str(p["key"])
        content_type = str(p.get("content_type", "application/octet-stream"))
        try:
            size, digest = await self._digest(path)
        except FileNotFoundError:
            aborted = await self._abort_uploads(bucket, key, keep=None)
            raise Permanent(
                None,
                f"{path.name} was deleted (disk budget) before it could be uploaded;"
                f" {aborted} multipart upload(s) aborted",
            ) from None
        if await self._existing(bucket, key, size, digest) is not None:
            return self._result(p, size, digest)
        if size <= self.part_size:
            data = await self._read(path, 1, max(size, 1))

            def put(s3: Boto3S3Client) -> None:
                s3.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata={DIGEST_KEY: digest}
                )

            await self.client.run(put)
        else:
            await self._multipart(path, bucket, key, size, digest, content_type)
        return self._result(p, size, digest)

    async def _read(self, path: Path, number: int, part_size: int) -> bytes:
        return await asyncio.to_thread(_read_part, path, number, part_size)

    async def _multipart(
        self, path: Path, bucket: str, key: str, size: int, digest: str, content_type: str
    ) -> None:
        part_size = self.part_size
        count = (size + part_size - 1) // part_size
        upload_id, done = await self._resumable(path, bucket, key, size, part_size)
        if upload_id is None:

            def create(s3: Boto3S3Client) -> str:
                answer = s3.create_multipart_upload(
                    Bucket=bucket, Key=key, ContentType=content_type, Metadata={DIGEST_KEY: digest}
                )
                return str(answer["UploadId"])

            upload_id = await self.client.run(create)
            log.info("s3_multipart_started", key=key, parts=count)
        else:
            self.multipart_resumed += 1
            self.parts_reused += len(done)
            log.info("s3_multipart_resumed", key=key, parts=count, parts_already_there=len(done))
        uid: str = upload_id
        etags = dict(done)
        for number in range(1, count + 1):
            if number in etags:
                continue
            data = await self._read(path, number, part_size)

            def put_part(s3: Boto3S3Client, n: int = number, body: bytes = data) -> str:
                answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=body)
                return str(answer["ETag"])

            etags[number] = await self.client.run(put_part)
        parts: list[Any] = [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]

        def complete(s3: Boto3S3Client) -> None:
            s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}
            )

        await self.client.run(complete)
        await self._abort_uploads(bucket, key, keep=None)  # leftovers of other attempts, if any

    async def _uploads_of(self, bucket: str, key: str) -> list[str]:
        def listing(s3: Boto3S3Client) -> list[str]:
            ids: list[str] = []
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
                ids += [str(u["UploadId"]) for u in page.get("Uploads", []) if u.get("Key") == key]
            return ids

        return await self.client.run(listing, sends=False)

    async def _parts_of(self, bucket: str, key: str, upload_id: str) -> list[tuple[int, int, str]]:
        def listing(s3: Boto3S3Client) -> list[tuple[int, int, str]]:
            found: list[tuple[int, int, str]] = []
            paginator = s3.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=bucket, Key=key, UploadId=upload_id):
                found += [
                    (int(p["PartNumber"]), int(p["Size"]), str(p["ETag"])) for p in page.get("Parts", [])
                ]
            return found

        return await self.client.run(listing, sends=False)

    async def _resumable(
        self, path: Path, bucket: str, key: str, size: int, part_size: int
    ) -> tuple[str | None, dict[int, str]]:
        """The earlier multipart upload of this key worth continuing (the one with the most parts
        matching the file), with those parts; every other upload of the key is aborted."""
        best: tuple[str | None, dict[int, str]] = (None, {})
        for upload_id in await self._uploads_of(bucket, key):
            matching: dict[int, str] = {}
            for number, part_bytes, etag in await self._parts_of(bucket, key, upload_id):
                expected = min(part_size, size - (number - 1) * part_size)
                if part_bytes != expected or expected <= 0:
                    continue
                if _md5_etag(await self._read(path, number, part_size)) == etag:
                    matching[number] = etag
            if best[0] is None or len(matching) > len(best[1]):
                if best[0] is not None:
                    await self._abort(bucket, key, best[0])
                best = (upload_id, matching)
            else:
                await self._abort(bucket, key, upload_id)
        return best

    async def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        def abort(s3: Boto3S3Client) -> None:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

        await self.client.run(abort)
        self.orphans_aborted += 1
        log.info("s3_multipart_aborted", key=key)

    async def _abort_uploads(self, bucket: str, key: str, keep: str | None) -> int:
        aborted = 0
        for upload_id in await self._uploads_of(bucket, key):
            if upload_id != keep:
                await self._abort(bucket, key, upload_id)
                aborted += 1
        return aborted
