"""Outbox handler `atlas.evidence`: evidence Atlas refused, retried in a form that fits, then linked.

Every upload job of the reporter has a companion evidence job in a group of its own (one per upload),
so it never holds up the incident's comments. It owns the upload's files on disk. When the upload went
through (the usual case) it has nothing to do and finishes without a request, and the outbox deletes
the files. When the upload deferred files (uploads.py), it:

1. reads what Atlas already holds of them (a GET of the session: pieces an earlier attempt attached,
   also before a restart, are adopted by name, never sent twice);
2. uploads the waiting pieces one request each, in the form evidence_forms.py plans (as it was when
   the refusal was not about size; gzip, then parts, then trimmed to the incident after a 413); the
   first refusal ends the attempt, and changes the form when a 413 says the piece is too large;
3. backs off on its own (`evidence_retry_first` doubling up to `evidence_retry_cap`; back to the first
   step when the form changes) and without pausing the outbox for everyone (the rest of Atlas answers);
4. once every piece is attached, posts "Evidence now attached: ..." on the incident's issue with them
   (marker `edge-agent:<incident>:<part>-evidence`, looked up before posting: once, also after a crash);
5. after `evidence_retry_attempts` attempts or `evidence_retry_max_age`, posts a final comment (marker
   `...:<part>-evidence-kept`) saying where the files are kept and why, and fails: the outbox keeps a
   failed job's files for a human, and /status lists them.

Progress (form, pieces attached, refusals, why, next try) is a record in waiting.py, durable across
restarts and shown on /status. Payload `{incident_id, part, files, names, span_end_s?, issue_id? |
issue_incident_id?}`; deps: the upload job, and the issue job while its id is not known.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.errors import AtlasAuthError, AtlasError, AtlasNotFound, detail_text
from edge_agent.atlas.evidence_forms import KeptFile, Piece, build_piece, content_type, retry_delay
from edge_agent.atlas.incident_text import evidence_kept_comment, evidence_linked_comment
from edge_agent.atlas.job_support import (
    content_type_for,
    delivery_error,
    find_marked_comment,
    incident_issue,
    resolve,
)
from edge_agent.atlas.narrative import comment_marker
from edge_agent.atlas.uploads import NO_ID, refusal_reason, server_answer
from edge_agent.atlas.waiting import KEPT, WaitingEvidence, WaitingRecord, waiting_key
from edge_agent.config import AtlasSection
from edge_agent.logs import get_logger
from edge_agent.outbox import Job, Json, Permanent, Retryable

log = get_logger(__name__)

LINKED_SUFFIX = "-evidence"
KEPT_SUFFIX = "-evidence-kept"


@dataclass(frozen=True, slots=True)
class EvidenceRetry:
    """How refused evidence is retried (AtlasSection's evidence_retry_* keys)."""

    first: float = 10.0
    cap: float = 900.0
    max_age: float = 3 * 86400.0
    max_attempts: int = 400

    @classmethod
    def from_section(cls, section: AtlasSection) -> EvidenceRetry:
        return cls(
            first=section.evidence_retry_first,
            cap=max(section.evidence_retry_cap, section.evidence_retry_first),
            max_age=section.evidence_retry_max_age,
            max_attempts=section.evidence_retry_attempts,
        )


class _Later(Exception):
    """This attempt ends here; try again after the backoff."""

    def __init__(self, why: str, status: int | None, *, progress: bool, outcome_unknown: bool) -> None:
        super().__init__(why)
        self.why = why
        self.status = status
        self.progress = progress  # the form changed: the next try comes after the first step again
        self.outcome_unknown = outcome_unknown


def evidence_marker(incident_id: str, part: str, suffix: str = LINKED_SUFFIX) -> str:
    return comment_marker(incident_id, f"{part}{suffix}")


def _upload_result(deps: Mapping[int, Json]) -> Json | None:
    return next((r for r in deps.values() if "deferred" in r), None)


def _kept(deferral: Mapping[str, Any]) -> KeptFile:
    d = deferral
    return KeptFile(str(d["name"]), str(d["path"]), int(d["bytes"]), str(d["reason"]), d.get("status") == 413)


def _read_and_build(record: WaitingRecord, piece: Piece) -> tuple[bytes, int]:
    data = Path(record.plan.files[piece.file].path).read_bytes()
    return build_piece(record.plan, piece, data)


class EvidenceHandler:
    def __init__(
        self,
        client: AtlasClient,
        waiting: WaitingEvidence,
        settings: EvidenceRetry | None = None,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.waiting = waiting
        self.settings = settings or EvidenceRetry()
        self._wall = wall

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        upload = _upload_result(deps)
        deferred = [d for d in (upload or {}).get("deferred", []) if d.get("kept") and d.get("path")]
        if upload is None or not deferred:
            return {"deferred": 0}  # the upload went through: nothing to retry
        payload = job.payload
        incident_id, part = str(payload["incident_id"]), str(payload["part"])
        now = self._wall()
        record = self.waiting.get(waiting_key(incident_id, part))
        if record is None:
            files = [_kept(d) for d in deferred]
            span = payload.get("span_end_s")
            span_end = float(span) if span is not None else None
            record = self.waiting.create(incident_id, part, files, span_end, now)
            record.why = files[0].reason
        if record.state == KEPT:
            raise Permanent(None, record.why, "evidence not delivered; kept on disk")
        session_id = str(upload.get("session_id") or resolve(payload, deps, "session_id"))
        issue_id = await incident_issue(self.client, job, deps)
        record.attempts = job.attempts
        spent = self._spent(record, job.attempts, now)
        if spent is not None:
            await self._give_up(record, issue_id, spent)
        try:
            await self._adopt(record, session_id)
            await self._upload_waiting(record, session_id)
        except _Later as later:
            raise await self._later(record, later, now) from None
        except FileNotFoundError as exc:
            await self._give_up(record, issue_id, f"a file is gone from disk ({exc.filename})")
        attached = record.plan.attached()
        text = evidence_linked_comment(incident_id, part, record.plan.files, attached, record.plan.describe())
        await self._comment(record, issue_id, text, attached, LINKED_SUFFIX)
        await self.waiting.remove(record.key)
        log.info("evidence_linked", incident_id=incident_id, part=part, pieces=len(attached),
                 attempts=job.attempts)  # fmt: skip
        return {
            "issue_id": issue_id,
            "attachment_ids": [a for _, a in attached],
            "names": [n for n, _ in attached],
        }

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        """After an attempt of unknown outcome (a crash after the link comment, before the job was
        recorded done): the link comment is the proof of delivery. Anything short of it, deliver
        finds again itself (it starts by reading what the session holds)."""
        upload = _upload_result(deps)
        if upload is None or not upload.get("deferred"):
            return None
        issue_id = await incident_issue(self.client, job, deps)
        marker = evidence_marker(str(job.payload["incident_id"]), str(job.payload["part"]))
        comment_id = await find_marked_comment(self.client, issue_id, marker)
        return None if comment_id is None else {"issue_id": issue_id, "comment_id": comment_id}

    def _spent(self, record: WaitingRecord, attempts: int, now: float) -> str | None:
        if attempts > self.settings.max_attempts:
            return f"{attempts - 1} attempts"
        if now - record.since >= self.settings.max_age:
            return f"{(now - record.since) / 3600:.1f} hours"
        return None

    async def _adopt(self, record: WaitingRecord, session_id: str) -> None:
        try:
            session = await self.client.get_session(session_id)
        except AtlasAuthError as err:
            raise delivery_error(err) from None
        except AtlasError as err:
            raise _Later(f"Atlas did not answer ({server_answer(err)})", err.status, progress=False,
                         outcome_unknown=False) from None  # fmt: skip
        by_name = {a.attachment_name: a.attachment_id for a in session.attachments if a.attachment_id}
        if record.plan.adopt(by_name):
            await self.waiting.save(record)

    async def _upload_waiting(self, record: WaitingRecord, session_id: str) -> None:
        plan = record.plan
        for piece in plan.waiting():
            body, rows = await asyncio.to_thread(_read_and_build, record, piece)
            name = plan.name(piece)
            try:
                kind = content_type(plan, piece, content_type_for)
                answer = await self.client.upload_files(session_id, [(name, body, kind)])
            except AtlasAuthError as err:
                raise delivery_error(err) from None
            except AtlasError as err:
                change = "same"
                if err.status == 413:
                    change = plan.refused(piece, len(body), rows, self.waiting.largest_accepted)
                log.info("evidence_retry_refused", key=record.key, piece=name, bytes=len(body),
                         status=err.status, next_form=change)  # fmt: skip
                raise _Later(refusal_reason(err, record.attempts), err.status, progress=change != "same",
                             outcome_unknown=err.outcome_unknown) from None  # fmt: skip
            attachment_id = answer[0].attachment_id if answer else None
            if not attachment_id:
                raise _Later(NO_ID, None, progress=False, outcome_unknown=False)
            piece.attachment_id = attachment_id
            record.failures = 0
            await self.waiting.accepted(len(body))
            await self.waiting.save(record)

    async def _later(self, record: WaitingRecord, later: _Later, now: float) -> Retryable:
        record.failures = 1 if later.progress else record.failures + 1
        delay = retry_delay(record.failures, self.settings.first, self.settings.cap)
        record.why = later.why
        record.next_try = now + delay
        await self.waiting.save(record)
        return Retryable(later.status, delay, later.why, outcome_unknown=later.outcome_unknown,
                         service_wide=False)  # fmt: skip

    async def _give_up(self, record: WaitingRecord, issue_id: str, after: str) -> None:
        attached = record.plan.attached()
        why = f"not delivered after {after}; last answer: {record.why}"
        text = evidence_kept_comment(record.incident_id, record.part, record.plan.files, attached, why)
        await self._comment(record, issue_id, text, attached, KEPT_SUFFIX)
        record.state = KEPT
        record.why = why
        record.next_try = None
        await self.waiting.save(record)
        log.error("evidence_kept_locally", key=record.key, why=why,
                  paths=[f.path for f in record.plan.files])  # fmt: skip
        raise Permanent(None, why, "evidence not delivered; kept on disk")

    async def _comment(
        self,
        record: WaitingRecord,
        issue_id: str,
        content: str,
        attached: list[tuple[str, str]],
        suffix: str,
    ) -> None:
        marker = evidence_marker(record.incident_id, record.part, suffix)
        if await find_marked_comment(self.client, issue_id, marker) is not None:
            return
        try:
            await self.client.add_comment(
                issue_id, content, attachment_ids=[a for _, a in attached], truncate=True
            )
        except AtlasNotFound as err:
            raise Permanent(404, detail_text(err.detail), f"issue {issue_id} no longer exists") from None
        except AtlasError as err:
            raise delivery_error(err) from None
