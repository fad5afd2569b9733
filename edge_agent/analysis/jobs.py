"""Outbox handlers of a run's analysis report: request it, poll it until it is finished, post its
summary on the run's issues. Three kinds, one chain of dependencies:

- `atlas.report_request` (in the test run's steps group, so after the outcomes enqueued before it):
  `POST /test-runs/{id}/reports` with the scope and the `analysis_context`, whose issue ids are filled
  in now. Atlas has no idempotency key: after an attempt of unknown outcome the run's reports are
  listed and one of that scope made since the request was enqueued (on Atlas's clock) is adopted.
- `atlas.report_poll` (background: a shutdown drain does not wait for it; it goes on at the next
  start): `GET` the report; not finished yet is a retry with the outbox's backoff, which is not an
  outage (the queue is not paused); finished (`completed`, `failed`, `cancelled`) is the job's result;
  `analysis.poll_timeout` of polling since the request without an end fails the job with the reason.
- `atlas.report_comment`, one per incident of the run: the summary, with the marker line, on the
  incident's issue unless a comment with that marker is there already (two incidents may share one
  issue). A report that did not complete posts nothing (the result says why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge_agent.analysis.context import report_marker, summary_comment
from edge_agent.atlas.client import MAX_COMMENT_CHARS, AtlasClient, parse_atlas_timestamp
from edge_agent.atlas.errors import AtlasError, AtlasNotFound, detail_text
from edge_agent.atlas.job_support import delivery_error, find_marked_comment, resolve
from edge_agent.atlas.models import REPORT_FINAL_STATUSES, Report
from edge_agent.atlas.narrative import agent_tag
from edge_agent.logs import get_logger
from edge_agent.outbox import (
    NOT_FINISHED_STATUS,
    Job,
    Json,
    Outbox,
    Permanent,
    Retryable,
    Unsatisfiable,
    Waiting,
)
from edge_agent.steps.jobs import fill_issue_placeholders

log = get_logger(__name__)

KIND_REQUEST = "atlas.report_request"
KIND_POLL = "atlas.report_poll"
KIND_COMMENT = "atlas.report_comment"
ISSUE_LOOKUP_WAIT = 30.0


def _result_with(deps: Mapping[int, Json], key: str) -> Json:
    for result in deps.values():
        if key in result:
            return result
    raise Permanent(None, "", f"no dependency result carries {key!r}")


class ReportRequestHandler:
    """Payload `{key, scope, context, not_before, run_id?, card_id?, step_id?}` (ids from the deps when
    absent) -> `{report_id, run_id, scope, status, requested_at, issues}`; `requested_at` is on the
    outbox's clock (the poll's timeout counts from it), `issues` maps incident ids to issue ids."""

    def __init__(self, client: AtlasClient, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock

    def _ids(self, job: Job, deps: Mapping[int, Json]) -> tuple[str, str | None, str | None]:
        scope = str(job.payload["scope"])
        run_id = str(resolve(job.payload, deps, "run_id"))
        card_id = str(resolve(job.payload, deps, "card_id")) if scope in ("card", "step") else None
        step_id = str(resolve(job.payload, deps, "step_id")) if scope == "step" else None
        return run_id, card_id, step_id

    def _result(self, report: Report, run_id: str, issues: Mapping[str, str]) -> Json:
        return {
            "report_id": report.uuid,
            "run_id": run_id,
            "scope": report.scope,
            "status": report.status,
            "requested_at": self.clock(),
            "issues": dict(issues),
        }

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        p = job.payload
        run_id, card_id, step_id = self._ids(job, deps)
        context, issues = await fill_issue_placeholders(self.client, str(p.get("context", "")), job.attempts)
        try:
            report = await self.client.create_report(
                run_id, str(p["scope"]), test_card_id=card_id, test_step_id=step_id, analysis_context=context
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        log.info("analysis_report_requested", key=p["key"], report_id=report.uuid, scope=p["scope"])
        return self._result(report, run_id, issues)

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        """A report of the scope (and step) made since the job was enqueued: the attempt's own. The
        agent asks for at most one report per run and per step, so no other can match but one a
        person asked for in those seconds; adopting it is the lesser harm than a second analysis."""
        run_id, card_id, step_id = self._ids(job, deps)
        since = parse_atlas_timestamp(job.payload.get("not_before"))
        offset = self.client.server_clock_offset
        if since is not None and offset is not None:
            since += offset  # onto Atlas's clock, as the session look-up does
        try:
            reports = await self.client.list_reports(run_id)
            on_step: set[str] | None = None
            if step_id is not None:
                run = await self.client.get_test_run(run_id)
                on_step = {
                    str(r.get("uuid"))
                    for card in run.test_cards
                    if card.uuid == card_id
                    for step in card.test_steps
                    if step.uuid == step_id
                    for r in (step.model_extra or {}).get("reports", [])
                    if isinstance(r, dict)
                }
        except AtlasError as err:
            raise delivery_error(err) from None
        matches = []
        for report in reports:
            created = parse_atlas_timestamp(report.created_at)
            if report.scope != job.payload["scope"] or (on_step is not None and report.uuid not in on_step):
                continue
            if since is None or (created is not None and created >= since):
                matches.append((created or 0.0, report))
        if not matches:
            return None
        return self._result(min(matches, key=lambda m: m[0])[1], run_id, {})


class ReportPollHandler:
    """Payload `{key, poll_timeout}`, deps: the request -> `{report_id, run_id, final_status, title,
    summary}` once the report is finished."""

    def __init__(self, client: AtlasClient, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        request = _result_with(deps, "report_id")
        run_id, report_id = str(request["run_id"]), str(request["report_id"])
        try:
            report = await self.client.get_report(run_id, report_id)
        except AtlasNotFound as err:
            raise Permanent(404, detail_text(err.detail), f"report {report_id} no longer exists") from None
        except AtlasError as err:
            raise delivery_error(err) from None
        if report.status in REPORT_FINAL_STATUSES:
            if report.status != "completed":
                log.warning("analysis_report_not_completed", key=job.payload["key"], status=report.status)
            return {
                "report_id": report_id,
                "run_id": run_id,
                "final_status": report.status,
                "title": report.title,
                "summary": (report.summary or "")[:MAX_COMMENT_CHARS],
            }
        waited = self.clock() - float(request.get("requested_at", job.created_at))
        timeout = float(job.payload["poll_timeout"])
        if waited >= timeout:
            raise Unsatisfiable(
                f"report {report_id} still {report.status} after {waited:.0f} s of polling"
                f" (analysis.poll_timeout {timeout:g} s)"
            )
        raise Retryable(
            NOT_FINISHED_STATUS, None, f"report {report_id} is {report.status}", outcome_unknown=False
        )

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None  # a GET is its own look-up


class ReportCommentHandler:
    """Payload `{key, incident_id, subject}`, deps: the poll and the request -> `{issue_id,
    comment_id}`, or `{skipped}` when the report did not complete (nothing to post)."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def _issue(self, job: Job, deps: Mapping[int, Json]) -> str:
        incident_id = str(job.payload["incident_id"])
        known = _result_with(deps, "issues")["issues"].get(incident_id)
        if known:
            return str(known)
        try:
            found = await self.client.find_issue_by_tag(agent_tag(incident_id))
        except AtlasError as err:
            raise delivery_error(err) from None
        if found is None:
            raise Waiting(f"issue of incident {incident_id} not found yet", ISSUE_LOOKUP_WAIT)
        return found.uuid

    async def _existing(self, job: Job, issue_id: str) -> Json | None:
        comment_id = await find_marked_comment(self.client, issue_id, report_marker(str(job.payload["key"])))
        return None if comment_id is None else {"issue_id": issue_id, "comment_id": comment_id}

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        poll = _result_with(deps, "final_status")
        if poll["final_status"] != "completed" or not str(poll.get("summary") or "").strip():
            return {"skipped": f"report {poll['final_status']} without a summary"}
        issue_id = await self._issue(job, deps)
        posted = await self._existing(job, issue_id)  # another incident of the run shares this issue
        if posted is not None:
            return {**posted, "shared": True}
        content = summary_comment(
            summary=str(poll["summary"]),
            title=str(poll.get("title") or ""),
            scope=str(_result_with(deps, "requested_at").get("scope") or ""),
            subject=str(job.payload.get("subject") or "the test run"),
            report_id=str(poll["report_id"]),
            run_id=str(poll["run_id"]),
            key=str(job.payload["key"]),
        )
        try:
            comment = await self.client.add_comment(issue_id, content, truncate=True)
        except AtlasNotFound as err:
            raise Permanent(404, detail_text(err.detail), f"issue {issue_id} no longer exists") from None
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"issue_id": issue_id, "comment_id": comment.uuid}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        poll = _result_with(deps, "final_status")
        if poll["final_status"] != "completed":
            return None
        return await self._existing(job, await self._issue(job, deps))


def register_analysis_handlers(outbox: Outbox, client: AtlasClient) -> None:
    """Registered whenever Atlas is configured, also with `analysis.enabled` off: a report requested
    before (a restart, a config change) is still polled to its end and its summary posted."""
    clock = outbox.clock.now
    outbox.register(KIND_REQUEST, ReportRequestHandler(client, clock))
    outbox.register(KIND_POLL, ReportPollHandler(client, clock), background=True)
    outbox.register(KIND_COMMENT, ReportCommentHandler(client))
