"""Where each report is, for /status: read from its outbox jobs (the request's, the poll's result, the
comments'), which are the truth; the analysis record only keeps their ids."""

from __future__ import annotations

from typing import Any

from edge_agent.outbox import JobState, Outbox

MAX_SUMMARY_SHOWN = 2000
ENDED = (JobState.DONE, JobState.FAILED, JobState.SHED)


class ReportStatus:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        # Comment jobs that ended: asked once, not on every /status (a run may have hundreds of issues).
        self._ended: dict[int, str] = {}

    async def reports(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shown = [await self.report(entry) for entry in entries]
        kept = {i for entry in entries if entry.get("jobs") for i in entry["jobs"]["comments"]}
        self._ended = {job_id: what for job_id, what in self._ended.items() if job_id in kept}
        return shown

    async def report(self, entry: dict[str, Any]) -> dict[str, Any]:
        """requesting | polling | completed | failed | cancelled | request failed | polling given up |
        not requested, with the report's id, title and summary once known, and its comments."""
        shown: dict[str, Any] = {k: entry.get(k) for k in ("key", "scope", "step", "requested_wall")}
        jobs = entry.get("jobs")
        if jobs is None:
            return {**shown, "state": "not requested", "error": entry.get("error")}
        request = await self.outbox.job(jobs["request"])
        poll = await self.outbox.job(jobs["poll"])
        state, error = "requesting", None
        if request is not None and request.state is JobState.FAILED:
            state, error = "request failed", (request.failure or {}).get("reason")
        elif poll is not None and poll.state is JobState.FAILED:
            state, error = "polling given up", (poll.failure or {}).get("reason")
        elif poll is not None and poll.state is JobState.DONE and poll.result:
            state = str(poll.result.get("final_status"))
            shown["summary"] = str(poll.result.get("summary") or "")[:MAX_SUMMARY_SHOWN]
            shown["title"] = poll.result.get("title")
        elif request is not None and request.state is JobState.DONE:
            state = "polling"
            error = poll.last_error if poll is not None else None
        if request is not None and request.result:
            shown["report_id"] = request.result.get("report_id")
        comments: dict[str, int] = {}
        for job_id in jobs["comments"]:
            what = await self._comment(job_id)
            comments[what] = comments.get(what, 0) + 1
        return {**shown, "state": state, "error": error, "comments": comments}

    async def _comment(self, job_id: int) -> str:
        """posted | shared (another incident's comment is on that issue) | skipped (nothing to post) |
        failed | shed | pending | in_flight | gone."""
        known = self._ended.get(job_id)
        if known is not None:
            return known
        job = await self.outbox.job(job_id)
        if job is None:
            return "gone"
        what = job.state.value
        if job.state is JobState.DONE and job.result:
            if "skipped" in job.result:
                what = "skipped"
            else:
                what = "shared" if job.result.get("shared") else "posted"
        if job.state in ENDED:
            self._ended[job_id] = what
        return what
