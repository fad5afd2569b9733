"""Outbox handlers for the test-run objects of step tracking: run, card, step create and the outcome
PATCH. Creates look for what an attempt of unknown outcome made (by title, under their parent) before
re-sending; the PATCH is idempotent and simply re-sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edge_agent.atlas.client import MAX_ISSUE_PAGE, MAX_ISSUE_SCAN, AtlasClient, parse_atlas_timestamp
from edge_agent.atlas.errors import AtlasError
from edge_agent.atlas.job_support import delivery_error, resolve
from edge_agent.atlas.jobs import KIND_ISSUE
from edge_agent.atlas.models import Card, TestRun
from edge_agent.atlas.narrative import agent_tag
from edge_agent.outbox import Job, JobState, Json, Outbox, Waiting
from edge_agent.steps.outcome import ISSUE_PLACEHOLDER, name_issues

KIND_RUN = "atlas.test_run"
KIND_CARD = "atlas.test_card"
KIND_STEP = "atlas.test_step"
KIND_OUTCOME = "atlas.step_outcome"
# An outcome whose note names an issue not filed yet waits this many tries, this far apart, then says
# "pending" instead: the step's outcome is worth more than the link.
ISSUE_WAIT_ATTEMPTS = 5
ISSUE_WAIT_SECONDS = 5.0
# Delivered issue jobs read (newest first) to name the issues in the notes /status shows: more than the
# incidents of the steps it shows (MAX_COMPLETED_SHOWN) could name in all but a storm of incidents.
ISSUE_JOBS_SCANNED = 500


class RunHandler:
    """Payload `{title, system_id, description, not_before}` -> `{run_id}`."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        p = job.payload
        try:
            run = await self.client.create_test_run(
                str(p["title"]), str(p["system_id"]), str(p.get("description", ""))
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"run_id": run.uuid}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        """The run's title under its system, created no earlier than the run began. `not_before` was
        taken on this host's clock and `created_at` is Atlas's: the moment is moved onto Atlas's clock
        by the offset of the list answer's `Date` header (as the session look-up does), so an agent
        whose clock is minutes off still finds its run. Of several matches the first made is taken,
        whatever order the list comes in."""
        p = job.payload
        try:
            body = await self.client.call("GET", "/test-runs", params=[("system_id", str(p["system_id"]))])
        except AtlasError as err:
            raise delivery_error(err) from None
        since = parse_atlas_timestamp(p.get("not_before"))
        offset = self.client.server_clock_offset
        if since is not None and offset is not None:
            since += offset
        items = body.get("items", []) if isinstance(body, dict) else []
        matches: list[tuple[float, str]] = []
        for item in items:
            if not isinstance(item, dict) or item.get("title") != p["title"] or not item.get("uuid"):
                continue
            created = parse_atlas_timestamp(str(item.get("created_at") or ""))
            if since is None or (created is not None and created >= since):
                matches.append((created or 0.0, str(item["uuid"])))
        return {"run_id": min(matches)[1]} if matches else None


async def _run(client: AtlasClient, run_id: str) -> TestRun:
    try:
        return await client.get_test_run(run_id)
    except AtlasError as err:
        raise delivery_error(err) from None


def _card(run: TestRun, card_id: str) -> Card | None:
    return next((c for c in run.test_cards if c.uuid == card_id), None)


class CardHandler:
    """Payload `{run_id?, title, description, order?}` -> `{run_id, card_id}`."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        p = job.payload
        run_id = str(resolve(p, deps, "run_id"))
        try:
            card = await self.client.create_card(
                run_id, str(p["title"]), str(p.get("description", "")), p.get("order")
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"run_id": run_id, "card_id": card.uuid}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        run_id = str(resolve(job.payload, deps, "run_id"))
        run = await _run(self.client, run_id)
        card = next((c for c in run.test_cards if c.title == job.payload["title"]), None)
        return None if card is None else {"run_id": run_id, "card_id": card.uuid}


class StepHandler:
    """Payload `{run_id?, card_id?, title, description, order?}` -> `{run_id, card_id, step_id}`."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        p = job.payload
        run_id, card_id = str(resolve(p, deps, "run_id")), str(resolve(p, deps, "card_id"))
        try:
            step = await self.client.create_step(
                run_id, card_id, str(p["title"]), str(p.get("description", "")), p.get("order")
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"run_id": run_id, "card_id": card_id, "step_id": step.uuid}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        p = job.payload
        run_id, card_id = str(resolve(p, deps, "run_id")), str(resolve(p, deps, "card_id"))
        card = _card(await _run(self.client, run_id), card_id)
        step = None if card is None else next((s for s in card.test_steps if s.title == p["title"]), None)
        return None if step is None else {"run_id": run_id, "card_id": card_id, "step_id": step.uuid}


class OutcomeHandler:
    """Payload `{run_id?, card_id?, step_id?, execution_status, exception?, started_at, ended_at}`.

    The `exception` note names each anomaly's Atlas issue as `{issue:<incident-id>}`: the issue is found
    by the incident's tag when the PATCH is sent. An issue not filed yet (Atlas was down, its job is
    behind) is waited for a few tries; after that the note says "issue pending (incident ...)" rather
    than hold the step's outcome back."""

    def __init__(self, client: AtlasClient) -> None:
        self.client = client

    async def _note(self, job: Job) -> str | None:
        note = job.payload.get("exception")
        if not isinstance(note, str):
            return None
        return (await fill_issue_placeholders(self.client, note, job.attempts))[0]

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        p = job.payload
        ids = [str(resolve(p, deps, name)) for name in ("run_id", "card_id", "step_id")]
        note = await self._note(job)
        try:
            step = await self.client.patch_step(
                *ids,
                execution_status=str(p["execution_status"]),
                exception=note,
                started_at=float(p["started_at"]),
                ended_at=float(p["ended_at"]),
            )
        except AtlasError as err:
            raise delivery_error(err) from None
        return {"step_id": step.uuid, "execution_status": step.execution_status}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None  # a PATCH is idempotent: sending it again is the look-up


async def issues_of_incidents(client: AtlasClient, incident_ids: Iterable[str]) -> dict[str, str]:
    """incident id -> the Atlas issue carrying its tag `edge-agent:<incident-id>`, for those found:
    one pass over the issue list (bounded like `find_issue_by_tag`), however many incidents."""
    wanted = {agent_tag(i): i for i in incident_ids}
    found: dict[str, str] = {}
    if not wanted:
        return found
    try:
        async for issue in client.iter_issues(page_size=MAX_ISSUE_PAGE, max_items=MAX_ISSUE_SCAN):
            for tag in issue.tags:
                if tag in wanted and wanted[tag] not in found:
                    found[wanted[tag]] = issue.uuid
            if len(found) == len(wanted):
                break
    except AtlasError as err:
        raise delivery_error(err) from None
    return found


async def issues_known(outbox: Outbox, incident_ids: Iterable[str]) -> dict[str, str]:
    """incident id -> its Atlas issue id, for those whose issue job the outbox has delivered (among the
    newest ISSUE_JOBS_SCANNED): what the agent knows without asking Atlas."""
    wanted = set(incident_ids)
    if not wanted:
        return {}
    found: dict[str, str] = {}
    for job in await outbox.latest(KIND_ISSUE, JobState.DONE, ISSUE_JOBS_SCANNED):
        incident_id, issue_id = job.payload.get("incident_id"), (job.result or {}).get("issue_id")
        if incident_id in wanted and isinstance(issue_id, str):
            found.setdefault(str(incident_id), issue_id)
    return found


async def notes_as_sent(outbox: Outbox, completed: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Completed steps (StepTracker's) with each note (`exception`) as its outcome job sends it to
    Atlas (`name_issues`), for /status and the live page: the agent's incident ids in it become the
    Atlas issue ids the outbox knows, else "pending (incident ...)"."""
    notes = [str(c.get("exception") or "") for c in completed]
    issue_of = await issues_known(outbox, (i for note in notes for i in ISSUE_PLACEHOLDER.findall(note)))
    return [
        {**c, "exception": name_issues(note, issue_of)} if note else dict(c)
        for c, note in zip(completed, notes, strict=True)
    ]


async def fill_issue_placeholders(
    client: AtlasClient, text: str, attempts: int
) -> tuple[str, dict[str, str]]:
    """`text` with each `{issue:<incident-id>}` replaced by that incident's Atlas issue id, and the ids
    found. An issue not filed yet (Atlas was down, its job is behind) is waited for (`Waiting`) while
    `attempts` < ISSUE_WAIT_ATTEMPTS; after that the text says "pending (incident ...)" instead."""
    wanted = list(dict.fromkeys(ISSUE_PLACEHOLDER.findall(text)))
    found = await issues_of_incidents(client, wanted)
    missing = [i for i in wanted if i not in found]
    if missing and attempts < ISSUE_WAIT_ATTEMPTS:
        raise Waiting(f"issue of incident {missing[0]} not filed yet", ISSUE_WAIT_SECONDS)
    return name_issues(text, found), found


def register_step_handlers(outbox: Outbox, client: AtlasClient) -> None:
    outbox.register(KIND_RUN, RunHandler(client))
    outbox.register(KIND_CARD, CardHandler(client))
    outbox.register(KIND_STEP, StepHandler(client))
    outbox.register(KIND_OUTCOME, OutcomeHandler(client))
