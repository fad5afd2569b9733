"""Outbox handler of evidence uploads (`atlas.upload`): an incident's files in one multipart POST.

Evidence never holds an issue hostage. The issue job needs this job's result (the attachment ids),
so an upload that failed for good would fail the issue and its comments with it. Only this handler
knows when an upload can be given up on *in its present form*, so it settles (done, not failed) with
what it could attach and a record of what it could not (`deferred`), in three cases:

- 413 (Atlas or a proxy refused the body as too large): each file is then tried alone once (the small
  JSON summary usually fits), and the ones refused again are deferred;
- a 5xx or no answer on the upload `upload_attempts` times in a row while the rest of Atlas answers
  (two GETs of the session in a row, which also find files an attempt of unknown outcome did attach):
  deferred. While the GETs fail too, Atlas as a whole is down or flaky and the job keeps waiting
  like any other;
- a success answered with a null `attachment_id` (the page allows it): that file is not attached.

The issue is then filed with the attachments that exist; the comment after it says which files wait,
where and why (jobs.CommentHandler with incident_text.kept_locally_note); the batch's `atlas.evidence`
job (evidence_retry.py), which owns the files on disk, retries them in a form that fits and links them.

Payload `{paths | files, names, session_id?}`: `paths` are files the batch's evidence job owns (kept
for it when deferred); `files` are owned by this job (deleted when it is done: nothing is retried).
Result: `{session_id, attachment_ids, names, missing, deferred: [{name, path, bytes, status, reason,
kept}]}`, `names` aligned with `attachment_ids`. Files that vanished from disk are skipped (`missing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.atlas.client import NO_RETRY, AtlasClient, UploadFile
from edge_agent.atlas.errors import AtlasAuthError, AtlasError, detail_text
from edge_agent.atlas.job_support import content_type_for, delivery_error, resolve
from edge_agent.atlas.models import Attachment
from edge_agent.atlas.waiting import WaitingEvidence
from edge_agent.logs import get_logger
from edge_agent.outbox import Job, Json

log = get_logger(__name__)

DEFAULT_UPLOAD_ATTEMPTS = 4
PROBES = 2  # GETs in a row that must succeed before an upload failure counts as the upload path's own
MAX_TRACKED_JOBS = 1000
TOO_LARGE = 413
# What the server said, cut for a comment and /status (already scrubbed and de-HTMLed by the transport).
MAX_ANSWER_CHARS = 200
NO_ID = "Atlas accepted the upload but answered no attachment id, so it cannot be linked"


def server_answer(err: AtlasError) -> str:
    """The server's answer in one readable line: status and text, never a page of HTML or a token."""
    said = " ".join((detail_text(err.detail) or err.reason).split())
    if len(said) > MAX_ANSWER_CHARS:
        said = said[: MAX_ANSWER_CHARS - 1] + "…"
    head = f"HTTP {err.status}" if err.status is not None else "no answer"
    return f"{head}: {said}" if said else head


def refusal_reason(err: AtlasError, attempts: int = 1) -> str:
    if err.status == TOO_LARGE:
        return f"Atlas (or a proxy in front of it) refused the upload as too large ({server_answer(err)})"
    return f"the upload failed {attempts} time(s) while the rest of Atlas answered ({server_answer(err)})"


def upload_only_failure(err: AtlasError) -> bool:
    """A failure an upload may have alone (a proxy's 5xx, a timeout on a big body), as opposed to a
    rate limit or a conflict, which say nothing about this upload's form."""
    return err.retryable and (err.status is None or err.status == 408 or err.status >= 500)


def upload_result(
    session_id: str,
    attached: Sequence[tuple[str, str]],
    missing: Sequence[str],
    deferred: Sequence[Json] = (),
) -> Json:
    return {
        "session_id": session_id,
        "attachment_ids": [a for _, a in attached],
        "names": [n for n, _ in attached],
        "missing": list(missing),
        "deferred": list(deferred),
    }


class UploadHandler:
    def __init__(
        self,
        client: AtlasClient,
        *,
        attempts: int = DEFAULT_UPLOAD_ATTEMPTS,
        waiting: WaitingEvidence | None = None,
    ) -> None:
        self.client = client
        self.attempts = attempts
        self.waiting = waiting
        # Upload failures in a row per job (in memory: a restart starts counting again, which only
        # delays the deferral); bounded, the oldest forgotten first.
        self._streaks: dict[int, int] = {}

    def _streak(self, job_id: int) -> int:
        count = self._streaks.pop(job_id, 0) + 1
        self._streaks[job_id] = count
        while len(self._streaks) > MAX_TRACKED_JOBS:
            self._streaks.pop(next(iter(self._streaks)))
        return count

    def _files(self, job: Job) -> tuple[list[UploadFile], list[str], bool]:
        """(present files, names of missing ones, whether the batch's evidence job keeps them)."""
        kept = "paths" in job.payload
        paths = [Path(p) for p in job.payload.get("paths" if kept else "files", [])]
        names = list(job.payload.get("names") or [p.name for p in paths])
        present: list[UploadFile] = []
        missing: list[str] = []
        for path, name in zip(paths, names, strict=True):
            if path.is_file():
                present.append((name, path, content_type_for(name)))
            else:
                missing.append(name)
        return present, missing, kept

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        session_id = str(resolve(job.payload, deps, "session_id"))
        present, missing, kept = self._files(job)
        if missing:
            log.warning("evidence_files_missing", job_id=job.id, names=missing)
        if not present:
            return upload_result(session_id, [], missing)
        try:
            answer = await self.client.upload_files(session_id, present)
        except AtlasError as err:
            if err.status == TOO_LARGE:
                attached, deferred = await self._one_by_one(session_id, present, err, kept)
                return self._settled(job, session_id, attached, missing, deferred)
            if not upload_only_failure(err):
                self._streaks.pop(job.id, None)  # a 429, a conflict: says nothing about the upload path
            elif self._streak(job.id) >= self.attempts:
                settled = await self._after_failures(job, session_id, present, missing, err, kept)
                if settled is not None:
                    return settled
            raise delivery_error(err) from None
        attached, deferred = await self._sort(present, answer, kept)
        return self._settled(job, session_id, attached, missing, deferred)

    async def _sort(
        self, files: Sequence[UploadFile], answer: Sequence[Attachment], kept: bool
    ) -> tuple[list[tuple[str, str]], list[Json]]:
        """Attached files and, for the ones answered without an id, their deferral."""
        attached: list[tuple[str, str]] = []
        deferred: list[Json] = []
        for i, upload in enumerate(files):
            attachment_id = answer[i].attachment_id if i < len(answer) else None
            if attachment_id:
                attached.append((upload[0], attachment_id))
            else:
                deferred.append(_deferral(upload, None, NO_ID, kept))
        if attached and self.waiting is not None:
            await self.waiting.accepted(sum(_size(f) for f in files if f[0] in dict(attached)))
        return attached, deferred

    async def _one_by_one(
        self, session_id: str, files: Sequence[UploadFile], refusal: AtlasError, kept: bool
    ) -> tuple[list[tuple[str, str]], list[Json]]:
        """After a 413 on all of them: each file alone, once; whatever fails is deferred (raising now
        would send the ones attached here again at the next attempt)."""
        if len(files) == 1:
            return [], [_deferral(files[0], TOO_LARGE, refusal_reason(refusal), kept)]
        attached: list[tuple[str, str]] = []
        deferred: list[Json] = []
        for upload in files:
            try:
                answer = await self.client.upload_files(session_id, [upload])
            except AtlasAuthError as err:
                raise delivery_error(err) from None
            except AtlasError as err:
                deferred.append(_deferral(upload, err.status, refusal_reason(err), kept))
                continue
            got, refused = await self._sort([upload], answer, kept)
            attached += got
            deferred += refused
        return attached, deferred

    async def _after_failures(
        self,
        job: Job,
        session_id: str,
        files: Sequence[UploadFile],
        missing: Sequence[str],
        err: AtlasError,
        kept: bool,
    ) -> Json | None:
        """`upload_attempts` upload failures in a row: if Atlas then answers two GETs of the session in a
        row (single requests, no retries: a flaky Atlas seldom does), the upload path alone is failing:
        adopt what an attempt did attach (its answer was lost), defer the rest. None while the GETs
        fail (Atlas is down or failing as a whole: keep waiting like any other job)."""
        try:
            for _ in range(PROBES):
                session = await self.client.get_session(session_id, retry=NO_RETRY)
        except AtlasError:
            return None
        by_name = {a.attachment_name: a.attachment_id for a in session.attachments if a.attachment_id}
        attached = [(f[0], str(by_name[f[0]])) for f in files if by_name.get(f[0])]
        reason = refusal_reason(err, job.attempts)
        deferred = [_deferral(f, err.status, reason, kept) for f in files if not by_name.get(f[0])]
        return self._settled(job, session_id, attached, missing, deferred)

    def _settled(
        self,
        job: Job,
        session_id: str,
        attached: Sequence[tuple[str, str]],
        missing: Sequence[str],
        deferred: Sequence[Json],
    ) -> Json:
        self._streaks.pop(job.id, None)
        if deferred:
            log.warning(
                "evidence_upload_deferred",
                job_id=job.id,
                names=[d["name"] for d in deferred],
                attached=[n for n, _ in attached],
                reason=deferred[0]["reason"],
            )
        return upload_result(session_id, attached, missing, deferred)

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        session_id = str(resolve(job.payload, deps, "session_id"))
        present, missing, _ = self._files(job)
        attached: list[tuple[str, str]] = []
        for name, _, _ in present:
            try:
                found = await self.client.find_attachment_by_name(session_id, name)
            except AtlasError as err:
                raise delivery_error(err) from None
            if found is None or not found.attachment_id:
                return None  # all of the job's files must be there to adopt; else upload them again
            attached.append((name, found.attachment_id))
        return upload_result(session_id, attached, missing)


def _size(upload: UploadFile) -> int:
    content = upload[1]
    if isinstance(content, bytes):
        return len(content)
    try:
        return content.stat().st_size
    except OSError:
        return 0


def _deferral(upload: UploadFile, status: int | None, reason: str, kept: bool) -> dict[str, Any]:
    name, content, _ = upload
    return {
        "name": name,
        "path": str(content) if isinstance(content, Path) else "",
        "bytes": _size(upload),
        "status": status,
        "reason": reason,
        "kept": kept,
    }
